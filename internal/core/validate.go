package core

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/raylet"
)

// The core worker serves any process that passed the wire handshake, so
// every request is decoded and checked before it is acted on: a bad one is
// answered with an error naming the method and the field (a one-way
// message is dropped and logged), never a panic, an exit or a dial of an
// address nobody gave. PUSH_TASK and ACTOR_CALL run for every task, so the
// checks are comparisons on the decoded message that allocate nothing
// unless they fail.

// Bounds on what one request may make a core worker hold.
const (
	// maxConcurrencyGroups bounds an actor's concurrency groups, each of
	// which gets a semaphore of its own.
	maxConcurrencyGroups = 1024
	// maxTaskArgs bounds a task's arguments (no registered function takes
	// more than a handful).
	maxTaskArgs = 1 << 12
	// maxStreamIndex is the last item index a stream can have: item i is
	// object index streamIndexBase+i, a uint32, and a larger index would
	// wrap onto the call's own return object.
	maxStreamIndex = math.MaxUint32 - streamIndexBase
)

var errZeroID = errors.New("the zero id names nothing")

func invalidField(field string, err error) error {
	return fmt.Errorf("%w: %s: %w", raylet.ErrInvalidRequest, field, err)
}

func invalidFieldf(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", raylet.ErrInvalidRequest, field, fmt.Sprintf(format, args...))
}

func tooLargef(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", raylet.ErrRequestTooLarge, field, fmt.Sprintf(format, args...))
}

func malformed(err error) error { return fmt.Errorf("%w: %w", raylet.ErrMalformedRequest, err) }

// fieldPath names a nested field for an error. Callers build it only once
// a check failed, so that validating a valid request allocates nothing.
func fieldPath(parts ...string) string {
	n := 0
	for _, p := range parts {
		if p != "" {
			parts[n] = p
			n++
		}
	}
	return strings.Join(parts[:n], ".")
}

// idProblem says what is wrong with a required (or, if !required, an
// optional) id field, or nil.
func idProblem(b []byte, required bool) error {
	if len(b) == 0 && !required {
		return nil
	}
	if len(b) != protos.UniqueIDSize {
		return fmt.Errorf("id has %d bytes, want %d", len(b), protos.UniqueIDSize)
	}
	if required && protos.UniqueID(b).IsZero() {
		return errZeroID
	}
	return nil
}

// objectIDProblem says what is wrong with a required object id field.
func objectIDProblem(b []byte) error {
	if len(b) != protos.ObjectIDSize {
		return fmt.Errorf("object id has %d bytes, want %d", len(b), protos.ObjectIDSize)
	}
	if protos.ObjectID(b).IsZero() {
		return errZeroID
	}
	return nil
}

// endpointProblem says what is wrong with an endpoint a peer names ("" is
// allowed), or nil.
func endpointProblem(endpoint string) error {
	if endpoint == "" {
		return nil
	}
	_, _, err := wire.ParseEndpoint(endpoint)
	return err
}

// parseID parses a required id field.
func parseID(field string, b []byte) (protos.UniqueID, error) {
	if err := idProblem(b, true); err != nil {
		return protos.UniqueID{}, invalidField(field, err)
	}
	return protos.UniqueID(b), nil
}

// checkOptionalID checks an id field that may be left empty.
func checkOptionalID(field string, b []byte) error {
	if err := idProblem(b, false); err != nil {
		return invalidField(field, err)
	}
	return nil
}

// parseObjectID parses a required object id field.
func parseObjectID(field string, b []byte) (protos.ObjectID, error) {
	if err := objectIDProblem(b); err != nil {
		return protos.ObjectID{}, invalidField(field, err)
	}
	return protos.ObjectID(b), nil
}

// checkAddress checks the address of a process named in a request (an
// owner, a caller, a borrower), at field path p1.p2.p3: this process may
// dial it and keys its records by its worker id.
func checkAddress(p1, p2, p3 string, a *protos.Address, required bool) error {
	if a == nil {
		if required {
			return invalidFieldf(fieldPath(p1, p2, p3), "missing")
		}
		return nil
	}
	if err := idProblem(a.GetWorkerId(), true); err != nil {
		return invalidField(fieldPath(p1, p2, p3, "worker_id"), err)
	}
	if err := idProblem(a.GetNodeId(), false); err != nil {
		return invalidField(fieldPath(p1, p2, p3, "node_id"), err)
	}
	if err := endpointProblem(a.GetEndpoint()); err != nil {
		return invalidField(fieldPath(p1, p2, p3, "endpoint"), err)
	}
	if err := endpointProblem(a.GetTcpEndpoint()); err != nil {
		return invalidField(fieldPath(p1, p2, p3, "tcp_endpoint"), err)
	}
	return nil
}

