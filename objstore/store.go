package objstore

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"github.com/goray/goray/protos"
)

// Store is a node's object table: which object lives at which offset of the
// segment, and whether it is sealed. It lives in the raylet; workers learn
// offsets from the raylet and read through their own mapping.
//
// The lock covers only table and allocator updates, never object bytes, so
// a large Put does not stall Gets of other objects.
//
// Delete frees the block at once. Making sure no process is still reading a
// deleted object (reference counting, pinning) is the caller's job.
type Store struct {
	seg *Segment

	mu      sync.RWMutex
	alloc   *Allocator
	objects map[protos.ObjectID]entry
	sealed  int
	// touched is the end of the highest block ever allocated. The segment
	// starts untouched and freed pages stay populated, so bytes beyond it
	// are the only ones whose first write still faults.
	touched uint64
}

type entry struct {
	off, size uint64
	sealed    bool
}

// ObjectInfo describes one object, for introspection and debugging.
type ObjectInfo struct {
	ID     protos.ObjectID
	Offset uint64
	Size   uint64 // as requested, without alignment padding
	Sealed bool
}

// Stats is a snapshot of the store's occupancy.
type Stats struct {
	Capacity    uint64 // bytes the allocator manages
	Used        uint64 // bytes in allocated blocks, padding included
	LargestFree uint64 // largest object that could be created now
	NumObjects  int    // created objects, sealed or not
	NumSealed   int
}

// NewStore manages the whole of seg. The store does not own the segment:
// whoever created it closes and removes it after the store's last use.
func NewStore(seg *Segment) *Store {
	return &Store{
		seg:     seg,
		alloc:   NewAllocator(seg.Capacity()),
		objects: make(map[protos.ObjectID]entry),
	}
}

// Segment returns the segment the store allocates from.
func (s *Store) Segment() *Segment { return s.seg }

// Create reserves size bytes for id and returns their offset. The creator
// writes the bytes (through any mapping of the segment) and then calls Seal;
// until then Get does not see the object, so no reader can observe a
// half-written value.
func (s *Store) Create(id protos.ObjectID, size uint64) (off uint64, err error) {
	off, _, err = s.create(id, size)
	return off, err
}

// create is Create also reporting whether the block reaches into pages never
// written before.
func (s *Store) create(id protos.ObjectID, size uint64) (off uint64, fresh bool, err error) {
	if s.seg.Closed() {
		return 0, false, fmt.Errorf("objstore: create %s: %w", id, ErrSegmentClosed)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[id]; ok {
		return 0, false, fmt.Errorf("objstore: create %s: %w", id, ErrObjectExists)
	}
	off, ok := s.alloc.Alloc(size)
	if !ok {
		return 0, false, fmt.Errorf("objstore: create %s: %w", id, &FullError{
			Requested:   size,
			Capacity:    s.alloc.Capacity(),
			Used:        s.alloc.Used(),
			LargestFree: s.alloc.LargestFree(),
		})
	}
	s.objects[id] = entry{off: off, size: size}
	end := off + BlockSize(size)
	fresh = end > s.touched
	s.touched = max(s.touched, end)
	return off, fresh, nil
}

// Seal makes a created object visible to Get. After Seal the object's bytes
// must not change: readers in other processes share them without copying or
// locking, which is only safe because they are immutable.
func (s *Store) Seal(id protos.ObjectID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objects[id]
	if !ok {
		return fmt.Errorf("objstore: seal %s: %w", id, ErrObjectNotFound)
	}
	if e.sealed {
		return fmt.Errorf("objstore: seal %s: %w", id, ErrAlreadySealed)
	}
	e.sealed = true
	s.objects[id] = e
	s.sealed++
	return nil
}

// Get returns the location of a sealed object. Unsealed objects report
// !ok, exactly like absent ones, because their bytes are not final.
func (s *Store) Get(id protos.ObjectID) (off, size uint64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.objects[id]
	if !ok || !e.sealed {
		return 0, 0, false
	}
	return e.off, e.size, true
}

// Contains reports whether id is present, sealed or not.
func (s *Store) Contains(id protos.ObjectID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.objects[id]
	return ok
}

// Put stores data as id in one step, for callers inside the raylet process.
// The copy runs without the lock. If the block reaches into never-written
// pages they are populated first, in parallel, and a failure to populate
// (tmpfs out of space) aborts the Put with an error.
func (s *Store) Put(id protos.ObjectID, data []byte) error {
	off, fresh, err := s.create(id, uint64(len(data)))
	if err != nil {
		return err
	}
	if fresh {
		if err := s.seg.writeFresh(off, data); err != nil {
			s.mu.Lock()
			// Some of the pages may still be unpopulated; make the next
			// Put there take the checked path again.
			s.touched = min(s.touched, off)
			s.mu.Unlock()
			_ = s.Delete(id)
			return fmt.Errorf("objstore: put %s: %w", id, err)
		}
	} else {
		Copy(s.seg.Slice(off, uint64(len(data))), data)
	}
	return s.Seal(id)
}

// Delete removes id and frees its space. Deleting an unsealed object is how
// a creator aborts a Create; only the creator may do that, since it is the
// one still writing into the block.
func (s *Store) Delete(id protos.ObjectID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objects[id]
	if !ok {
		return fmt.Errorf("objstore: delete %s: %w", id, ErrObjectNotFound)
	}
	delete(s.objects, id)
	if e.sealed {
		s.sealed--
	}
	s.alloc.Free(e.off)
	return nil
}

// Stats returns current occupancy.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{
		Capacity:    s.alloc.Capacity(),
		Used:        s.alloc.Used(),
		LargestFree: s.alloc.LargestFree(),
		NumObjects:  len(s.objects),
		NumSealed:   s.sealed,
	}
}

// Objects lists every object in offset order.
func (s *Store) Objects() []ObjectInfo {
	s.mu.RLock()
	out := make([]ObjectInfo, 0, len(s.objects))
	for id, e := range s.objects {
		out = append(out, ObjectInfo{ID: id, Offset: e.off, Size: e.size, Sealed: e.sealed})
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b ObjectInfo) int { return cmp.Compare(a.Offset, b.Offset) })
	return out
}
