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
	// ErrStoreClosed means Close was called: the spiller is stopped and
	// the spill files are gone, so nothing can be created or restored.
	ErrStoreClosed = errors.New("objstore: store closed")
	// ErrSpillLost means an object's spill file is missing, so its only
	// copy is gone. Retrying cannot help; the object must be rebuilt.
	ErrSpillLost = errors.New("objstore: spill file lost")
	// ErrSpillCorrupt means a spill record's header or checksum does not
	// match what was written: the disk or someone else changed the file.
	ErrSpillCorrupt = errors.New("objstore: spill record corrupt")
)

// FullError reports a failed allocation. Largest free block is given next to
// free space because fragmentation, not total use, can be the reason; pinned
// and unspillable bytes say how much of the use spilling could not touch.
type FullError struct {
	Requested   uint64 // bytes asked for
	Capacity    uint64 // bytes the allocator manages
	Used        uint64 // bytes in allocated blocks
	LargestFree uint64 // size of the largest free block
	Pinned      uint64 // bytes in blocks pinned by a holder
	// Unspillable is the part of Used that spilling could not free when
	// the request failed: pinned, unsealed, being restored, or deleted but
	// still pinned. Without spilling it is all of Used.
	Unspillable uint64
	Spilled     uint64 // bytes of objects already moved to spill files
	Spilling    bool   // whether the store spills at all
	// SpillErr is why the last spill round failed (disk full, say), if
	// it did.
	SpillErr error
}

func (e *FullError) Error() string {
	msg := fmt.Sprintf("objstore: store full: requested %d bytes, capacity %d, used %d, free %d, largest free block %d, pinned %d, unspillable %d, spilled %d",
		e.Requested, e.Capacity, e.Used, e.Capacity-e.Used, e.LargestFree, e.Pinned, e.Unspillable, e.Spilled)
	switch {
	case !e.Spilling:
		msg += " (spilling disabled)"
	case e.SpillErr != nil:
		msg += fmt.Sprintf(" (spilling failed: %v)", e.SpillErr)
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrStoreFull) hold.
func (e *FullError) Unwrap() error { return ErrStoreFull }
