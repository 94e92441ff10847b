package objstore

import (
	"errors"
	"fmt"

	"github.com/goray/goray/state"
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
	// ErrShmTooSmall means the file system holding the segment (normally
	// the tmpfs /dev/shm) cannot back the store: at CreateSegment it has
	// less free space than the capacity asked for, and later (as a
	// *ShmFullError) it had no room left for the pages of a new block.
	// Without the check a write into a page tmpfs cannot allocate kills
	// the writing process with SIGBUS.
	ErrShmTooSmall = errors.New("objstore: shared-memory directory too small")
)

// ShmFullError reports that the segment's file system had no room for the
// pages of a new block, so Create gave the block back rather than hand
// out memory that would fault. Space is short because something else on
// the machine filled the directory after the store started (another
// node's store, or any other file), since CreateSegment checked there was
// room for the whole capacity. It matches ErrShmTooSmall and also
// ErrStoreFull: to a creator the store is full.
type ShmFullError struct {
	Dir       string // the segment's directory
	Off, Size uint64 // the range of the segment whose pages were asked for
	Free      uint64 // bytes free in Dir just after the failure
	Err       error  // what the file system said, normally ENOSPC
}

func (e *ShmFullError) Error() string {
	return fmt.Sprintf("objstore: store full: %s has no room for the pages of segment range [%d, +%d) (%s free there): %v; free space in %s or make it larger",
		e.Dir, e.Off, e.Size, state.FormatBytes(e.Free), e.Err, e.Dir)
}

// Unwrap makes errors.Is hold for ErrStoreFull, ErrShmTooSmall and the
// underlying errno.
func (e *ShmFullError) Unwrap() []error { return []error{ErrStoreFull, ErrShmTooSmall, e.Err} }

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
