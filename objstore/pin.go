package objstore

import (
	"fmt"
	"slices"
	"time"

	"github.com/goray/goray/protos"
)

// Holder names whoever pins objects: a worker process, a request in flight.
// Pins are counted per holder so that ReleaseAll can drop everything a dead
// process held without the store knowing what processes are.
type Holder uint64

// pin is a holder's count on one object. A holder's pins on an id are a
// list because the id can be deleted and created again while the old
// object is still pinned; the oldest comes first and is released first.
type pin struct {
	o *object
	n int
}

// NewHolder returns a holder no other call of this store returned; it is
// never zero, so the zero Holder can mean "none" to callers.
func (s *Store) NewHolder() Holder { return Holder(s.nextHolder.Add(1)) }

// Acquire pins a sealed object for h and returns its location, which stays
// valid until h releases the pin: a pinned object is neither spilled nor
// freed, even if deleted. Every Acquire is one more pin. An object that is
// only in a spill file is restored first, blocking this caller (not the
// store); concurrent Acquires of it share one restore. Absent, unsealed and
// deleted objects give an error wrapping ErrObjectNotFound; a restore that
// fails gives one wrapping ErrSpillLost, ErrSpillCorrupt or ErrStoreFull,
// and the object stays spilled.
func (s *Store) Acquire(id protos.ObjectID, h Holder) (off, size uint64, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, 0, fmt.Errorf("objstore: acquire %s: %w", id, ErrStoreClosed)
	}
	o, ok := s.objects[id]
	// An object neither in memory nor on disk cannot be in the table;
	// checking spill too keeps a broken invariant from becoming a panic.
	if !ok || !o.sealed || (!o.inMem && o.spill == nil) {
		s.mu.Unlock()
		return 0, 0, fmt.Errorf("objstore: acquire %s: %w", id, ErrObjectNotFound)
	}
	if o.inMem {
		s.pinLocked(o, h)
		o.lastUse = time.Now()
		s.lru.touch(o)
		s.mu.Unlock()
		return o.off, o.size, nil
	}
	op := o.restoring
	if op != nil {
		// Single flight: the restore in progress pins for us too.
		op.holders = append(op.holders, h)
		s.mu.Unlock()
		<-op.done
		return op.off, op.size, op.err
	}
	op = &restoreOp{done: make(chan struct{}), holders: []Holder{h}}
	o.restoring = op
	rec := *o.spill
	s.io.Add(1)
	s.mu.Unlock()
	s.restore(o, rec, op)
	return op.off, op.size, op.err
}

// Release drops one of h's pins on id. Without one it does nothing, so a
// duplicate release is harmless. If the object was deleted meanwhile and
// this was its last pin, its block is freed.
func (s *Store) Release(id protos.ObjectID, h Holder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byID := s.holders[h]
	ps := byID[id]
	if len(ps) == 0 {
		return
	}
	o := ps[0].o
	if ps[0].n--; ps[0].n == 0 {
		ps = slices.Delete(ps, 0, 1)
	}
	switch {
	case len(ps) > 0:
		byID[id] = ps
	case len(byID) == 1:
		delete(s.holders, h)
	default:
		delete(byID, id)
	}
	s.unpinLocked(o, 1)
}

// ReleaseAll drops every pin h holds, as when the process behind it died.
func (s *Store) ReleaseAll(h Holder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ps := range s.holders[h] {
		for _, p := range ps {
			s.unpinLocked(p.o, p.n)
		}
	}
	delete(s.holders, h)
}

func (s *Store) pinLocked(o *object, h Holder) {
	byID := s.holders[h]
	if byID == nil {
		byID = make(map[protos.ObjectID][]pin)
		s.holders[h] = byID
	}
	ps := byID[o.id]
	if i := slices.IndexFunc(ps, func(p pin) bool { return p.o == o }); i >= 0 {
		ps[i].n++
	} else {
		byID[o.id] = append(ps, pin{o: o, n: 1})
	}
	if o.pins == 0 {
		s.pinned += BlockSize(o.size)
		s.numPinned++
	}
	o.pins++
}

func (s *Store) unpinLocked(o *object, n int) {
	o.pins -= n
	if o.pins == 0 {
		s.pinned -= BlockSize(o.size)
		s.numPinned--
		s.settleLocked(o)
	}
}