// checkRef checks a ref in transit, at field path p1.p2.
func checkRef(p1, p2 string, r *protos.ObjectRefProto) error {
	if err := objectIDProblem(r.GetObjectId()); err != nil {
		return invalidField(fieldPath(p1, p2, "object_id"), err)
	}
	return checkAddress(p1, p2, "owner", r.GetOwner(), true)
}

// checkObjectData checks a value in transit, at field path p: known
// encodings, a store location naming a node, nested refs this process
// will track.
func checkObjectData(p string, d *protos.ObjectData) error {
	if d == nil {
		return nil
	}
	if _, ok := protos.Encoding_name[int32(d.GetEncoding())]; !ok {
		return invalidFieldf(fieldPath(p, "encoding"), "unknown encoding %d", int32(d.GetEncoding()))
	}
	if _, ok := protos.NumericKind_name[int32(d.GetNumericKind())]; !ok {
		return invalidFieldf(fieldPath(p, "numeric_kind"), "unknown numeric kind %d", int32(d.GetNumericKind()))
	}
	if err := idProblem(d.GetNodeId(), d.GetInStore()); err != nil {
		return invalidField(fieldPath(p, "node_id"), err)
	}
	if e := d.GetError(); e != nil {
		if _, ok := protos.ErrorKind_name[int32(e.GetKind())]; !ok {
			return invalidFieldf(fieldPath(p, "error", "kind"), "unknown error kind %d", int32(e.GetKind()))
		}
	}
	// Not bounded in number: each costs its sender more bytes than its
	// entry costs here, and a value may nest many.
	for _, r := range d.GetNestedRefs() {
		if err := checkRef(p, "nested_refs", r); err != nil {
			return err
		}
	}
	return nil
}

