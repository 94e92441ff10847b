package objstore

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goray/goray/protos"
)

// Store is a node's object table: which object lives at which offset of the
// segment, whether it is sealed, who pins it and whether it has a copy in a
// spill file. It lives in the raylet; workers learn offsets from the raylet
// and read through their own mapping.
//
// The lock covers only table and allocator updates, never object bytes nor
// file I/O, so a large Put, a spill or a restore does not stall lookups of
// other objects.
//
// Delete removes an object from view at once but frees its block only when
// no holder pins it and no spill or restore is reading or writing it; see
// Acquire. Get does not pin, so a location from Get stays valid only as
// long as the caller otherwise knows the object is neither deleted nor
// spilled.
type Store struct {
	seg  *Segment
	opts Options

	mu      sync.RWMutex
	alloc   *Allocator
	objects map[protos.ObjectID]*object
	// dying holds deleted objects whose block cannot be freed yet because
	// they are pinned or under I/O, by block offset. They are out of
	// objects so that their id can be created again at once.
	dying  map[uint64]*object
	lru    lruList
	sealed int
	// touched is the end of the highest block ever allocated. The segment
	// starts untouched and freed pages stay populated, so bytes beyond it
	// are the only ones whose first write still faults.
	touched uint64
	closed  bool

	// reserved is how far into the segment pages have been reserved
	// (Segment.Reserve): every block handed out lies below it. It is
	// only raised, under resMu, which serialises reservations without
	// holding up the table: a large first reservation zeroes pages for
	// a while.
	resMu    sync.Mutex
	reserved atomic.Uint64

	holders    map[Holder]map[protos.ObjectID][]pin
	nextHolder atomic.Uint64
	pinned     uint64 // bytes in blocks with at least one pin
	numPinned  int

	sp spillState

	// Spilling machinery; spillc is nil when spilling is disabled.
	spillc      chan spillRequest
	stop        chan struct{} // closed by Close
	spillerDone chan struct{}
	io          sync.WaitGroup // restores in flight, waited for by Close

	// testHookSpillWritten, if set, runs on the spiller after a batch is
	// written and before it is committed, so tests can pin or delete a
	// victim in that window.
	testHookSpillWritten func()
}

// object is one entry of the table. A deleted object leaves objects but the
// struct lives on while pins, the spiller or a restore still refer to it.
type object struct {
	id    protos.ObjectID
	size  uint64
	owner protos.WorkerID

	off      uint64 // block offset, meaningful while hasBlock
	hasBlock bool   // owns an allocator block
	inMem    bool   // the block holds the bytes (false while a restore fills it)
	sealed   bool
	deleted  bool

	pins      int          // over all holders
	spilling  bool         // the spiller is writing the block to a file
	restoring *restoreOp   // a restore is filling a block
	spill     *spillRecord // copy in a spill file, if any
	lastUse   time.Time    // Seal or last Acquire

	prev, next *object // LRU links
	inLRU      bool
}

// ObjectInfo describes one object, for introspection and debugging.
type ObjectInfo struct {
	ID        protos.ObjectID
	Offset    uint64 // 0 unless InMemory
	Size      uint64 // as requested, without alignment padding
	Sealed    bool
	Owner     protos.WorkerID // zero if created without one
	Pins      int             // over all holders
	InMemory  bool
	Spilled   bool   // has a copy in a spill file
	SpillPath string // that file, if Spilled
	LastUse   time.Time
}

// Stats is a snapshot of the store's occupancy. Byte counts of blocks
// include alignment padding; spill byte counts are object sizes.
type Stats struct {
	Capacity    uint64 // bytes the allocator manages
	Used        uint64 // bytes in allocated blocks, padding included
	LargestFree uint64 // largest object that could be created now
	NumObjects  int    // objects in view: created, sealed or spilled
	NumSealed   int
	Pinned      uint64 // bytes in blocks pinned by some holder
	NumPinned   int
	NumDeleting int // deleted, block awaiting the last release or I/O

	NumSpilled   int    // objects only in a spill file, not in memory
	SpilledBytes uint64 // bytes of live records in spill files
	SpillFiles   int

	// Cumulative since the store was made. The times are spent in file
	// I/O (checksums included), so bytes over time is the throughput.
	SpilledBytesTotal    uint64
	SpilledObjectsTotal  uint64
	RestoredBytesTotal   uint64
	RestoredObjectsTotal uint64
	SpillTime            time.Duration
	RestoreTime          time.Duration
}

