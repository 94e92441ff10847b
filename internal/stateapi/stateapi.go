// Package stateapi reads the cluster's resources from the GCS (and, for
// workers, from every node's raylet) as the public state types (package
// state): the goray CLI's `list` and `get` and the sdk's List calls share
// it.
package stateapi

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/memreport"
	"github.com/goray/goray/internal/nodecall"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/state"
)

// Source is where the state comes from: the GCS, and the raylets, which
// Auth authenticates to (*auth.Handshaker).
type Source struct {
	GCS  *gcs.Client
	Auth wire.Authenticator
	Log  zerolog.Logger
}

// Nodes lists every node, alive and dead.
func Nodes(ctx context.Context, src Source) ([]state.Node, error) {
	ns, err := src.GCS.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]state.Node, 0, len(ns))
	for _, n := range ns {
		out = append(out, node(n))
	}
	return out, nil
}

// Jobs lists every job, oldest first.
func Jobs(ctx context.Context, src Source) ([]state.Job, error) {
	js, err := src.GCS.ListJobs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]state.Job, 0, len(js))
	for _, j := range js {
		out = append(out, job(j))
	}
	return out, nil
}

// Actors lists every actor of every job, alive and dead.
func Actors(ctx context.Context, src Source) ([]state.Actor, error) {
	as, err := src.GCS.ListActors(ctx, protos.JobID{})
	if err != nil {
		return nil, err
	}
	out := make([]state.Actor, 0, len(as))
	for _, a := range as {
		out = append(out, actor(a))
	}
	slices.SortStableFunc(out, func(a, b state.Actor) int { return a.StartTime.Compare(b.StartTime) })
	return out, nil
}

// PlacementGroups lists the live placement groups.
func PlacementGroups(ctx context.Context, src Source) ([]state.PlacementGroup, error) {
	gs, err := src.GCS.ListPlacementGroups(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]state.PlacementGroup, 0, len(gs))
	for _, g := range gs {
		out = append(out, placementGroup(g))
	}
	slices.SortStableFunc(out, func(a, b state.PlacementGroup) int { return a.CreateTime.Compare(b.CreateTime) })
	return out, nil
}

// Workers lists the worker processes of every alive node, asking each
// node's raylet. A node that does not answer fails the listing, naming it.
func Workers(ctx context.Context, src Source) ([]state.Worker, error) {
	ns, err := src.GCS.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	answers := nodecall.Call(ctx, ns, src.Log, src.Auth, protos.Method_LIST_WORKERS, &protos.ListWorkersRequest{},
		func() *protos.ListWorkersReply { return &protos.ListWorkersReply{} }, nil, nil)
	var out []state.Worker
	for _, a := range answers {
		if a.Err != nil {
			return nil, fmt.Errorf("node %s: %w", hexID(a.Node.GetNodeId())[:12], a.Err)
		}
		for _, w := range a.Reply.GetWorkers() {
			out = append(out, worker(a.Node.GetNodeId(), w))
		}
	}
	slices.SortStableFunc(out, func(a, b state.Worker) int { return a.StartTime.Compare(b.StartTime) })
	return out, nil
}

// ErrNoMatch and ErrAmbiguous: an id prefix that names no row, or more
// than one.
var (
	ErrNoMatch = fmt.Errorf("no such id")
	// ErrNoWorker: an actor without a live worker (dead, or not placed).
	ErrNoWorker  = fmt.Errorf("no live worker")
	ErrAmbiguous = fmt.Errorf("ambiguous id prefix")
)

// ByIDPrefix returns the row whose id (as id gives it) starts with prefix
// (hex, at least 4 digits), failing if none or several do.
func ByIDPrefix[T any](rows []T, prefix string, id func(T) string) (T, error) {
	var zero T
	prefix = strings.ToLower(strings.TrimSpace(prefix))
	if len(prefix) < 4 {
		return zero, fmt.Errorf("id %q: give at least 4 hex digits", prefix)
	}
	if _, err := hex.DecodeString(prefix[:len(prefix)&^1]); err != nil {
		return zero, fmt.Errorf("id %q: not hex", prefix)
	}
	var found []T
	for _, r := range rows {
		if strings.HasPrefix(id(r), prefix) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return zero, fmt.Errorf("%w: %s", ErrNoMatch, prefix)
	case 1:
		return found[0], nil
	}
	return zero, fmt.Errorf("%w: %s matches %d ids", ErrAmbiguous, prefix, len(found))
}

