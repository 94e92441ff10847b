package objstore

import (
	"fmt"
	"os"
	"time"
)

// Options configure a Store made by NewStoreWithOptions.
type Options struct {
	// SpillDir is where spill files go; "" disables spilling. It is
	// created if missing, and removed by Close if it is then empty.
	SpillDir string
	// MinSpillBytes is how much a spill round writes at least, when there
	// are enough candidates: one large file per round keeps the disk
	// writing sequentially and amortises opening it, as in Ray. Zero means
	// 64 MiB. A round writes less only when fewer bytes are spillable.
	MinSpillBytes uint64
}

const defaultMinSpillBytes = 64 << 20

// NewStoreWithOptions is NewStore with spilling to opts.SpillDir. It starts
// the spiller goroutine, so call Close when done with the store.
func NewStoreWithOptions(seg *Segment, opts Options) (*Store, error) {
	s := NewStore(seg)
	if opts.MinSpillBytes == 0 {
		opts.MinSpillBytes = defaultMinSpillBytes
	}
	s.opts = opts
	if opts.SpillDir == "" {
		return s, nil
	}
	if err := os.MkdirAll(opts.SpillDir, 0o700); err != nil {
		return nil, fmt.Errorf("objstore: spill dir: %w", err)
	}
	s.spillc = make(chan spillRequest)
	s.stop = make(chan struct{})
	s.spillerDone = make(chan struct{})
	go s.spiller()
	return s, nil
}

// spillState is the spill bookkeeping guarded by Store.mu.
type spillState struct {
	files      map[string]*spillFile // by path, including one being written
	numSpilled int                   // objects in view only on disk
	liveBytes  uint64                // sizes of live records

	bytesTotal, objectsTotal       uint64
	restoredBytes, restoredObjects uint64
	spillTime, restoreTime         time.Duration
}

// spillFile is one file written by one spill round.
type spillFile struct {
	path    string
	live    int  // records whose object still exists
	writing bool // still being written: not removable even if live is 0
}

// spillRecord locates an object's copy. It never changes once made; Delete
// and Close drop it.
type spillRecord struct {
	file *spillFile
	off  int64 // of the record header
	crc  uint32
}

type spillRequest struct {
	need  uint64 // block size that must fit
	reply chan spillResult
}

type spillResult struct {
	progress bool // some block was freed
	err      error
}

// evictable reports whether the spiller may take o: sealed and in memory
// (which being in the LRU list implies), unpinned and not already being
// written.
func evictable(o *object) bool { return o.pins == 0 && !o.spilling }

// countSpilledLocked adds d to the spilled-only count if o is spilled-only.
// Callers bracket a change of o.spill or o.inMem with -1 and +1. Deleted
// objects never count: Delete drops the spill record first.
func (s *Store) countSpilledLocked(o *object, d int) {
	if o.spill != nil && !o.inMem {
		s.sp.numSpilled += d
	}
}

// requestSpill asks the spiller to make a block of need bytes fit and waits
// for the outcome. Spill rounds are serialised on the one spiller, so
// concurrent creators never write competing files, and the creator waits
// without holding the store lock.
func (s *Store) requestSpill(need uint64) spillResult {
	req := spillRequest{need: need, reply: make(chan spillResult, 1)}
	select {
	case s.spillc <- req:
	case <-s.stop:
		return spillResult{err: ErrStoreClosed}
	}
	select {
	case res := <-req.reply:
		return res
	case <-s.stop:
		return spillResult{err: ErrStoreClosed}
	}
}

func (s *Store) spiller() {
	defer close(s.spillerDone)
	for {
		select {
		case <-s.stop:
			return
		case req := <-s.spillc:
			req.reply <- s.spillFor(req.need)
		}
	}
}

// spillFor runs spill rounds until a block of need bytes is free (checked
// against the largest free block, since freed space may be scattered) or
// nothing is left to spill.
func (s *Store) spillFor(need uint64) spillResult {
	progress := false
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return spillResult{progress: progress, err: ErrStoreClosed}
		}
		if s.alloc.LargestFree() >= need {
			s.mu.Unlock()
			// It fits now, thanks to us or to someone's Delete: either
			// way the creator should try again.
			return spillResult{progress: true}
		}
		batch, evicted := s.pickVictimsLocked(need)
		s.mu.Unlock()
		progress = progress || evicted
		if len(batch) == 0 {
			if evicted {
				continue // dropping resident copies may have been enough
			}
			return spillResult{progress: progress}
		}
		freed, err := s.spillBatch(batch)
		progress = progress || freed
		if err != nil {
			return spillResult{progress: progress, err: err}
		}
	}
}

