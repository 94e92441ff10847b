package objstore

import (
	"fmt"
	"time"
)

// restoreOp is one restore in flight. Every Acquire that finds the object
// being restored adds its holder and waits on done; the restore pins the
// object for all of them before closing done, so none can lose the object
// to the spiller between the restore and its own pin.
type restoreOp struct {
	done    chan struct{}
	holders []Holder // guarded by Store.mu until done is closed

	// Set before done is closed.
	off, size uint64
	err       error
}

// restore brings o back from rec into a new block, on the goroutine of the
// Acquire that found it spilled. Allocation may have to wait for the
// spiller to make room; the read and checksum run without the lock. On
// failure the block is freed and o stays spilled, so the next Acquire tries
// (and most likely fails) again.
func (s *Store) restore(o *object, rec spillRecord, op *restoreOp) {
	defer s.io.Done()
	s.mu.Lock()
	off, fresh, err := s.allocLocked(o.size, true, func() error {
		if o.deleted {
			return ErrObjectNotFound
		}
		return nil
	})
	if err == nil {
		o.off, o.hasBlock = off, true
	}
	s.mu.Unlock()

	var elapsed time.Duration
	if err == nil {
		err = s.reserve(off + BlockSize(o.size))
	}
	if err == nil && fresh {
		if err = s.seg.Prefault(off, o.size); err != nil {
			s.untouch(off)
		}
	}
	if err == nil {
		var dst []byte
		if dst, err = s.seg.CheckedSlice(off, o.size); err == nil {
			start := time.Now()
			err = readRecord(rec.file.path, rec.off, o.id, rec.crc, dst)
			elapsed = time.Since(start)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	o.restoring = nil
	s.sp.restoreTime += elapsed
	switch {
	case o.deleted:
		op.err = fmt.Errorf("objstore: acquire %s: %w", o.id, ErrObjectNotFound)
		s.settleLocked(o)
	case err != nil:
		op.err = fmt.Errorf("objstore: acquire %s: %w", o.id, err)
		if o.hasBlock {
			s.freeBlockLocked(o)
		}
	default:
		s.countSpilledLocked(o, -1)
		o.inMem = true
		s.countSpilledLocked(o, +1)
		o.lastUse = time.Now()
		s.lru.pushBack(o)
		for _, h := range op.holders {
			s.pinLocked(o, h)
		}
		op.off, op.size = o.off, o.size
		s.sp.restoredBytes += o.size
		s.sp.restoredObjects++
	}
	close(op.done)
}
