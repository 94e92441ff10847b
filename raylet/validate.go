package raylet

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/goray/goray/internal/runtimeenv"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Requests come from any process that passed the wire handshake, so every
// field is checked before the raylet acts on it or keeps it: a bad request
// is answered with an error naming the method and the field (a one-way
// message, which has nobody to answer, is dropped and logged), never a
// panic, and never a request that makes the raylet hold much more than
// the peer sent. The id and size checks are comparisons on the decoded
// message that allocate nothing unless they fail, because the store and
// lease requests run for every task.

// Error codes of refused requests (wire.RemoteError.Code).
const (
	// CodeMalformed: the payload is not the method's message.
	CodeMalformed = "malformed"
	// CodeInvalid: a field has a value the method cannot take.
	CodeInvalid = "invalid"
	// CodeTooLarge: a size or count beyond what the raylet will hold.
	CodeTooLarge = "too_large"
)

// Sentinels of refused requests, of the raylet's and of core workers'
// (package sdk): RequestError picks the code a peer sees by them.
var (
	ErrMalformedRequest = errors.New("malformed request")
	ErrInvalidRequest   = errors.New("invalid request")
	ErrRequestTooLarge  = errors.New("request too large")
)

// Bounds on what one request may make a raylet or core worker hold.
const (
	// MaxObjectIDsPerRequest bounds the object ids of one RELEASE_OBJECTS
	// or DELETE_OBJECTS (and, at a core worker, ADD_BORROWERS and
	// REMOVE_BORROWERS); clients send longer lists in several requests.
	MaxObjectIDsPerRequest = 1 << 16
	// maxBundlesPerRequest bounds a PREPARE_BUNDLES or CANCEL_BUNDLES:
	// every bundle committed adds resource entries with long names, so
	// the count, not the bytes, is what a peer could amplify.
	maxBundlesPerRequest = 4096
	// maxEnvEntries bounds a job's environment, which every worker of the
	// job is started with (exec fails far below this anyway).
	maxEnvEntries = 1 << 14
)

// invalidField reports a field the method cannot take.
func invalidField(field string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrInvalidRequest, field, err)
}

// invalidFieldf is invalidField with a message.
func invalidFieldf(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidRequest, field, fmt.Sprintf(format, args...))
}

// tooLargef reports a size or count beyond what the raylet will hold.
func tooLargef(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrRequestTooLarge, field, fmt.Sprintf(format, args...))
}

var errZeroID = errors.New("the zero id names nothing")

// parseID parses a required id field.
func parseID(field string, b []byte) (protos.UniqueID, error) {
	id, err := protos.UniqueIDFromBytes(b)
	if err != nil {
		return id, invalidField(field, err)
	}
	if id.IsZero() {
		return id, invalidField(field, errZeroID)
	}
	return id, nil
}

// parseOptionalID parses an id field that may be left empty (the zero id).
func parseOptionalID(field string, b []byte) (protos.UniqueID, error) {
	if len(b) == 0 {
		return protos.UniqueID{}, nil
	}
	id, err := protos.UniqueIDFromBytes(b)
	if err != nil {
		return id, invalidField(field, err)
	}
	return id, nil
}

// parseObjectID parses a required object id field.
func parseObjectID(field string, b []byte) (protos.ObjectID, error) {
	id, err := protos.ObjectIDFromBytes(b)
	if err != nil {
		return id, invalidField(field, err)
	}
	if id.IsZero() {
		return id, invalidField(field, errZeroID)
	}
	return id, nil
}

// CheckObjectIDs validates a list of object ids: at most
// MaxObjectIDsPerRequest, each a whole non-zero id. Handlers check the
// whole list before acting on any of it, so a bad request changes nothing.
func CheckObjectIDs(field string, ids [][]byte) error {
	if len(ids) > MaxObjectIDsPerRequest {
		return tooLargef(field, "%d ids, at most %d per request", len(ids), MaxObjectIDsPerRequest)
	}
	for i, b := range ids {
		if len(b) != protos.ObjectIDSize {
			return invalidFieldf(field, "id %d has %d bytes, want %d", i, len(b), protos.ObjectIDSize)
		}
		if protos.ObjectID(b) == (protos.ObjectID{}) {
			return invalidFieldf(field, "id %d is the zero id", i)
		}
	}
	return nil
}

// checkEndpoint validates an endpoint a peer names for itself; "" is
// allowed (the field is optional everywhere).
func checkEndpoint(field, endpoint string) error {
	if endpoint == "" {
		return nil
	}
	if _, _, err := wire.ParseEndpoint(endpoint); err != nil {
		return invalidField(field, err)
	}
	return nil
}

// checkText rejects a string that cannot reach exec (a path, an argument,
// an environment entry): a NUL byte would make the worker start fail far
// from the request that caused it.
func checkText(field, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return invalidFieldf(field, "contains a NUL byte")
	}
	return nil
}