// NewStore manages the whole of seg, without spilling: a Create that finds
// no room fails with a *FullError. The store does not own the segment:
// whoever created it closes and removes it after the store's last use.
func NewStore(seg *Segment) *Store {
	return &Store{
		seg:     seg,
		opts:    Options{MinSpillBytes: defaultMinSpillBytes},
		alloc:   NewAllocator(seg.Capacity()),
		objects: make(map[protos.ObjectID]*object),
		dying:   make(map[uint64]*object),
		holders: make(map[Holder]map[protos.ObjectID][]pin),
		sp:      spillState{files: make(map[string]*spillFile)},
	}
}

// Segment returns the segment the store allocates from.
func (s *Store) Segment() *Segment { return s.seg }

// Create reserves size bytes for id and returns their offset. The creator
// writes the bytes (through any mapping of the segment) and then calls Seal;
// until then Get does not see the object, so no reader can observe a
// half-written value. If no block is free and the store spills, Create
// waits for the spiller to make room.
func (s *Store) Create(id protos.ObjectID, size uint64) (off uint64, err error) {
	off, _, err = s.create(id, size, protos.WorkerID{}, true)
	return off, err
}

// CreateOwned is Create recording the worker that owns the object, so that
// DeleteOwnedBy can drop everything a dead worker owned.
func (s *Store) CreateOwned(id protos.ObjectID, size uint64, owner protos.WorkerID) (uint64, error) {
	off, _, err := s.create(id, size, owner, true)
	return off, err
}

// TryCreateOwned is CreateOwned that never spills: if no block is free it
// fails with a *FullError at once. A client that can free garbage of its
// own first uses it, since dropping dead objects is cheaper than writing
// live ones to disk.
func (s *Store) TryCreateOwned(id protos.ObjectID, size uint64, owner protos.WorkerID) (uint64, error) {
	off, _, err := s.create(id, size, owner, false)
	return off, err
}

// SpillDir is the directory spill files go to, "" if the store does not
// spill.
func (s *Store) SpillDir() string { return s.opts.SpillDir }

// create is CreateOwned, or TryCreateOwned if !spill, also reporting
// whether the block reaches into pages never written before.
func (s *Store) create(id protos.ObjectID, size uint64, owner protos.WorkerID, spill bool) (off uint64, fresh bool, err error) {
	if s.seg.Closed() {
		return 0, false, fmt.Errorf("objstore: create %s: %w", id, ErrSegmentClosed)
	}
	s.mu.Lock()
	off, fresh, err = s.allocLocked(size, spill, func() error {
		if _, ok := s.objects[id]; ok {
			return ErrObjectExists
		}
		return nil
	})
	if err != nil {
		s.mu.Unlock()
		return 0, false, fmt.Errorf("objstore: create %s: %w", id, err)
	}
	o := &object{id: id, size: size, owner: owner, off: off, hasBlock: true, inMem: true}
	s.objects[id] = o
	s.mu.Unlock()
	// The object is in the table but unsealed, so nobody but this
	// creator, which has not been told the offset yet, writes or reads it.
	if err := s.reserve(off + BlockSize(size)); err != nil {
		s.mu.Lock()
		if s.objects[id] == o { // else DeleteOwnedBy took it meanwhile
			s.deleteLocked(o)
		}
		s.mu.Unlock()
		return 0, false, fmt.Errorf("objstore: create %s: %w", id, err)
	}
	return off, fresh, nil
}

// reserve makes sure the pages under [0, end) are allocated in the
// segment's file before any block reaching there is written: once a block
// is handed out, other processes write into it, and on a full tmpfs their
// first write into an unallocated page would be a SIGBUS. Allocated blocks
// grow the reservation as a high-water mark, like touched, since the
// allocator fills the segment from its start and fallocate of pages
// already allocated is not free: 12 us per MiB, a third of a warm copy
// (docs/benchmarks.md), which reserving every block would add to every
// put.
func (s *Store) reserve(end uint64) error {
	if end <= s.reserved.Load() {
		return nil
	}
	s.resMu.Lock()
	defer s.resMu.Unlock()
	from := s.reserved.Load()
	if end <= from {
		return nil // a concurrent create reserved past end meanwhile
	}
	end = min((end+sysPageSize-1)&^(sysPageSize-1), s.seg.Capacity())
	if err := s.seg.Reserve(from, end-from); err != nil {
		return err
	}
	s.reserved.Store(end)
	return nil
}

