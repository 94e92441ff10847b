package core

import (
	"errors"
	"fmt"
	"strings"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

// Sentinel errors. A failed Get returns a *TaskError whose Is method matches
// the sentinel of its kind, so callers write errors.Is(err, sdk.ErrWorkerCrashed).
var (
	// ErrGetTimeout: Get or Wait ran out of time (Ray's GetTimeoutError).
	ErrGetTimeout = errors.New("goray: get timed out")
	// ErrTaskCancelled: the task was cancelled (Ray's TaskCancelledError).
	ErrTaskCancelled = errors.New("goray: task cancelled")
	// ErrWorkerCrashed: the worker process died mid-task and no retries were
	// left (Ray's WorkerCrashedError).
	ErrWorkerCrashed = errors.New("goray: worker crashed")
	// ErrUnknownFunction: the worker binary has no function by that name.
	ErrUnknownFunction = errors.New("goray: unknown function")
	// ErrArgument: an argument could not be encoded or decoded.
	ErrArgument = errors.New("goray: bad argument")
	// ErrBinaryMismatch: driver and worker binaries register different functions.
	ErrBinaryMismatch = errors.New("goray: driver and worker binaries differ")
	// ErrOwnerDied: the process that owned the object is gone.
	ErrOwnerDied = errors.New("goray: object owner died")
	// ErrObjectStoreFull: the object store could not hold the object.
	ErrObjectStoreFull = errors.New("goray: object store full")
	// ErrUnschedulable: no node can run the task.
	ErrUnschedulable = errors.New("goray: task unschedulable")
	// ErrObjectLost: the object was freed or lost.
	ErrObjectLost = errors.New("goray: object lost")
	// ErrNotInitialized: the call needs sdk.Init first.
	ErrNotInitialized = errors.New("goray: not initialized (call sdk.Init)")
	// ErrAlreadyInitialized: sdk.Init was called twice without Shutdown.
	ErrAlreadyInitialized = errors.New("goray: already initialized")
	// ErrDuplicateRef: Wait was given the same ref twice.
	ErrDuplicateRef = errors.New("goray: duplicate ref")
	// ErrSystem: an internal failure of the runtime.
	ErrSystem = errors.New("goray: system error")
	// ErrActorDied: the actor is dead, or died while running the call
	// (Ray's ActorDiedError).
	ErrActorDied = errors.New("goray: actor died")
	// ErrPendingCallsExceeded: the caller has MaxPendingCalls calls queued
	// for the actor already (Ray's PendingCallsLimitExceeded).
	ErrPendingCallsExceeded = errors.New("goray: too many pending calls")
	// ErrOutOfMemory: the worker was killed because its node ran out of
	// memory, by the raylet's memory monitor or the kernel's OOM killer
	// (Ray's OutOfMemoryError).
	ErrOutOfMemory = errors.New("goray: out of memory")
	// ErrActorUnavailable: the actor is restarting or unreachable and the
	// call may not be retried (MaxTaskRetries 0); it may succeed later
	// (Ray's ActorUnavailableError).
	ErrActorUnavailable = errors.New("goray: actor unavailable")
	// ErrRuntimeEnvSetup: the task's or actor's runtime env could not be
	// set up on a node that had to run it (Ray's RuntimeEnvSetupError).
	ErrRuntimeEnvSetup = errors.New("goray: runtime env setup failed")
)

var kindSentinels = map[protos.ErrorKind]error{
	protos.ErrorKind_ERROR_KIND_WORKER_CRASHED:         ErrWorkerCrashed,
	protos.ErrorKind_ERROR_KIND_CANCELLED:              ErrTaskCancelled,
	protos.ErrorKind_ERROR_KIND_UNKNOWN_FUNCTION:       ErrUnknownFunction,
	protos.ErrorKind_ERROR_KIND_ARGUMENT:               ErrArgument,
	protos.ErrorKind_ERROR_KIND_BINARY_MISMATCH:        ErrBinaryMismatch,
	protos.ErrorKind_ERROR_KIND_OWNER_DIED:             ErrOwnerDied,
	protos.ErrorKind_ERROR_KIND_OBJECT_STORE_FULL:      ErrObjectStoreFull,
	protos.ErrorKind_ERROR_KIND_UNSCHEDULABLE:          ErrUnschedulable,
	protos.ErrorKind_ERROR_KIND_OBJECT_LOST:            ErrObjectLost,
	protos.ErrorKind_ERROR_KIND_SYSTEM:                 ErrSystem,
	protos.ErrorKind_ERROR_KIND_ACTOR_DIED:             ErrActorDied,
	protos.ErrorKind_ERROR_KIND_PENDING_CALLS_EXCEEDED: ErrPendingCallsExceeded,
	protos.ErrorKind_ERROR_KIND_OUT_OF_MEMORY:          ErrOutOfMemory,
	protos.ErrorKind_ERROR_KIND_ACTOR_UNAVAILABLE:      ErrActorUnavailable,
	protos.ErrorKind_ERROR_KIND_RUNTIME_ENV:            ErrRuntimeEnvSetup,
}

// TaskError is how a failed task reaches the caller of Get: the function's
// name, where it ran, the remote message and stack, and the original error
// rebuilt as far as it was registered (see RegisterError and
// RegisterErrorType), so errors.Is and errors.As see through it.
type TaskError struct {
	Kind     protos.ErrorKind
	Function string
	TaskID   protos.TaskID
	Message  string
	Stack    string
	PID      int
	NodeID   protos.NodeID
	cause    error
}

func (e *TaskError) Error() string {
	var b strings.Builder
	b.WriteString("goray: ")
	switch e.Kind {
	case protos.ErrorKind_ERROR_KIND_TASK:
		fmt.Fprintf(&b, "task %s", e.Function)
	case protos.ErrorKind_ERROR_KIND_WORKER_CRASHED:
		fmt.Fprintf(&b, "worker crashed running %s", e.Function)
	case protos.ErrorKind_ERROR_KIND_CANCELLED:
		fmt.Fprintf(&b, "task %s cancelled", e.Function)
	case protos.ErrorKind_ERROR_KIND_ACTOR_DIED:
		fmt.Fprintf(&b, "actor died (call %s)", e.Function)
	case protos.ErrorKind_ERROR_KIND_ACTOR_UNAVAILABLE:
		fmt.Fprintf(&b, "actor unavailable (call %s)", e.Function)
	case protos.ErrorKind_ERROR_KIND_OUT_OF_MEMORY:
		fmt.Fprintf(&b, "out of memory running %s", e.Function)
	default:
		fmt.Fprintf(&b, "task %s", e.Function)
	}
	if e.PID != 0 {
		fmt.Fprintf(&b, " (pid=%d)", e.PID)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap returns the original error as rebuilt in this process.
func (e *TaskError) Unwrap() error { return e.cause }

// Is matches the sentinel of the error's kind.
func (e *TaskError) Is(target error) bool {
	return kindSentinels[e.Kind] == target && target != nil
}

// RemoteError stands for a link of a remote error chain whose type was not
// registered: it keeps the type's name and message and unwraps to the next
// link.
type RemoteError struct {
	TypeName string
	Message  string
	next     error
}

func (e *RemoteError) Error() string { return e.Message }
func (e *RemoteError) Unwrap() error { return e.next }

// taskErrorFromProto rebuilds a TaskError received from another process.
func taskErrorFromProto(p *protos.TaskErrorProto) *TaskError {
	if p == nil {
		return nil
	}
	e := &TaskError{
		Kind:     p.GetKind(),
		Function: p.GetFunction(),
		TaskID:   protos.MustUniqueID(p.GetTaskId()),
		Message:  p.GetMessage(),
		Stack:    p.GetStack(),
		PID:      int(p.GetPid()),
		NodeID:   protos.MustUniqueID(p.GetNodeId()),
	}
	e.cause = decodeChain(p.GetChain())
	return e
}

func (e *TaskError) toProto() *protos.TaskErrorProto {
	return &protos.TaskErrorProto{
		Kind:     e.Kind,
		Function: e.Function,
		TaskId:   e.TaskID.Bytes(),
		Message:  e.Message,
		Stack:    e.Stack,
		Pid:      int32(e.PID),
		NodeId:   e.NodeID.Bytes(),
		Chain:    encodeChain(e.cause),
	}
}

// systemError builds a TaskError for failures of the runtime itself.
func systemError(kind protos.ErrorKind, function string, task protos.TaskID, format string, args ...any) *TaskError {
	return &TaskError{Kind: kind, Function: function, TaskID: task, Message: fmt.Sprintf(format, args...)}
}

// publicForms maps an error of the public API's own types (the sdk's
// TaskError and RemoteError, which wrap this package's) back to the
// runtime's, so a task that wraps an error it got from a Get sends the
// nested task's frame whole. The sdk sets it at init.
var publicForms = func(err error) error { return err }

// SetPublicErrorForms installs the mapping encodeChain applies to every link
// of an error chain; the sdk calls it once, at init.
func SetPublicErrorForms(f func(error) error) { publicForms = f }

// encodeChain walks err's Unwrap chain, outermost first.
func encodeChain(err error) []*protos.ErrorFrame {
	var frames []*protos.ErrorFrame
	for err != nil {
		err = publicForms(err)
		if te, ok := err.(*TaskError); ok {
			frames = append(frames, &protos.ErrorFrame{TypeName: "*sdk.TaskError", Message: te.Error(), TaskError: te.toProto()})
			return frames
		}
		f := &protos.ErrorFrame{TypeName: fmt.Sprintf("%T", err), Message: err.Error()}
		if name, ok := sentinelName(err); ok {
			f.Sentinel = name
			frames = append(frames, f)
			return frames
		}
		if payload, ok := encodeRegisteredType(err); ok {
			f.Payload = payload
			frames = append(frames, f)
			return frames
		}
		frames = append(frames, f)
		if re, ok := err.(*RemoteError); ok {
			f.TypeName = re.TypeName
		}
		err = errors.Unwrap(err)
	}
	return frames
}

// decodeChain rebuilds a chain, innermost first, so each link wraps the next.
func decodeChain(frames []*protos.ErrorFrame) error {
	var next error
	for i := len(frames) - 1; i >= 0; i-- {
		f := frames[i]
		switch {
		case f.GetTaskError() != nil:
			next = taskErrorFromProto(f.GetTaskError())
		case f.GetSentinel() != "":
			if s, ok := lookupSentinel(f.GetSentinel()); ok {
				next = s
				continue
			}
			next = &RemoteError{TypeName: f.GetTypeName(), Message: f.GetMessage(), next: next}
		case len(f.GetPayload()) > 0:
			if v, ok := decodeRegisteredType(f.GetTypeName(), f.GetPayload()); ok {
				next = v
				continue
			}
			next = &RemoteError{TypeName: f.GetTypeName(), Message: f.GetMessage(), next: next}
		default:
			next = &RemoteError{TypeName: f.GetTypeName(), Message: f.GetMessage(), next: next}
		}
	}
	return next
}

// ErrSessionDirTooLong: the session directory is too long for the unix
// sockets inside it.
var ErrSessionDirTooLong = raylet.ErrSessionDirTooLong