// checkExecutable refuses a job executable that exists but is not a
// regular file, before anything reads it: hashing /dev/zero, or opening a
// FIFO, would hold the raylet actor forever. (A missing file is left to
// fail the job's worker start, as it always has.)
func checkExecutable(path string) error {
	if err := checkText("executable", path); err != nil {
		return err
	}
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return invalidFieldf("executable", "%s is not a regular file (%v)", path, fi.Mode().Type())
	}
	return nil
}

// RequestError is the wire error a refused request is answered with: the
// code follows the sentinel err wraps, and the message names the method.
// An err that already is a *wire.RemoteError is answered as it is.
func RequestError(method protos.Method, err error) *wire.RemoteError {
	var re *wire.RemoteError
	if errors.As(err, &re) {
		return re
	}
	code := CodeInvalid
	switch {
	case errors.Is(err, ErrMalformedRequest):
		code = CodeMalformed
	case errors.Is(err, ErrRequestTooLarge):
		code = CodeTooLarge
	}
	return wire.NewError(code, "%v: %v", method, err)
}

// malformed wraps an unmarshal failure.
func malformed(err error) error {
	return fmt.Errorf("%w: %w", ErrMalformedRequest, err)
}

// reject answers a request the raylet refused. A one-way message has
// nobody to answer: it is dropped, with a warning if it was bad input
// rather than a refusal of a well-formed request.
func (r *Raylet) reject(c *wire.Conn, req *wire.Request, err error) {
	re := RequestError(req.Method, err)
	ev := r.cfg.Logger.Debug()
	if req.OneWay && (re.Code == CodeMalformed || re.Code == CodeInvalid || re.Code == CodeTooLarge) {
		ev = r.cfg.Logger.Warn()
	}
	ev.Stringer("method", req.Method).Bool("one_way", req.OneWay).Str("code", re.Code).Str("error", re.Message).Msg("refused a request")
	if !req.OneWay {
		_ = c.ReplyError(req, re)
	}
}

// --- the raylet's requests ---

// checkCreateObject validates a CREATE_OBJECT against the store's capacity:
// a size that can never fit is refused before anything is allocated.
func checkCreateObject(m *protos.CreateObjectRequest, capacity uint64) (id protos.ObjectID, owner protos.WorkerID, err error) {
	if id, err = parseObjectID("object_id", m.GetObjectId()); err != nil {
		return id, owner, err
	}
	if owner, err = parseOptionalID("owner_worker_id", m.GetOwnerWorkerId()); err != nil {
		return id, owner, err
	}
	if m.GetSize() > capacity {
		return id, owner, tooLargef("size", "object %s of %d bytes is larger than the object store (%d bytes)", id, m.GetSize(), capacity)
	}
	return id, owner, nil
}

// checkPullObject validates a PULL_OBJECT.
func checkPullObject(m *protos.PullObjectRequest, capacity uint64) (id protos.ObjectID, node protos.NodeID, owner protos.WorkerID, err error) {
	if id, err = parseObjectID("object_id", m.GetObjectId()); err != nil {
		return
	}
	if node, err = parseID("node_id", m.GetNodeId()); err != nil {
		return
	}
	if owner, err = parseOptionalID("owner_worker_id", m.GetOwnerWorkerId()); err != nil {
		return
	}
	if m.GetSize() > capacity {
		err = tooLargef("size", "object %s of %d bytes is larger than the object store (%d bytes)", id, m.GetSize(), capacity)
	}
	return
}

// checkRegisterClient validates what a driver registers its job with; the
// job's executable, environment and directory start every worker of it.
func checkRegisterClient(m *protos.RegisterClientRequest) (job protos.JobID, driver protos.WorkerID, err error) {
	if job, err = parseID("job_id", m.GetJobId()); err != nil {
		return
	}
	if driver, err = parseOptionalID("worker_id", m.GetWorkerId()); err != nil {
		return
	}
	if err = checkText("executable", m.GetExecutable()); err != nil {
		return
	}
	if err = checkText("working_dir", m.GetWorkingDir()); err != nil {
		return
	}
	env := m.GetEnv()
	if len(env) > maxEnvEntries {
		err = tooLargef("env", "%d entries, at most %d", len(env), maxEnvEntries)
		return
	}
	for i, kv := range env {
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
			err = invalidFieldf("env", "entry %d is not NAME=value", i)
			return
		}
		if strings.IndexByte(kv, 0) >= 0 {
			err = invalidFieldf("env", "entry %d contains a NUL byte", i)
			return
		}
	}
	if rerr := runtimeenv.CheckRuntimeEnv(m.GetRuntimeEnv()); rerr != nil {
		err = invalidField("runtime_env", rerr)
		return
	}
	if rerr := runtimeenv.CheckBinaries(m.GetBinaries()); rerr != nil {
		err = invalidField("binaries", rerr)
	}
	return
}