// allocLocked reserves a block for size bytes, spilling other objects when
// none is free, the store spills and spill is set. It is called with s.mu held and
// returns with it held, but lets go of it while the spiller works; check
// runs under the lock before every attempt to re-validate what the caller
// relies on (that the id is still free, that the object still exists).
func (s *Store) allocLocked(size uint64, spill bool, check func() error) (off uint64, fresh bool, err error) {
	var spillErr error
	stuck := false // the last spill round freed nothing
	for {
		if s.closed {
			return 0, false, ErrStoreClosed
		}
		if err := check(); err != nil {
			return 0, false, err
		}
		if off, ok := s.alloc.Alloc(size); ok {
			end := off + BlockSize(size)
			fresh = end > s.touched
			s.touched = max(s.touched, end)
			return off, fresh, nil
		}
		// A request larger than the whole store can never fit: spilling
		// for it would only lose other objects' residence for nothing.
		if s.spillc == nil || !spill || stuck || size > s.alloc.Capacity() {
			return 0, false, s.fullErrorLocked(size, spillErr)
		}
		s.mu.Unlock()
		res := s.requestSpill(BlockSize(size))
		s.mu.Lock()
		// Try once more even without progress: a Delete or Release may
		// have freed space meanwhile.
		spillErr, stuck = res.err, !res.progress
	}
}

func (s *Store) fullErrorLocked(size uint64, spillErr error) *FullError {
	e := &FullError{
		Requested:   size,
		Capacity:    s.alloc.Capacity(),
		Used:        s.alloc.Used(),
		LargestFree: s.alloc.LargestFree(),
		Pinned:      s.pinned,
		Spilled:     s.sp.liveBytes,
		Spilling:    s.spillc != nil,
		SpillErr:    spillErr,
	}
	var spillable uint64
	if s.spillc != nil {
		for o := s.lru.front; o != nil; o = o.next {
			if evictable(o) {
				spillable += BlockSize(o.size)
			}
		}
	}
	e.Unspillable = e.Used - spillable
	return e
}

// Seal makes a created object visible to Get and Acquire. After Seal the
// object's bytes must not change: readers in other processes share them
// without copying or locking, which is only safe because they are
// immutable.
func (s *Store) Seal(id protos.ObjectID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[id]
	if !ok {
		return fmt.Errorf("objstore: seal %s: %w", id, ErrObjectNotFound)
	}
	if o.sealed {
		return fmt.Errorf("objstore: seal %s: %w", id, ErrAlreadySealed)
	}
	o.sealed = true
	o.lastUse = time.Now()
	s.lru.pushBack(o)
	s.sealed++
	return nil
}

// Get returns the location of a sealed object in memory. Unsealed objects
// report !ok, exactly like absent ones, because their bytes are not final;
// so do spilled ones, which only Acquire brings back. Get does not pin:
// when the store spills, use Acquire to keep the location valid.
func (s *Store) Get(id protos.ObjectID) (off, size uint64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.objects[id]
	if !ok || !o.sealed || !o.inMem {
		return 0, 0, false
	}
	return o.off, o.size, true
}

// Contains reports whether id is present, sealed or not, in memory or
// spilled.
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
	off, fresh, err := s.create(id, uint64(len(data)), protos.WorkerID{}, true)
	if err != nil {
		return err
	}
	if fresh {
		if err := s.seg.writeFresh(off, data); err != nil {
			s.untouch(off)
			_ = s.Delete(id)
			return fmt.Errorf("objstore: put %s: %w", id, err)
		}
	} else {
		Copy(s.seg.Slice(off, uint64(len(data))), data)
	}
	return s.Seal(id)
}

// untouch records that pages from off on may still be unpopulated after a
// failed prefault, so that the next block there takes the checked path.
func (s *Store) untouch(off uint64) {
	s.mu.Lock()
	s.touched = min(s.touched, off)
	s.mu.Unlock()
}

// Delete removes id from view at once: Get, Acquire and Contains no longer
// find it and the id may be created again. Its block is freed when the last
// pin is released and no spill or restore is using it; its spill record is
// dropped now, and a spill file left without live records is deleted.
// Deleting an unsealed object is how a creator aborts a Create; only the
// creator may do that, since it is the one still writing into the block.
func (s *Store) Delete(id protos.ObjectID) error {
	s.mu.Lock()
	o, ok := s.objects[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("objstore: delete %s: %w", id, ErrObjectNotFound)
	}
	dead := s.deleteLocked(o)
	s.mu.Unlock()
	removeFiles(dead)
	return nil
}