func hexID(b []byte) string { return hex.EncodeToString(b) }

func millis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func amounts(r *protos.Resources) map[string]float64 {
	out := map[string]float64{}
	for k, v := range r.GetAmounts() {
		out[k] = v
	}
	return out
}

func node(n *protos.NodeInfo) state.Node {
	return state.Node{
		NodeID:             hexID(n.GetNodeId()),
		State:              strings.TrimPrefix(n.GetState().String(), "STATE_"),
		IsHead:             n.GetIsHead(),
		Hostname:           n.GetHostname(),
		RayletAddress:      n.GetRayletTcpEndpoint(),
		ResourcesTotal:     amounts(n.GetTotal()),
		ResourcesAvailable: amounts(n.GetAvailable()),
		Labels:             n.GetLabels(),
		NumWorkers:         int(n.GetNumWorkers()),
		ObjectStoreUsed:    n.GetStoreUsed(),
		ObjectStoreTotal:   n.GetStoreCapacity(),
		StartTime:          millis(n.GetStartTimeUnixMs()),
		MemoryUsed:         n.GetMemoryUsed(),
		MemoryTotal:        n.GetMemoryTotal(),
		CPUBusy:            n.GetCpuBusy(),
	}
}

func job(j *protos.JobInfo) state.Job {
	out := state.Job{
		JobID:             hexID(j.GetJobId()),
		Status:            "RUNNING",
		Namespace:         j.GetNamespace(),
		DriverPID:         int(j.GetDriverPid()),
		DriverHost:        j.GetDriverHost(),
		Entrypoint:        j.GetExecutable(),
		StartTime:         millis(j.GetStartTimeUnixMs()),
		EndTime:           millis(j.GetEndTimeUnixMs()),
		BinaryDigest:      j.GetBinaryDigest(),
		RuntimeEnvPackage: j.GetRuntimeEnv().GetPackageDigest(),
	}
	if j.GetFinished() {
		out.Status = "FINISHED"
	}
	for _, b := range j.GetBinaries() {
		out.Platforms = append(out.Platforms, b.GetGoos()+"/"+b.GetGoarch())
	}
	// Names only: the values are the user's, and may be long.
	for _, kv := range j.GetRuntimeEnv().GetEnvVars() {
		k, _, _ := strings.Cut(kv, "=")
		out.RuntimeEnvVars = append(out.RuntimeEnvVars, k)
	}
	return out
}

func actor(a *protos.ActorInfo) state.Actor {
	spec := a.GetSpec()
	out := state.Actor{
		ActorID:     hexID(a.GetActorId()),
		ClassName:   spec.GetClassName(),
		State:       a.GetState().String(),
		Name:        spec.GetOptions().GetName(),
		Namespace:   spec.GetOptions().GetNamespace(),
		JobID:       hexID(spec.GetJobId()),
		NumRestarts: int(a.GetNumRestarts()),
		Detached:    spec.GetOptions().GetDetached(),
		DeathCause:  a.GetDeathCause(),
		StartTime:   millis(a.GetStartTimeUnixMs()),
		EndTime:     millis(a.GetEndTimeUnixMs()),
	}
	if a.GetState() == protos.ActorState_ALIVE {
		out.NodeID, out.PID = hexID(a.GetAddress().GetNodeId()), int(a.GetAddress().GetPid())
	} else if len(a.GetNodeId()) > 0 {
		out.NodeID = hexID(a.GetNodeId())
	}
	return out
}