// checkRegisterWorker validates a worker's registration.
func checkRegisterWorker(m *protos.RegisterWorkerRequest) (worker protos.WorkerID, job protos.JobID, err error) {
	if worker, err = parseID("worker_id", m.GetWorkerId()); err != nil {
		return
	}
	if job, err = parseOptionalID("job_id", m.GetJobId()); err != nil {
		return
	}
	if m.GetPid() < 0 {
		err = invalidFieldf("pid", "%d is negative", m.GetPid())
		return
	}
	if err = checkEndpoint("endpoint", m.GetEndpoint()); err != nil {
		return
	}
	err = checkEndpoint("tcp_endpoint", m.GetTcpEndpoint())
	return
}

// leaseDemand is a validated REQUEST_WORKER_LEASE.
type leaseDemand struct {
	job       protos.JobID
	demand    ResourceSet
	running   ResourceSet
	preferred protos.NodeID
}

// checkLeaseRequest validates a lease request. Only a dedicated lease's
// running resources are read (a task lease ignores the field).
func checkLeaseRequest(m *protos.RequestWorkerLeaseRequest) (d leaseDemand, err error) {
	if d.job, err = parseID("job_id", m.GetJobId()); err != nil {
		return
	}
	if d.preferred, err = parseOptionalID("preferred_node_id", m.GetPreferredNodeId()); err != nil {
		return
	}
	if d.demand, err = FromProto(m.GetResources()); err != nil {
		err = invalidField("resources", err)
		return
	}
	if m.GetDedicated() {
		if d.running, err = FromProto(m.GetRunningResources()); err != nil {
			err = invalidField("running_resources", err)
			return
		}
	}
	if m.GetDetached() && !m.GetDedicated() {
		err = invalidFieldf("detached", "only a dedicated (actor) lease can be detached")
		return
	}
	if rerr := runtimeenv.CheckRuntimeEnv(m.GetRuntimeEnv()); rerr != nil {
		err = invalidField("runtime_env", rerr)
	}
	return
}

// bundleSet is a validated PREPARE_BUNDLES: each bundle's resources by
// index.
type bundleSet struct {
	group   protos.UniqueID
	bundles map[int32]ResourceSet
}

// checkPrepareBundles validates a PREPARE_BUNDLES: distinct non-negative
// indexes (a repeated index would be reserved twice and given back once),
// bundles that reserve something, and totals that stay representable.
func checkPrepareBundles(m *protos.PrepareBundlesRequest) (b bundleSet, err error) {
	if b.group, err = parseID("placement_group_id", m.GetPlacementGroupId()); err != nil {
		return
	}
	list := m.GetBundles()
	if len(list) > maxBundlesPerRequest {
		err = tooLargef("bundles", "%d bundles, at most %d per request", len(list), maxBundlesPerRequest)
		return
	}
	b.bundles = make(map[int32]ResourceSet, len(list))
	total := ResourceSet{}
	for _, x := range list {
		i := x.GetIndex()
		if i < 0 {
			err = invalidFieldf("bundles", "index %d is negative", i)
			return
		}
		if _, dup := b.bundles[i]; dup {
			err = invalidFieldf("bundles", "index %d appears twice", i)
			return
		}
		rs, rerr := FromProto(x.GetResources())
		if rerr != nil {
			err = invalidField(fmt.Sprintf("bundles[%d].resources", i), rerr)
			return
		}
		if len(rs) == 0 {
			err = invalidFieldf(fmt.Sprintf("bundles[%d].resources", i), "the bundle reserves nothing")
			return
		}
		if aerr := total.addChecked(rs); aerr != nil {
			err = tooLargef("bundles", "%v", aerr)
			return
		}
		b.bundles[i] = rs
	}
	return
}

// checkCancelBundles validates a CANCEL_BUNDLES: distinct non-negative
// indexes, since "every bundle of the group" is decided from their count.
func checkCancelBundles(m *protos.CancelBundlesRequest) (group protos.UniqueID, err error) {
	if group, err = parseID("placement_group_id", m.GetPlacementGroupId()); err != nil {
		return
	}
	idx := m.GetIndexes()
	if len(idx) > maxBundlesPerRequest {
		err = tooLargef("indexes", "%d indexes, at most %d per request", len(idx), maxBundlesPerRequest)
		return
	}
	var seen map[int32]bool
	if len(idx) > 1 {
		seen = make(map[int32]bool, len(idx))
	}
	for _, i := range idx {
		if i < 0 {
			err = invalidFieldf("indexes", "index %d is negative", i)
			return
		}
		if seen != nil {
			if seen[i] {
				err = invalidFieldf("indexes", "index %d appears twice", i)
				return
			}
			seen[i] = true
		}
	}
	return
}
