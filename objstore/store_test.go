package objstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestStoreLifecycle(t *testing.T) {
	s := newStore(t, 1<<20)
	id := oid(1)
	data := pattern(200<<10, 1)

	off, err := s.Create(id, uint64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.Get(id); ok {
		t.Fatal("unsealed object visible to Get")
	}
	if !s.Contains(id) {
		t.Fatal("Contains false after Create")
	}
	copy(s.Segment().Slice(off, uint64(len(data))), data)
	if err := s.Seal(id); err != nil {
		t.Fatal(err)
	}
	gotOff, size, ok := s.Get(id)
	if !ok || gotOff != off || size != uint64(len(data)) {
		t.Fatalf("Get = %d, %d, %v; want %d, %d, true", gotOff, size, ok, off, len(data))
	}
	if !bytes.Equal(s.Segment().Slice(gotOff, size), data) {
		t.Fatal("object bytes differ")
	}
	want := Stats{Capacity: 1 << 20, Used: BlockSize(uint64(len(data))), LargestFree: 1<<20 - BlockSize(uint64(len(data))), NumObjects: 1, NumSealed: 1}
	if st := s.Stats(); st != want {
		t.Fatalf("Stats = %+v, want %+v", st, want)
	}
	objs := s.Objects()
	if len(objs) != 1 || objs[0].LastUse.IsZero() {
		t.Fatalf("Objects = %+v", objs)
	}
	objs[0].LastUse = time.Time{}
	if objs[0] != (ObjectInfo{ID: id, Offset: off, Size: uint64(len(data)), Sealed: true, InMemory: true}) {
		t.Fatalf("Objects = %+v", objs)
	}
	if err := s.Delete(id); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.Get(id); ok || s.Contains(id) {
		t.Fatal("object present after Delete")
	}
	if st := s.Stats(); st != (Stats{Capacity: 1 << 20, LargestFree: 1 << 20}) {
		t.Fatalf("Stats after Delete = %+v", st)
	}
}

func TestStoreErrors(t *testing.T) {
	s := newStore(t, 1<<20)
	id := oid(1)
	if err := s.Put(id, []byte("x")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"create existing sealed", func() error { _, err := s.Create(id, 10); return err }(), ErrObjectExists},
		{"put existing", s.Put(id, []byte("y")), ErrObjectExists},
		{"seal twice", s.Seal(id), ErrAlreadySealed},
		{"seal unknown", s.Seal(oid(2)), ErrObjectNotFound},
		{"delete unknown", s.Delete(oid(3)), ErrObjectNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.want) {
				t.Fatalf("err = %v, want %v", tc.err, tc.want)
			}
			if !strings.Contains(tc.err.Error(), "objstore:") {
				t.Errorf("error %q lacks package prefix", tc.err)
			}
		})
	}

	// An unsealed object also blocks a second Create.
	if _, err := s.Create(oid(4), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(oid(4), 10); !errors.Is(err, ErrObjectExists) {
		t.Fatalf("second create of unsealed: %v", err)
	}
	// Aborting a create frees its space.
	if err := s.Delete(oid(4)); err != nil {
		t.Fatal(err)
	}
	if err := s.Seal(oid(4)); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("seal after abort: %v", err)
	}
}