func placementGroup(g *protos.PlacementGroupInfo) state.PlacementGroup {
	spec := g.GetSpec()
	out := state.PlacementGroup{
		PlacementGroupID: hexID(spec.GetPlacementGroupId()),
		Name:             spec.GetName(),
		Namespace:        spec.GetNamespace(),
		JobID:            hexID(spec.GetJobId()),
		State:            strings.TrimPrefix(g.GetState().String(), "PG_"),
		Strategy:         spec.GetStrategy().String(),
		Detached:         spec.GetDetached(),
		PendingReason:    g.GetPendingReason(),
		CreateTime:       millis(g.GetCreateTimeUnixMs()),
	}
	for i, b := range spec.GetBundles() {
		bd := state.Bundle{Index: i, Resources: amounts(b)}
		if i < len(g.GetBundleNodes()) && len(g.GetBundleNodes()[i]) > 0 {
			bd.NodeID = hexID(g.GetBundleNodes()[i])
		}
		out.Bundles = append(out.Bundles, bd)
	}
	return out
}

func worker(node []byte, w *protos.WorkerState) state.Worker {
	return state.Worker{
		WorkerID:          hexID(w.GetWorkerId()),
		NodeID:            hexID(node),
		JobID:             hexID(w.GetJobId()),
		PID:               int(w.GetPid()),
		State:             w.GetState(),
		Leases:            int(w.GetLeases()),
		Detached:          w.GetDetached(),
		StartTime:         millis(w.GetStartTimeUnixMs()),
		RuntimeEnvVars:    w.GetRuntimeEnvVars(),
		RuntimeEnvPackage: w.GetRuntimeEnvPackage(),
		StdoutPath:        w.GetStdoutPath(),
		StderrPath:        w.GetStderrPath(),
	}
}

// Objects lists the cluster's objects, as goray memory reports them: from
// every alive node's raylet and the processes on it.
func Objects(ctx context.Context, src Source) ([]state.ObjectMemory, error) {
	nodes, err := src.GCS.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	r, err := memreport.FetchMemoryReport(ctx, nodes, src.Log, src.Auth)
	if err != nil {
		return nil, err
	}
	return r.Objects, nil
}

// ActorWorker finds the live worker hosting the actor an id prefix names,
// from workers (Workers' listing).
func ActorWorker(ctx context.Context, src Source, prefix string, workers []state.Worker) (state.Worker, state.Actor, error) {
	actors, err := Actors(ctx, src)
	if err != nil {
		return state.Worker{}, state.Actor{}, err
	}
	a, err := ByIDPrefix(actors, prefix, func(a state.Actor) string { return a.ActorID })
	if err != nil {
		return state.Worker{}, a, err
	}
	for _, w := range workers {
		if w.NodeID == a.NodeID && w.PID == a.PID && a.PID != 0 {
			return w, a, nil
		}
	}
	return state.Worker{}, a, fmt.Errorf("actor %s is %s and has %w", a.ActorID[:12], a.State, ErrNoWorker)
}

// LogTail reads the last lines of a worker's stdout or stderr through its
// node's raylet (at most 1 MiB).
func LogTail(ctx context.Context, src Source, w state.Worker, stderr bool, lines int) (string, error) {
	nodes, err := src.GCS.ListNodes(ctx)
	if err != nil {
		return "", err
	}
	var ep string
	for _, n := range nodes {
		if hexID(n.GetNodeId()) == w.NodeID {
			if ep = n.GetRayletTcpEndpoint(); ep == "" {
				ep = n.GetRayletEndpoint()
			}
		}
	}
	if ep == "" {
		return "", fmt.Errorf("%w: node %s", ErrNoMatch, w.NodeID)
	}
	c, err := wire.Dial(ctx, ep, nil, wire.WithLogger(src.Log), wire.WithAuthenticator(src.Auth))
	if err != nil {
		return "", fmt.Errorf("node %s: %w", w.NodeID[:12], err)
	}
	defer c.Close()
	wid, err := protos.UniqueIDFromHex(w.WorkerID)
	if err != nil {
		return "", err
	}
	var rep protos.ReadLogReply
	if err := c.Call(ctx, protos.Method_READ_LOG, &protos.ReadLogRequest{WorkerId: wid.Bytes(), Stderr: stderr, Offset: -1, TailLines: int32(lines)}, &rep); err != nil {
		return "", fmt.Errorf("worker %s: %w", w.WorkerID[:12], err)
	}
	return string(rep.GetData()), nil
}