// checkArgs checks a call's arguments.
func checkArgs(args []*protos.TaskArg) error {
	if len(args) > maxTaskArgs {
		return tooLargef("args", "%d arguments, at most %d", len(args), maxTaskArgs)
	}
	for _, a := range args {
		if a.GetValue() == nil {
			return invalidFieldf("args", "an argument has no value")
		}
		if err := checkObjectData("args.value", a.GetValue()); err != nil {
			return err
		}
		if a.Ref != nil {
			if err := checkRef("args", "ref", a.GetRef()); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkPushTask validates a PUSH_TASK.
func checkPushTask(m *protos.PushTaskRequest) (lease protos.LeaseID, task protos.TaskID, err error) {
	if lease, err = parseID("lease_id", m.GetLeaseId()); err != nil {
		return
	}
	spec := m.GetSpec()
	if spec == nil {
		err = invalidFieldf("spec", "missing")
		return
	}
	if task, err = parseID("spec.task_id", spec.GetTaskId()); err != nil {
		return
	}
	if spec.GetFunction() == "" {
		err = invalidFieldf("spec.function", "empty")
		return
	}
	if spec.GetAttempt() < 0 {
		err = invalidFieldf("spec.attempt", "%d is negative", spec.GetAttempt())
		return
	}
	if err = checkOptionalID("spec.job_id", spec.GetJobId()); err != nil {
		return
	}
	if err = checkOptionalID("spec.parent_task_id", spec.GetParentTaskId()); err != nil {
		return
	}
	if rerr := raylet.CheckAmounts(spec.GetResources()); rerr != nil {
		err = invalidField("spec.resources", rerr)
		return
	}
	if err = checkAddress("spec", "owner", "", spec.GetOwner(), false); err != nil {
		return
	}
	err = checkArgs(spec.GetArgs())
	return
}

// checkActorCall validates an ACTOR_CALL.
func checkActorCall(m *protos.ActorCallRequest) (actor protos.UniqueID, task protos.TaskID, err error) {
	if actor, err = parseID("actor_id", m.GetActorId()); err != nil {
		return
	}
	if task, err = parseID("task_id", m.GetTaskId()); err != nil {
		return
	}
	if m.GetMethod() == "" {
		err = invalidFieldf("method", "empty")
		return
	}
	if m.GetAttempt() < 0 {
		err = invalidFieldf("attempt", "%d is negative", m.GetAttempt())
		return
	}
	if err = checkAddress("caller", "", "", m.GetCaller(), false); err != nil {
		return
	}
	err = checkArgs(m.GetArgs())
	return
}

// checkCreateActor validates a CREATE_ACTOR.
func checkCreateActor(m *protos.CreateActorRequest) (actor protos.UniqueID, err error) {
	spec := m.GetSpec()
	if spec == nil {
		err = invalidFieldf("spec", "missing")
		return
	}
	if actor, err = parseID("spec.actor_id", spec.GetActorId()); err != nil {
		return
	}
	if spec.GetClassName() == "" {
		err = invalidFieldf("spec.class_name", "empty")
		return
	}
	if m.GetNumRestarts() < 0 {
		err = invalidFieldf("num_restarts", "%d is negative", m.GetNumRestarts())
		return
	}
	if err = checkOptionalID("spec.job_id", spec.GetJobId()); err != nil {
		return
	}
	if err = checkAddress("spec", "owner", "", spec.GetOwner(), false); err != nil {
		return
	}
	opts := spec.GetOptions()
	if opts.GetMaxConcurrency() < 0 {
		err = invalidFieldf("spec.options.max_concurrency", "%d is negative", opts.GetMaxConcurrency())
		return
	}
	groups := opts.GetConcurrencyGroups()
	if len(groups) > maxConcurrencyGroups {
		err = tooLargef("spec.options.concurrency_groups", "%d groups, at most %d", len(groups), maxConcurrencyGroups)
		return
	}
	for i, g := range groups {
		if g.GetName() == "" {
			err = invalidFieldf("spec.options.concurrency_groups", "group %d has no name", i)
			return
		}
		if g.GetMaxConcurrency() < 0 {
			err = invalidFieldf("spec.options.concurrency_groups", "group %q: max_concurrency %d is negative", g.GetName(), g.GetMaxConcurrency())
			return
		}
		for _, other := range groups[:i] {
			if other.GetName() == g.GetName() {
				err = invalidFieldf("spec.options.concurrency_groups", "group %q appears twice", g.GetName())
				return
			}
		}
	}
	err = checkArgs(spec.GetArgs())
	return
}

// checkStreamItem validates a STREAM_ITEM.
func checkStreamItem(m *protos.StreamItemRequest) (task protos.TaskID, err error) {
	if task, err = parseID("task_id", m.GetTaskId()); err != nil {
		return
	}
	if m.GetIndex() > maxStreamIndex {
		err = invalidFieldf("index", "%d is beyond the last item a stream can have (%d)", m.GetIndex(), uint64(maxStreamIndex))
		return
	}
	err = checkObjectData("data", m.GetData())
	return
}

// checkBorrow validates an ADD_BORROWERS or REMOVE_BORROWERS.
func checkBorrow(m *protos.BorrowRequest) error {
	if err := raylet.CheckObjectIDs("object_ids", m.GetObjectIds()); err != nil {
		return err
	}
	b := m.GetBorrower()
	if err := checkAddress("borrower", "", "", b, true); err != nil {
		return err
	}
	if b.GetEndpoint() == "" {
		// Borrowers are watched, and forgotten when they die, by it.
		return invalidFieldf("borrower.endpoint", "empty")
	}
	return nil
}

// reject answers a request this process refused; a one-way message, which
// has nobody to answer, is dropped with a warning.
func (cw *Worker) reject(c *wire.Conn, req *wire.Request, err error) {
	re := raylet.RequestError(req.Method, err)
	ev := cw.log.Debug()
	if req.OneWay {
		ev = cw.log.Warn()
	}
	ev.Stringer("method", req.Method).Bool("one_way", req.OneWay).Str("code", re.Code).Str("error", re.Message).Msg("refused a request")
	if !req.OneWay {
		_ = c.ReplyError(req, re)
	}
}

// inChunks calls fn with consecutive parts of ids of at most
// raylet.MaxObjectIDsPerRequest, the most one request may name.
func inChunks[T any](ids []T, fn func([]T)) {
	for len(ids) > raylet.MaxObjectIDsPerRequest {
		fn(ids[:raylet.MaxObjectIDsPerRequest])
		ids = ids[raylet.MaxObjectIDsPerRequest:]
	}
	if len(ids) > 0 {
		fn(ids)
	}
}