// DeleteOwnedBy deletes, as Delete does, every object created with
// CreateOwned for owner, and returns their ids in byte order. A zero owner
// matches nothing: it means "no owner", not a worker.
func (s *Store) DeleteOwnedBy(owner protos.WorkerID) []protos.ObjectID {
	if owner.IsZero() {
		return nil
	}
	var ids []protos.ObjectID
	var dead []string
	s.mu.Lock()
	for id, o := range s.objects {
		if o.owner == owner {
			ids = append(ids, id)
			if p := s.deleteLocked(o); p != "" {
				dead = append(dead, p)
			}
		}
	}
	s.mu.Unlock()
	removeFiles(dead...)
	slices.SortFunc(ids, func(a, b protos.ObjectID) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

// deleteLocked takes o out of view and frees or defers its block. It
// returns the path of a spill file that has become dead, for the caller to
// remove once it has let go of the lock.
func (s *Store) deleteLocked(o *object) (deadFile string) {
	deadFile = s.dropSpillLocked(o)
	delete(s.objects, o.id)
	o.deleted = true
	if o.sealed {
		s.sealed--
	}
	s.lru.remove(o)
	if o.hasBlock {
		if o.pins > 0 || o.spilling || o.restoring != nil {
			s.dying[o.off] = o
		} else {
			s.freeBlockLocked(o)
		}
	}
	return deadFile
}

// settleLocked frees the block of a deleted object once nothing holds it
// any more. Callers run it whenever a pin, spill or restore lets go.
func (s *Store) settleLocked(o *object) (freed bool) {
	if !o.deleted || !o.hasBlock || o.pins > 0 || o.spilling || o.restoring != nil {
		return false
	}
	delete(s.dying, o.off)
	s.freeBlockLocked(o)
	return true
}

func (s *Store) freeBlockLocked(o *object) {
	s.countSpilledLocked(o, -1)
	s.alloc.Free(o.off)
	o.hasBlock, o.inMem = false, false
	s.countSpilledLocked(o, +1)
}

// removeFiles deletes spill files that hold no live record. It does I/O and
// so runs without the lock; a file already gone is fine.
func removeFiles(paths ...string) {
	for _, p := range paths {
		if p != "" {
			_ = os.Remove(p)
		}
	}
}

// Stats returns current occupancy and spill counters.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{
		Capacity:             s.alloc.Capacity(),
		Used:                 s.alloc.Used(),
		LargestFree:          s.alloc.LargestFree(),
		NumObjects:           len(s.objects),
		NumSealed:            s.sealed,
		Pinned:               s.pinned,
		NumPinned:            s.numPinned,
		NumDeleting:          len(s.dying),
		NumSpilled:           s.sp.numSpilled,
		SpilledBytes:         s.sp.liveBytes,
		SpillFiles:           len(s.sp.files),
		SpilledBytesTotal:    s.sp.bytesTotal,
		SpilledObjectsTotal:  s.sp.objectsTotal,
		RestoredBytesTotal:   s.sp.restoredBytes,
		RestoredObjectsTotal: s.sp.restoredObjects,
		SpillTime:            s.sp.spillTime,
		RestoreTime:          s.sp.restoreTime,
	}
}

// Objects lists the objects in memory in offset order, then those only in
// spill files in file and record order.
func (s *Store) Objects() []ObjectInfo {
	type spilled struct {
		info ObjectInfo
		off  int64
	}
	s.mu.RLock()
	mem := make([]ObjectInfo, 0, len(s.objects))
	var disk []spilled
	for id, o := range s.objects {
		info := ObjectInfo{
			ID:       id,
			Size:     o.size,
			Sealed:   o.sealed,
			Owner:    o.owner,
			Pins:     o.pins,
			InMemory: o.inMem,
			Spilled:  o.spill != nil,
			LastUse:  o.lastUse,
		}
		if o.spill != nil {
			info.SpillPath = o.spill.file.path
		}
		switch {
		case o.inMem:
			info.Offset = o.off
			mem = append(mem, info)
		case o.spill != nil:
			disk = append(disk, spilled{info, o.spill.off})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(mem, func(a, b ObjectInfo) int { return cmp.Compare(a.Offset, b.Offset) })
	slices.SortFunc(disk, func(a, b spilled) int {
		return cmp.Or(cmp.Compare(a.info.SpillPath, b.info.SpillPath), cmp.Compare(a.off, b.off))
	})
	for _, d := range disk {
		mem = append(mem, d.info)
	}
	return mem
}

// Close stops the spiller, waits for restores in flight, and deletes every
// spill file and then SpillDir if it is empty. Objects that lived only in
// spill files are gone; those in memory stay readable through Get, but
// Create, Put and Acquire fail with ErrStoreClosed. The segment is not
// touched. Calling Close again is a no-op.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.stop != nil {
		close(s.stop)
	}
	s.mu.Unlock()
	if s.spillerDone != nil {
		<-s.spillerDone
	}
	s.io.Wait()

	s.mu.Lock()
	var paths []string
	for id, o := range s.objects {
		if o.spill == nil {
			continue
		}
		if p := s.dropSpillLocked(o); p != "" {
			paths = append(paths, p)
		}
		if !o.inMem {
			delete(s.objects, id)
			if o.sealed {
				s.sealed--
			}
		}
	}
	for p := range s.sp.files { // none expected: no record is live now
		paths = append(paths, p)
	}
	clear(s.sp.files)
	s.mu.Unlock()

	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if s.opts.SpillDir != "" {
		// Fails, as it should, if anything else lives there.
		_ = os.Remove(s.opts.SpillDir)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("objstore: close: %w", err)
	}
	return nil
}
