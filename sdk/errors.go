package sdk

import (
	"github.com/goray/goray/internal/core"
)

// Sentinel errors. A failed Get returns a *TaskError whose Is method
// matches the sentinel of its kind, so callers write
// errors.Is(err, sdk.ErrWorkerCrashed).
var (
	// ErrGetTimeout: Get or Wait ran out of time (Ray's GetTimeoutError).
	ErrGetTimeout = core.ErrGetTimeout
	// ErrTaskCancelled: the task was cancelled (Ray's TaskCancelledError).
	ErrTaskCancelled = core.ErrTaskCancelled
	// ErrWorkerCrashed: the worker process died mid-task and no retries
	// were left (Ray's WorkerCrashedError).
	ErrWorkerCrashed = core.ErrWorkerCrashed
	// ErrUnknownFunction: the worker binary has no function by that name.
	ErrUnknownFunction = core.ErrUnknownFunction
	// ErrArgument: an argument or option is invalid, or a value could not
	// be encoded or decoded.
	ErrArgument = core.ErrArgument
	// ErrBinaryMismatch: driver and worker binaries register different
	// functions.
	ErrBinaryMismatch = core.ErrBinaryMismatch
	// ErrOwnerDied: the process that owned the object is gone.
	ErrOwnerDied = core.ErrOwnerDied
	// ErrObjectStoreFull: the object store could not hold the object.
	ErrObjectStoreFull = core.ErrObjectStoreFull
	// ErrUnschedulable: no node can run the task.
	ErrUnschedulable = core.ErrUnschedulable
	// ErrObjectLost: the object was freed or lost.
	ErrObjectLost = core.ErrObjectLost
	// ErrNotInitialized: the call needs sdk.Init first.
	ErrNotInitialized = core.ErrNotInitialized
	// ErrAlreadyInitialized: sdk.Init was called twice without Shutdown.
	ErrAlreadyInitialized = core.ErrAlreadyInitialized
	// ErrDuplicateRef: Wait was given the same ref twice.
	ErrDuplicateRef = core.ErrDuplicateRef
	// ErrSystem: an internal failure of the runtime.
	ErrSystem = core.ErrSystem
	// ErrActorDied: the actor is dead, or died while running the call
	// (Ray's ActorDiedError).
	ErrActorDied = core.ErrActorDied
	// ErrPendingCallsExceeded: the caller has MaxPendingCalls calls queued
	// for the actor already (Ray's PendingCallsLimitExceeded).
	ErrPendingCallsExceeded = core.ErrPendingCallsExceeded
	// ErrPlacementGroupRemoved: the placement group was removed (Ready,
	// Wait).
	ErrPlacementGroupRemoved = core.ErrPlacementGroupRemoved
	// ErrSessionDirTooLong: the session directory is too long for the unix
	// sockets inside it (107 bytes at most for a socket's path).
	ErrSessionDirTooLong = core.ErrSessionDirTooLong
	// ErrOutOfMemory: the worker was killed because its node ran out of
	// memory, by the raylet's memory monitor or the kernel's OOM killer
	// (Ray's OutOfMemoryError). The message names the node, the memory
	// used and the threshold.
	ErrOutOfMemory = core.ErrOutOfMemory
	// ErrActorUnavailable: the actor is restarting or unreachable and the
	// call may not be retried (MaxTaskRetries 0); a later call may succeed
	// (Ray's ActorUnavailableError).
	ErrActorUnavailable = core.ErrActorUnavailable
	// ErrRuntimeEnvSetup: the task's or actor's runtime env could not be
	// set up on a node that had to run it: no build of the program for the
	// node's platform (see Binaries), or its working directory could not
	// be fetched (Ray's RuntimeEnvSetupError). The message says which.
	ErrRuntimeEnvSetup = core.ErrRuntimeEnvSetup
)

// TaskError is how a failed task reaches the caller of Get: the function's
// name, where it ran, the remote message and stack, and the original error
// rebuilt as far as it was registered (see RegisterError and
// RegisterErrorType), so errors.Is and errors.As see through it.
type TaskError struct {
	Function string
	TaskID   TaskID
	Message  string
	Stack    string
	PID      int
	NodeID   NodeID
	e        *core.TaskError
}

func (e *TaskError) Error() string { return e.e.Error() }

// Unwrap returns the original error as rebuilt in this process.
func (e *TaskError) Unwrap() error { return publicError(e.e.Unwrap()) }

// Is matches the sentinel of the error's kind (ErrWorkerCrashed, ...).
func (e *TaskError) Is(target error) bool { return e.e.Is(target) }

// RemoteError stands for a link of a remote error chain whose type was not
// registered: it keeps the type's name and message and unwraps to the next
// link.
type RemoteError struct {
	TypeName string
	Message  string
	e        *core.RemoteError
}

func (e *RemoteError) Error() string { return e.Message }

// Unwrap returns the next link of the remote chain.
func (e *RemoteError) Unwrap() error { return publicError(e.e.Unwrap()) }

// publicError gives the runtime's error types their sdk form, so callers
// use errors.As with *sdk.TaskError and *sdk.RemoteError.
func publicError(err error) error {
	switch e := err.(type) {
	case nil:
		return nil
	case *core.TaskError:
		return &TaskError{Function: e.Function, TaskID: TaskID(e.TaskID), Message: e.Message, Stack: e.Stack, PID: e.PID, NodeID: NodeID(e.NodeID), e: e}
	case *core.RemoteError:
		return &RemoteError{TypeName: e.TypeName, Message: e.Message, e: e}
	}
	return err
}

// runtimeError is publicError's inverse, for errors a task returns: a
// *TaskError or *RemoteError the task got from a Get, wrapped or not, travels
// as the runtime's own (the runtime applies it to every link of the chain).
func runtimeError(err error) error {
	switch e := err.(type) {
	case *TaskError:
		return e.e
	case *RemoteError:
		return e.e
	}
	return err
}

func init() { core.SetPublicErrorForms(runtimeError) }

// RegisterError registers a sentinel error value (such as io.EOF or a
// package's ErrNotFound) so a task that returns it, wrapped or not, gives
// its caller an error for which errors.Is(err, sentinel) holds.
func RegisterError(sentinel error) { core.RegisterError(sentinel) }

// RegisterErrorType registers an error type E (such as *MyError) so a task
// error of that type is rebuilt, with its exported fields, on the caller's
// side, where errors.As(err, &target) finds it.
func RegisterErrorType[E error]() { core.RegisterErrorType[E]() }

// ExitActor, returned from an actor method, ends the actor for good after
// that call (Ray's exit_actor): it is not restarted, and the call's ref
// reports the exit.
func ExitActor(reason string) error { return core.ExitActor(reason) }
