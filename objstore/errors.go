package objstore

import (
	"errors"
	"fmt"
)

// Sentinel errors. Operations wrap them with context (the object id, the
// segment path), so match with errors.Is, not ==.
var (
	// ErrStoreFull means no free block is large enough. The concrete error
	// is a *FullError carrying the numbers needed to decide whether to
	// evict, spill or fail the task.
	ErrStoreFull = errors.New("objstore: store full")
	// ErrObjectExists means Create was called for an id already in the
	// store, sealed or not. Objects are immutable: re-creating is a bug
	// or a duplicate task return, never an update.
	ErrObjectExists = errors.New("objstore: object already exists")
	// ErrObjectNotFound means the id is not in the store.
	ErrObjectNotFound = errors.New("objstore: object not found")
	// ErrAlreadySealed means Seal was called twice for one object.
	ErrAlreadySealed = errors.New("objstore: object already sealed")
	// ErrSegmentClosed means the segment's mapping is gone.
	ErrSegmentClosed = errors.New("objstore: segment closed")
	// ErrOutOfRange means an (offset, size) pair does not lie within the
	// segment, which for offsets received from another process usually
	// means a stale or corrupt message.
	ErrOutOfRange = errors.New("objstore: range outside segment")
)

// FullError reports a failed allocation. Largest free block is given next to
// free space because fragmentation, not total use, can be the reason.
type FullError struct {
	Requested   uint64 // bytes asked for
	Capacity    uint64 // bytes the allocator manages
	Used        uint64 // bytes in allocated blocks
	LargestFree uint64 // size of the largest free block
}

func (e *FullError) Error() string {
	return fmt.Sprintf("objstore: store full: requested %d bytes, capacity %d, used %d, free %d, largest free block %d",
		e.Requested, e.Capacity, e.Used, e.Capacity-e.Used, e.LargestFree)
}

// Unwrap makes errors.Is(err, ErrStoreFull) hold.
func (e *FullError) Unwrap() error { return ErrStoreFull }
