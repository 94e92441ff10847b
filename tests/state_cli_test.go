package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/goray/goray/sdk"
)

// TestStateCLI: goray list and goray get, through the real binary, on a
// cluster of two nodes: every kind lists, filters select, limits cut,
// formats parse, and an id prefix finds one resource.
func TestStateCLI(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "1"}, nodeSpec{"--num-cpus", "2"})
	onNode := sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, c.nodes[0].id), false))
	named, err := CounterActor.Options(onNode, sdk.Name("state-cli")).Remote(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := CounterPid.Remote(ctx, named).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	doomed, err := CounterActor.Remote(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CounterInc.Remote(ctx, doomed, 1).Get(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sdk.Kill(ctx, doomed, true); err != nil {
		t.Fatal(err)
	}
	pg, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{{"CPU": 1}, {"CPU": 1}}, sdk.PlacementSpread)
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	goray := func(args ...string) string {
		t.Helper()
		out, err := runGoray(c.bin, c.env, append(args, "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir))...)
		if err != nil {
			t.Fatalf("goray %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	asJSON := func(out string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), v); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}

	// Nodes: both, the head first among them marked.
	var nodes []struct {
		NodeID string `json:"node_id"`
		State  string `json:"state"`
		IsHead bool   `json:"is_head"`
	}
	asJSON(goray("list", "nodes", "--format", "json"), &nodes)
	if len(nodes) != 2 {
		t.Fatalf("list nodes: %+v", nodes)
	}
	for _, n := range nodes {
		if n.State != "ALIVE" || n.IsHead != (n.NodeID == c.head.id) {
			t.Errorf("node %+v (head %s)", n, c.head.id)
		}
	}
	if out := goray("list", "nodes"); !strings.Contains(out, "NODE_ID") || !strings.Contains(out, c.nodes[0].id[:12]) || !strings.Contains(out, "CPU 2/2") && !strings.Contains(out, "CPU 1/2") && !strings.Contains(out, "CPU 0/2") {
		t.Errorf("list nodes table:\n%s", out)
	}

	// Actors: filters by state and name, limits, the killed one DEAD.
	var actors []struct {
		ActorID   string `json:"actor_id"`
		ClassName string `json:"class_name"`
		State     string `json:"state"`
		Name      string `json:"name"`
		NodeID    string `json:"node_id"`
		PID       int    `json:"pid"`
	}
	asJSON(goray("list", "actors", "--filter", "name=state-cli", "--format", "json"), &actors)
	if len(actors) != 1 || actors[0].State != "ALIVE" || actors[0].NodeID != c.nodes[0].id || actors[0].PID != pid || actors[0].ClassName != "tests.Counter" {
		t.Fatalf("list actors --filter name=state-cli: %+v (node %s, pid %d)", actors, c.nodes[0].id, pid)
	}
	namedID := actors[0].ActorID
	asJSON(goray("list", "actors", "--filter", "state=dead", "--format", "json"), &actors)
	if len(actors) != 1 || actors[0].ActorID == namedID {
		t.Errorf("list actors --filter state=dead: %+v", actors)
	}
	asJSON(goray("list", "actors", "--filter", "state!=DEAD", "--limit", "5", "--format", "json"), &actors)
	if len(actors) != 1 || actors[0].ActorID != namedID {
		t.Errorf("list actors --filter state!=DEAD: %+v", actors)
	}
	asJSON(goray("list", "actors", "--limit", "1", "--format", "json"), &actors)
	if len(actors) != 1 {
		t.Errorf("list actors --limit 1: %d rows", len(actors))
	}
	for _, kind := range []string{"nodes", "jobs", "actors", "placement-groups", "workers"} {
		t.Logf("goray list %s:\n%s", kind, goray("list", kind))
	}
	if out := goray("list", "actors"); !strings.Contains(out, "ACTOR_ID") || !strings.Contains(out, namedID[:12]) || !strings.Contains(out, "state-cli") {
		t.Errorf("list actors table:\n%s", out)
	}
	out, err := runGoray(c.bin, c.env, "list", "actors", "--filter", "colour=red", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir))
	if err == nil || !strings.Contains(out, `"colour": no such field`) || !strings.Contains(out, "class_name") {
		t.Errorf("a filter on an unknown field: %v\n%s", err, out)
	}

	// get, by an id prefix: every field, as YAML by default.
	var one []map[string]any
	if err := yaml.Unmarshal([]byte(goray("get", "actor", namedID[:8])), &one); err != nil || len(one) != 1 || one[0]["actor_id"] != namedID || one[0]["name"] != "state-cli" {
		t.Errorf("get actor %s: %v %v", namedID[:8], one, err)
	}
	got := goray("get", "actor", namedID[:8], "--format", "json")
	if !strings.Contains(got, namedID) || !strings.Contains(got, `"namespace"`) {
		t.Errorf("get actor %s:\n%s", namedID[:8], got)
	}
	if out, err := runGoray(c.bin, c.env, "get", "actor", "ffffffffff", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir)); err == nil || !strings.Contains(out, "no such id") {
		t.Errorf("get of an unknown id: %v\n%s", err, out)
	}

	// The same from Go.
	alive, err := sdk.ListActors(ctx, sdk.StateFilter("name=state-cli"))
	if err != nil || len(alive) != 1 || alive[0].ActorID != namedID || alive[0].PID != pid {
		t.Errorf("sdk.ListActors(name=state-cli): %+v, %v", alive, err)
	}
	if ns, err := sdk.ListNodes(ctx, sdk.StateFilter("is_head=true")); err != nil || len(ns) != 1 || ns[0].NodeID != c.head.id {
		t.Errorf("sdk.ListNodes(is_head=true): %+v, %v", ns, err)
	}
	if _, err := sdk.ListActors(ctx, sdk.StateFilter("nonsense")); !errors.Is(err, sdk.ErrArgument) {
		t.Errorf("sdk.ListActors with a malformed filter: %v, want ErrArgument", err)
	}

	// Workers: the named actor's process, on the other node, from that
	// node's raylet.
	var workers []struct {
		WorkerID   string `json:"worker_id"`
		NodeID     string `json:"node_id"`
		PID        int    `json:"pid"`
		State      string `json:"state"`
		StdoutPath string `json:"stdout_path"`
	}
	asJSON(goray("list", "workers", "--filter", fmt.Sprintf("pid=%d", pid), "--format", "json"), &workers)
	if len(workers) != 1 || workers[0].NodeID != c.nodes[0].id || workers[0].State != "ACTOR" || !strings.HasPrefix(workers[0].StdoutPath, c.nodes[0].dir) {
		t.Fatalf("list workers --filter pid=%d: %+v", pid, workers)
	}
	if w := goray("get", "worker", workers[0].WorkerID[:10]); !strings.Contains(w, workers[0].WorkerID) || !strings.Contains(w, "state: ACTOR") {
		t.Errorf("get worker:\n%s", w)
	}
	if ws, err := sdk.ListWorkers(ctx, sdk.StateFilter("state=ACTOR")); err != nil || len(ws) == 0 {
		t.Errorf("sdk.ListWorkers(state=ACTOR): %+v, %v", ws, err)
	}

	// Objects: one this driver put, in its node's store, by prefix and
	// summarized by owner.
	blob, err := sdk.Put(ctx, make([]byte, 2<<20))
	if err != nil {
		t.Fatal(err)
	}
	blobID := blob.ID().String()
	var objs []struct {
		ObjectID string `json:"object_id"`
		Size     uint64 `json:"size"`
		InMemory bool   `json:"in_memory"`
		Owner    struct {
			PID int `json:"pid"`
		} `json:"owner"`
	}
	asJSON(goray("list", "objects", "--filter", "object_id="+blobID, "--format", "json"), &objs)
	if len(objs) != 1 || objs[0].Size < 2<<20 || !objs[0].InMemory || objs[0].Owner.PID != os.Getpid() {
		t.Fatalf("list objects --filter object_id=%s: %+v", blobID, objs)
	}
	if o := goray("get", "object", blobID[:12]); !strings.Contains(o, blobID) || !strings.Contains(o, "LOCAL_REFERENCE") {
		t.Errorf("get object:\n%s", o)
	}
	var sums []struct {
		Owner struct {
			PID int `json:"pid"`
		} `json:"owner"`
		Objects    int    `json:"objects"`
		TotalBytes uint64 `json:"total_bytes"`
	}
	asJSON(goray("summary", "objects", "--format", "json"), &sums)
	mine := false
	for _, s := range sums {
		mine = mine || s.Owner.PID == os.Getpid() && s.Objects >= 1 && s.TotalBytes >= 2<<20
	}
	if !mine {
		t.Errorf("summary objects has no line for this driver's objects: %+v", sums)
	}
	if out := goray("summary", "objects"); !strings.Contains(out, "OWNER") || !strings.Contains(out, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("summary objects:\n%s", out)
	}
	if listed, err := sdk.ListObjects(ctx, sdk.StateFilter("object_id="+blobID)); err != nil || len(listed) != 1 {
		t.Errorf("sdk.ListObjects: %+v, %v", listed, err)
	}

	// Logs, read through the other node's raylet: the job's workers'
	// output, each line tagged with its worker; an actor's worker.
	// No CPU: the placement group may hold both of the node's.
	if _, err := Echo.Options(onNode, sdk.NumCPUs(0)).Remote(ctx, "hello-logs").Get(ctx); err != nil {
		t.Fatal(err)
	}
	jobID := workersJob(t, goray("list", "workers", "--format", "json"))
	logs := goray("logs", "--job", jobID[:8])
	if !strings.Contains(logs, "echo: hello-logs") || !strings.Contains(logs, "echo-err: hello-logs") || !strings.Contains(logs, "(worker ") {
		t.Errorf("goray logs --job %s:\n%s", jobID[:8], logs)
	}
	if out := goray("logs", "--job", jobID[:8], "--err", "--tail", "1"); strings.Contains(out, "echo: hello") || !strings.Contains(out, "echo-err: hello-logs") {
		t.Errorf("goray logs --err --tail 1:\n%s", out)
	}
	// --follow prints what the workers write next.
	follow := exec.Command(c.bin, "logs", "--job", jobID[:8], "--follow", "--tail", "0", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir))
	follow.Env = c.env
	var followed strings.Builder
	var fmu sync.Mutex
	follow.Stdout = lockedWriter{&fmu, &followed}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = follow.Process.Kill(); _ = follow.Wait() }()
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if _, err := Echo.Options(onNode, sdk.NumCPUs(0)).Remote(ctx, "followed").Get(ctx); err != nil {
			return err
		}
		fmu.Lock()
		defer fmu.Unlock()
		if !strings.Contains(followed.String(), "echo: followed") {
			return errorf("goray logs --follow printed %q", followed.String())
		}
		return nil
	})
	if out, err := runGoray(c.bin, c.env, "logs", "--actor", namedID[:8], "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir)); err != nil {
		t.Errorf("goray logs --actor: %v\n%s", err, out)
	}
	// These nodes run in the foreground (--block): no daemon log, said so.
	if out, err := runGoray(c.bin, c.env, "logs", "--node", c.nodes[0].id[:8], "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir)); err == nil || !strings.Contains(out, "keeps no log of its own") {
		t.Errorf("goray logs --node of a node in the foreground: %v\n%s", err, out)
	}
	if out, err := runGoray(c.bin, c.env, "logs", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir)); err == nil || !strings.Contains(out, "one of --worker, --actor, --task, --job or --node") {
		t.Errorf("goray logs with no worker named: %v\n%s", err, out)
	}

	// Summary: tests.Counter, one alive and one dead.
	if out := goray("summary", "actors"); !strings.Contains(strings.Join(strings.Fields(out), " "), "tests.Counter 2 0 1 0 1") {
		t.Errorf("goray summary actors:\n%s", out)
	}

	// Jobs: this driver's, running.
	var jobs []struct {
		JobID     string `json:"job_id"`
		Status    string `json:"status"`
		DriverPID int    `json:"driver_pid"`
	}
	asJSON(goray("list", "jobs", "--filter", fmt.Sprintf("driver_pid=%d", os.Getpid()), "--format", "json"), &jobs)
	if len(jobs) != 1 || jobs[0].Status != "RUNNING" {
		t.Errorf("list jobs of this driver: %+v", jobs)
	}

	// Placement groups: the group, each bundle on a node of the cluster.
	var groups []struct {
		ID      string `json:"placement_group_id"`
		State   string `json:"state"`
		Bundles []struct {
			NodeID string `json:"node_id"`
		} `json:"bundles"`
	}
	ys := goray("list", "placement-groups", "--format", "yaml")
	if err := yaml.Unmarshal([]byte(ys), &groups); err != nil {
		t.Fatalf("list placement-groups --format yaml: %v\n%s", err, ys)
	}
	if len(groups) != 1 || groups[0].ID != pg.ID().String() || groups[0].State != "CREATED" || len(groups[0].Bundles) != 2 {
		t.Fatalf("list placement-groups: %+v\n%s", groups, ys)
	}
	for _, b := range groups[0].Bundles {
		if b.NodeID != c.head.id && b.NodeID != c.nodes[0].id {
			t.Errorf("a bundle on node %q, not one of the cluster's\n%s", b.NodeID, ys)
		}
	}
}

// workersJob is the job of the workers in goray list workers --format json.
func workersJob(t *testing.T, out string) string {
	t.Helper()
	var ws []struct {
		JobID string `json:"job_id"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &ws); err != nil || len(ws) == 0 {
		t.Fatalf("list workers: %v\n%s", err, out)
	}
	return ws[0].JobID
}