// pickVictimsLocked walks the LRU list from the least recently used end.
// Objects that already have a spill copy (restored earlier) lose their
// block on the spot, with no I/O. The others are marked spilling and
// returned as the batch for one file, at least MinSpillBytes (and at least
// need) if there are that many. The walk stops early when dropping copies
// alone made the request fit.
func (s *Store) pickVictimsLocked(need uint64) (batch []*object, evicted bool) {
	target := max(s.opts.MinSpillBytes, need)
	var bytes uint64
	for o := s.lru.front; o != nil && bytes < target; {
		next := o.next
		if evictable(o) {
			if o.spill != nil {
				s.evictLocked(o)
				evicted = true
				if len(batch) == 0 && s.alloc.LargestFree() >= need {
					break
				}
			} else {
				o.spilling = true
				batch = append(batch, o)
				bytes += BlockSize(o.size)
			}
		}
		o = next
	}
	return batch, evicted
}

// evictLocked frees the block of an object that has a spill copy.
func (s *Store) evictLocked(o *object) {
	s.lru.remove(o)
	s.freeBlockLocked(o)
}

// spillBatch writes batch to one new file, straight from the segment, then
// commits: each victim gets its record and, if still unpinned, loses its
// block. A victim pinned meanwhile stays in memory with a valid copy; one
// deleted meanwhile has its block freed and its record counted dead. A
// write error keeps the records completed before it and leaves the rest
// in memory.
func (s *Store) spillBatch(batch []*object) (freed bool, err error) {
	start := time.Now()
	var recs []spillRecord
	var written uint64
	file := &spillFile{writing: true}
	f, err := os.CreateTemp(s.opts.SpillDir, "spill-*.bin")
	if err == nil {
		file.path = f.Name()
		s.mu.Lock()
		s.sp.files[file.path] = file
		s.mu.Unlock()
		w := spillWriter{f: f}
		for _, o := range batch {
			if s.stopping() {
				err = ErrStoreClosed
				break
			}
			// The block cannot go away while o.spilling is set, and
			// o.off and o.size do not change for a block's lifetime.
			var data []byte
			if data, err = s.seg.CheckedSlice(o.off, o.size); err != nil {
				break
			}
			var rec spillRecord
			if rec.off, rec.crc, err = w.writeRecord(o.id, data); err != nil {
				break
			}
			rec.file = file
			recs = append(recs, rec)
			written += o.size
		}
		// No fsync: spill files need not survive a crash, since the
		// segment (and thus every object) does not either.
		if cerr := f.Close(); cerr != nil && err == nil {
			err, recs, written = cerr, nil, 0
		}
	}
	elapsed := time.Since(start)
	if s.testHookSpillWritten != nil {
		s.testHookSpillWritten()
	}

	s.mu.Lock()
	for i, o := range batch {
		o.spilling = false
		if o.deleted {
			freed = s.settleLocked(o) || freed
			continue
		}
		if i >= len(recs) {
			continue
		}
		s.countSpilledLocked(o, -1)
		o.spill = &recs[i]
		s.countSpilledLocked(o, +1)
		file.live++
		s.sp.liveBytes += o.size
		if o.pins == 0 {
			s.evictLocked(o)
			freed = true
		}
	}
	s.sp.bytesTotal += written
	s.sp.objectsTotal += uint64(len(recs))
	s.sp.spillTime += elapsed
	file.writing = false
	var dead string
	if file.path != "" && file.live == 0 {
		delete(s.sp.files, file.path)
		dead = file.path
	}
	s.mu.Unlock()
	removeFiles(dead)
	if err != nil {
		where := file.path
		if where == "" {
			where = s.opts.SpillDir
		}
		return freed, fmt.Errorf("objstore: spill to %s: %w", where, err)
	}
	return freed, nil
}

func (s *Store) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// dropSpillLocked forgets o's spill copy. It returns the file's path if
// that was the file's last live record and the file is complete, for the
// caller to remove after letting go of the lock.
func (s *Store) dropSpillLocked(o *object) (deadFile string) {
	rec := o.spill
	if rec == nil {
		return ""
	}
	s.countSpilledLocked(o, -1)
	o.spill = nil
	s.sp.liveBytes -= o.size
	f := rec.file
	f.live--
	if f.live == 0 && !f.writing {
		delete(s.sp.files, f.path)
		return f.path
	}
	return ""
}