func TestStoreFull(t *testing.T) {
	const capacity = 1 << 20
	s := newStore(t, capacity)
	// Four 256 KiB objects fill the store; free two non-adjacent ones to
	// leave 512 KiB free but no block larger than 256 KiB.
	for i := range uint32(4) {
		if _, err := s.Create(oid(i), 256<<10); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(oid(0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(oid(2)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Create(oid(9), 300<<10)
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("err = %v, want ErrStoreFull", err)
	}
	var full *FullError
	if !errors.As(err, &full) {
		t.Fatalf("err %T is not a *FullError", err)
	}
	// Without spilling, everything in use counts as unspillable.
	want := FullError{Requested: 300 << 10, Capacity: capacity, Used: 512 << 10, LargestFree: 256 << 10, Unspillable: 512 << 10}
	if *full != want {
		t.Fatalf("FullError = %+v, want %+v", *full, want)
	}
	for _, part := range []string{oid(9).String(), "requested 307200", "capacity 1048576", "used 524288", "largest free block 262144"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not mention %q", err, part)
		}
	}
	if s.Contains(oid(9)) {
		t.Fatal("failed create left an entry")
	}
	// A fitting object still succeeds.
	if _, err := s.Create(oid(10), 256<<10); err != nil {
		t.Fatal(err)
	}
}

func TestStoreClosedSegment(t *testing.T) {
	s := newStore(t, 1<<20)
	if err := s.Segment().Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(oid(1), []byte("x")); !errors.Is(err, ErrSegmentClosed) {
		t.Fatalf("Put on closed segment: %v", err)
	}
}

func TestStoreObjectsOrder(t *testing.T) {
	s := newStore(t, 1<<20)
	for i := range uint32(10) {
		if err := s.Put(oid(i), pattern(int(i)*1000, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(oid(100), 10); err != nil {
		t.Fatal(err)
	}
	objs := s.Objects()
	if len(objs) != 11 {
		t.Fatalf("%d objects, want 11", len(objs))
	}
	sealed := 0
	for i, o := range objs {
		if i > 0 && o.Offset <= objs[i-1].Offset {
			t.Fatalf("objects not in offset order: %+v", objs)
		}
		if o.Sealed {
			sealed++
			if err := checkFill(s.Segment().Slice(o.Offset, o.Size), byte(o.ID.Index())); err != nil {
				t.Fatalf("object %d: %v", o.ID.Index(), err)
			}
		}
	}
	if st := s.Stats(); sealed != 10 || st.NumSealed != 10 || st.NumObjects != 11 {
		t.Fatalf("sealed %d, stats %+v", sealed, st)
	}
}

// TestStoreConcurrent has writers putting and deleting their own objects
// while readers look up a fixed set; under -race this checks the locking,
// and the content checks catch any block handed to two objects.
func TestStoreConcurrent(t *testing.T) {
	s := newStore(t, 64<<20)
	const fixed = 16
	for i := range uint32(fixed) {
		if err := s.Put(oid(i), pattern(128<<10, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	const writers, readers, rounds = 4, 4, 200
	var wg sync.WaitGroup
	errc := make(chan error, writers+readers)
	for w := range uint32(writers) {
		wg.Go(func() {
			for r := range uint32(rounds) {
				id := oid(1000 + w*rounds + r)
				seed := byte(w*31 + r)
				data := pattern(100<<10+int(r)*64, seed)
				if err := s.Put(id, data); err != nil {
					errc <- err
					return
				}
				off, size, ok := s.Get(id)
				if !ok {
					errc <- fmt.Errorf("own object %s missing", id)
					return
				}
				if err := checkFill(s.Segment().Slice(off, size), seed); err != nil {
					errc <- fmt.Errorf("own object %s: %w", id, err)
					return
				}
				if err := s.Delete(id); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	for range readers {
		wg.Go(func() {
			for r := range rounds * 4 {
				i := uint32(r % fixed)
				off, size, ok := s.Get(oid(i))
				if !ok {
					errc <- fmt.Errorf("fixed object %d missing", i)
					return
				}
				if err := checkFill(s.Segment().Slice(off, size), byte(i)); err != nil {
					errc <- fmt.Errorf("fixed object %d: %w", i, err)
					return
				}
				_ = s.Stats()
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if st := s.Stats(); st.NumObjects != fixed || st.NumSealed != fixed {
		t.Fatalf("stats after churn: %+v", st)
	}
}

func TestStorePutDeleteCycles(t *testing.T) {
	s := newStore(t, 8<<20)
	data := pattern(3000, 7)
	var ids [8]uint32
	for i := range uint32(100_000) {
		slot := i % uint32(len(ids))
		if i >= uint32(len(ids)) {
			if err := s.Delete(oid(ids[slot])); err != nil {
				t.Fatal(err)
			}
		}
		ids[slot] = i
		if err := s.Put(oid(i), data[:i%uint32(len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range ids {
		if err := s.Delete(oid(i)); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st != (Stats{Capacity: 8 << 20, LargestFree: 8 << 20}) {
		t.Fatalf("store not empty after cycles: %+v", st)
	}
	if s.alloc.FreeBlocks() != 1 {
		t.Fatalf("%d free blocks, want 1", s.alloc.FreeBlocks())
	}
}

func BenchmarkStorePutSmall(b *testing.B) {
	s := newStore(b, 64<<20)
	data := pattern(128<<10, 1)
	b.SetBytes(int64(len(data)))
	for i := uint32(0); b.Loop(); i++ {
		if err := s.Put(oid(i), data); err != nil {
			b.Fatal(err)
		}
		if err := s.Delete(oid(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStorePutLarge puts a 256 MiB object into warm segment pages
// (the steady state) and into fresh ones (the first use of a region).
func BenchmarkStorePutLarge(b *testing.B) {
	const size = 256 << 20
	seg := newSegment(b, size+(1<<20))
	data := pattern(size, 1)
	b.Run("warm", func(b *testing.B) {
		s := NewStore(seg)
		if err := seg.Prefault(0, seg.Capacity()); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(size)
		for i := uint32(0); b.Loop(); i++ {
			if err := s.Put(oid(i), data); err != nil {
				b.Fatal(err)
			}
			if err := s.Delete(oid(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			b.StopTimer()
			if err := unix.Madvise(seg.Slice(0, seg.Capacity()), unix.MADV_REMOVE); err != nil {
				b.Fatal(err)
			}
			s := NewStore(seg)
			b.StartTimer()
			if err := s.Put(oid(0), data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestStorePutUnbackedPages shrinks the segment file under the mapping so
// that part of it has no backing, as when tmpfs runs out of space. Put must
// report an error rather than die of SIGBUS, and must stay safe for a
// retry.
func TestStorePutUnbackedPages(t *testing.T) {
	s := newStore(t, 4<<20)
	if err := s.Put(oid(1), pattern(1<<20, 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(s.Segment().Path(), 2<<20); err != nil {
		t.Fatal(err)
	}
	for i := range uint32(2) {
		err := s.Put(oid(2), pattern(2<<20, 2))
		if err == nil {
			t.Fatalf("attempt %d: Put into unbacked pages succeeded", i)
		}
		t.Log(err)
		if s.Contains(oid(2)) {
			t.Fatal("failed Put left its object")
		}
	}
	// Pages that do exist are still usable.
	if err := s.Put(oid(3), pattern(512<<10, 3)); err != nil {
		t.Fatal(err)
	}
	off, size, _ := s.Get(oid(3))
	if err := checkFill(s.Segment().Slice(off, size), 3); err != nil {
		t.Fatal(err)
	}
}
