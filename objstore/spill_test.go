package objstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/protos"
)

// newSpillStore makes a spilling store over a fresh segment, closed at the
// end of the test, which must leave no spill directory behind.
func newSpillStore(tb testing.TB, capacity, minSpill uint64) *Store {
	tb.Helper()
	seg := newSegment(tb, capacity)
	dir := filepath.Join(tb.TempDir(), "spill")
	s, err := NewStoreWithOptions(seg, Options{SpillDir: dir, MinSpillBytes: minSpill})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			tb.Errorf("spill dir %s still there after Close (stat: %v)", dir, err)
		}
	})
	return s
}

func objectInfo(t *testing.T, s *Store, id protos.ObjectID) ObjectInfo {
	t.Helper()
	for _, o := range s.Objects() {
		if o.ID == id {
			return o
		}
	}
	t.Fatalf("object %s not listed", id)
	return ObjectInfo{}
}

// checkObject acquires id, checks its bytes were filled with seed, and
// releases it.
func checkObject(s *Store, id protos.ObjectID, h Holder, size int, seed byte) error {
	off, got, err := s.Acquire(id, h)
	if err != nil {
		return err
	}
	defer s.Release(id, h)
	if got != uint64(size) {
		return fmt.Errorf("object %s: size %d, want %d", id, got, size)
	}
	if err := checkFill(s.Segment().Slice(off, got), seed); err != nil {
		return fmt.Errorf("object %s: %w", id, err)
	}
	return nil
}

func spillFiles(t *testing.T, s *Store) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.opts.SpillDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

const obj100K = 100 << 10 // a multiple of Alignment, so blocks are exact

// spillThree fills a 1 MiB store with ten 100 KiB objects 0-9 (seed = index)
// and puts object 10, which makes one spill round of at least 300 KiB write
// the three least recently used, 0, 1 and 2, into one file at offsets 0,
// 102440 and 204880. It returns that file.
func spillThree(t *testing.T, s *Store) string {
	t.Helper()
	for i := range uint32(11) {
		if err := s.Put(oid(i), pattern(obj100K, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	files := spillFiles(t, s)
	if len(files) != 1 {
		t.Fatalf("spill files %v, want one", files)
	}
	return files[0]
}

func TestSpillBatchAndRestore(t *testing.T) {
	s := newSpillStore(t, 1<<20, 300<<10)
	path := spillThree(t, s)

	st := s.Stats()
	if st.NumObjects != 11 || st.NumSealed != 11 || st.NumSpilled != 3 || st.SpilledBytes != 3*obj100K ||
		st.SpillFiles != 1 || st.SpilledObjectsTotal != 3 || st.SpilledBytesTotal != 3*obj100K || st.Used != 8*obj100K {
		t.Fatalf("stats after spill: %+v", st)
	}
	for i := range uint32(11) {
		o := objectInfo(t, s, oid(i))
		spilled := i < 3
		if o.InMemory == spilled || o.Spilled != spilled || (spilled && o.SpillPath != path) {
			t.Fatalf("object %d: %+v", i, o)
		}
		if _, _, ok := s.Get(oid(i)); ok == spilled {
			t.Fatalf("object %d: Get ok = %v", i, ok)
		}
		if !s.Contains(oid(i)) {
			t.Fatalf("object %d: Contains false", i)
		}
	}
	// Objects lists memory first, then the spilled ones in file order.
	objs := s.Objects()
	for i, o := range objs[8:] {
		if o.ID != oid(uint32(i)) || o.Offset != 0 {
			t.Fatalf("spilled entries out of order: %+v", objs[8:])
		}
	}

	h := s.NewHolder()
	if err := checkObject(s, oid(0), h, obj100K, 0); err != nil {
		t.Fatal(err)
	}
	st = s.Stats()
	if st.RestoredObjectsTotal != 1 || st.RestoredBytesTotal != obj100K || st.NumSpilled != 2 || st.SpillFiles != 1 {
		t.Fatalf("stats after restore: %+v", st)
	}
	// The restored object keeps its copy...
	if o := objectInfo(t, s, oid(0)); !o.InMemory || !o.Spilled || o.SpillPath != path || o.Pins != 0 {
		t.Fatalf("restored object: %+v", o)
	}
	// ...so once it is the least recently used again, making room drops
	// its block without writing anything.
	for i := uint32(3); i <= 10; i++ {
		if err := checkObject(s, oid(i), h, obj100K, byte(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(oid(11), pattern(2*obj100K, 11)); err != nil {
		t.Fatal(err)
	}
	if o := objectInfo(t, s, oid(0)); o.InMemory || !o.Spilled || o.SpillPath != path {
		t.Fatalf("re-evicted object: %+v", o)
	}
	if st := s.Stats(); st.SpilledObjectsTotal != 3 || st.SpillFiles != 1 {
		t.Fatalf("re-eviction wrote: %+v", st)
	}
	if err := checkObject(s, oid(0), h, obj100K, 0); err != nil {
		t.Fatal(err)
	}
}

// TestSpillRandomOrder writes 100 objects of 80-240 KB into a 750 KB store
// (the 8-24 MB objects of a real workload, scaled down) and reads them all
// back in random order.
func TestSpillRandomOrder(t *testing.T) {
	s := newSpillStore(t, 750_000, 256<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 100
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = 80_000 + rng.IntN(160_001)
		if err := s.Put(oid(uint32(i)), pattern(sizes[i], byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	h := s.NewHolder()
	for _, i := range rng.Perm(n) {
		if err := checkObject(s, oid(uint32(i)), h, sizes[i], byte(i)); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	t.Logf("%+v", st)
	// Each object is written at most once: a restored one keeps its copy.
	if st.SpilledObjectsTotal > n || st.RestoredObjectsTotal == 0 || st.SpillFiles == 0 {
		t.Fatalf("stats: %+v", st)
	}
	if st.SpillFiles >= int(st.SpilledObjectsTotal) {
		t.Fatalf("%d files for %d spilled objects: rounds not batched", st.SpillFiles, st.SpilledObjectsTotal)
	}
	for i := range uint32(n) {
		if err := s.Delete(oid(i)); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.NumObjects != 0 || st.Used != 0 || st.SpillFiles != 0 || st.SpilledBytes != 0 || st.NumSpilled != 0 {
		t.Fatalf("stats after deleting all: %+v", st)
	}
	if files := spillFiles(t, s); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
}

func TestSpillNeverTakesPinned(t *testing.T) {
	s := newSpillStore(t, 1<<20, 0)
	pinnedID := oid(1000)
	if err := s.Put(pinnedID, pattern(obj100K, 0x77)); err != nil {
		t.Fatal(err)
	}
	h := s.NewHolder()
	off, _, err := s.Acquire(pinnedID, h)
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint32(30) {
		if err := s.Put(oid(i), pattern(obj100K, byte(i))); err != nil {
			t.Fatal(err)
		}
		if o := objectInfo(t, s, pinnedID); !o.InMemory || o.Spilled || o.Offset != off || o.Pins != 1 {
			t.Fatalf("after put %d, pinned object: %+v", i, o)
		}
	}
	st := s.Stats()
	if st.SpilledObjectsTotal == 0 || st.Pinned != obj100K || st.NumPinned != 1 {
		t.Fatalf("stats: %+v", st)
	}
	if err := checkFill(s.Segment().Slice(off, obj100K), 0x77); err != nil {
		t.Fatal(err)
	}
	s.Release(pinnedID, h)
	if st := s.Stats(); st.Pinned != 0 || st.NumPinned != 0 {
		t.Fatalf("stats after release: %+v", st)
	}
}

func TestSpillDeleteRemovesDeadFile(t *testing.T) {
	s := newSpillStore(t, 1<<20, 300<<10)
	path := spillThree(t, s)
	// One of the three is restored: in memory with a copy. Deleting it
	// must drop its record too.
	if err := checkObject(s, oid(2), s.NewHolder(), obj100K, 2); err != nil {
		t.Fatal(err)
	}
	for i, id := range []protos.ObjectID{oid(0), oid(2), oid(1)} {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("file gone with %d records live: %v", 3-i, err)
		}
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("file with no live record still there: %v", err)
	}
	if st := s.Stats(); st.SpillFiles != 0 || st.SpilledBytes != 0 || st.NumSpilled != 0 || st.NumObjects != 8 {
		t.Fatalf("stats: %+v", st)
	}
	if err := s.Delete(oid(1)); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestSpillBadFile(t *testing.T) {
	// Object 1's record starts after object 0's header and data.
	const recOff = recordHeaderSize + obj100K
	tests := []struct {
		name   string
		damage func(path string) error
		want   error
		detail string
	}{
		{"flipped data byte", func(p string) error { return flipByte(p, recOff+recordHeaderSize+500) }, ErrSpillCorrupt, "data checksum"},
		{"flipped header byte", func(p string) error { return flipByte(p, recOff+20) }, ErrSpillCorrupt, "header checksum"},
		{"truncated", func(p string) error { return os.Truncate(p, recOff+recordHeaderSize+100) }, ErrSpillCorrupt, "ends inside the data"},
		{"removed", os.Remove, ErrSpillLost, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSpillStore(t, 1<<20, 300<<10)
			path := spillThree(t, s)
			if err := tc.damage(path); err != nil {
				t.Fatal(err)
			}
			before := s.Stats()
			h := s.NewHolder()
			for attempt := range 2 {
				_, _, err := s.Acquire(oid(1), h)
				if !errors.Is(err, tc.want) {
					t.Fatalf("attempt %d: err = %v, want %v", attempt, err, tc.want)
				}
				for _, part := range []string{oid(1).String(), path, fmt.Sprintf("offset %d", recOff), tc.detail} {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error %q does not mention %q", err, part)
					}
				}
			}
			// The failed restores freed their blocks and left the object
			// spilled.
			if st := s.Stats(); st.Used != before.Used || st.NumSpilled != 3 || st.Pinned != 0 || st.RestoredObjectsTotal != 0 {
				t.Fatalf("stats after failed restores: %+v, before %+v", st, before)
			}
			if o := objectInfo(t, s, oid(1)); o.InMemory || !o.Spilled {
				t.Fatalf("object after failed restore: %+v", o)
			}
			// Other records of a damaged (but present) file are fine.
			if tc.want == ErrSpillCorrupt {
				if err := checkObject(s, oid(0), h, obj100K, 0); err != nil {
					t.Fatal(err)
				}
			}
			// Deleting the object still works and drops the record.
			if err := s.Delete(oid(1)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func flipByte(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return err
	}
	b[0] ^= 0xff
	_, err = f.WriteAt(b[:], off)
	return err
}

func TestSpillTooLarge(t *testing.T) {
	s := newSpillStore(t, 1<<20, 300<<10)
	spillThree(t, s)
	before := s.Stats()
	_, err := s.Create(oid(99), 2<<20)
	var full *FullError
	if !errors.As(err, &full) {
		t.Fatalf("err = %v, want a *FullError", err)
	}
	if full.Requested != 2<<20 || full.Capacity != 1<<20 || full.Used != 8*obj100K || !full.Spilling || full.Spilled != 3*obj100K {
		t.Fatalf("FullError = %+v", *full)
	}
	for _, part := range []string{"requested 2097152", "capacity 1048576", "used 819200", "pinned 0", "largest free block 204800", "spilled 307200"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not mention %q", err, part)
		}
	}
	if st := s.Stats(); st != before {
		t.Fatalf("impossible create changed the store: %+v, before %+v", st, before)
	}
	h := s.NewHolder()
	for i := range uint32(11) {
		if err := checkObject(s, oid(i), h, obj100K, byte(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSpillNothingSpillable checks that a Create that cannot be helped by
// spilling fails at once instead of waiting.
func TestSpillNothingSpillable(t *testing.T) {
	tests := []struct {
		name        string
		setup       func(t *testing.T, s *Store)
		size        uint64
		pinned      uint64
		unspillable uint64
	}{
		{"all pinned", func(t *testing.T, s *Store) {
			h := s.NewHolder()
			for i := range uint32(10) {
				if err := s.Put(oid(i), pattern(obj100K, byte(i))); err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.Acquire(oid(i), h); err != nil {
					t.Fatal(err)
				}
			}
		}, obj100K, 10 * obj100K, 10 * obj100K},
		{"all unsealed", func(t *testing.T, s *Store) {
			for i := range uint32(10) {
				if _, err := s.Create(oid(i), obj100K); err != nil {
					t.Fatal(err)
				}
			}
		}, obj100K, 0, 10 * obj100K},
		{"rest pinned after a spill", func(t *testing.T, s *Store) {
			spillThree(t, s)
			h := s.NewHolder()
			for i := uint32(3); i <= 10; i++ {
				if _, _, err := s.Acquire(oid(i), h); err != nil {
					t.Fatal(err)
				}
			}
		}, 3 * obj100K, 8 * obj100K, 8 * obj100K},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSpillStore(t, 1<<20, 300<<10)
			tc.setup(t, s)
			start := time.Now()
			_, err := s.Create(oid(99), tc.size)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("failing create took %v", d)
			}
			var full *FullError
			if !errors.As(err, &full) || !errors.Is(err, ErrStoreFull) {
				t.Fatalf("err = %v, want a *FullError", err)
			}
			if full.Pinned != tc.pinned || full.Unspillable != tc.unspillable || full.Requested != tc.size {
				t.Fatalf("FullError = %+v", *full)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("pinned %d", tc.pinned)) {
				t.Errorf("error %q does not name the pinned bytes", err)
			}
		})
	}
}

// TestSpillVictimChangesDuringWrite pins one victim and deletes another
// while the spiller is writing them.
func TestSpillVictimChangesDuringWrite(t *testing.T) {
	s := newSpillStore(t, 1<<20, 300<<10)
	h := s.NewHolder()
	var hookErr error
	s.testHookSpillWritten = func() {
		s.testHookSpillWritten = nil // only for the first round
		if _, _, err := s.Acquire(oid(0), h); err != nil {
			hookErr = err
		}
		hookErr = errors.Join(hookErr, s.Delete(oid(1)))
	}
	path := spillThree(t, s)
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	// 0 was pinned: still in memory, and its copy is valid.
	if o := objectInfo(t, s, oid(0)); !o.InMemory || !o.Spilled || o.SpillPath != path || o.Pins != 1 {
		t.Fatalf("victim pinned during write: %+v", o)
	}
	if s.Contains(oid(1)) {
		t.Fatal("victim deleted during write still present")
	}
	st := s.Stats()
	if st.Used != 9*obj100K || st.NumDeleting != 0 || st.NumSpilled != 1 || st.SpilledBytes != 2*obj100K {
		t.Fatalf("stats: %+v", st)
	}
	if err := checkFill(s.Segment().Slice(objectInfo(t, s, oid(0)).Offset, obj100K), 0); err != nil {
		t.Fatal(err)
	}
	s.Release(oid(0), h)
	if err := checkObject(s, oid(2), h, obj100K, 2); err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint32{0, 2} {
		if err := s.Delete(oid(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("dead file still there: %v", err)
	}
}

func TestRestoreSingleFlight(t *testing.T) {
	s := newSpillStore(t, 1<<20, 300<<10)
	spillThree(t, s)
	const n = 8
	offs := make([]uint64, n)
	errs := make([]error, n)
	holders := make([]Holder, n)
	var wg sync.WaitGroup
	for i := range n {
		holders[i] = s.NewHolder()
		wg.Go(func() { offs[i], _, errs[i] = s.Acquire(oid(1), holders[i]) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || offs[i] != offs[0] {
			t.Fatalf("acquire %d: off %d err %v; first off %d", i, offs[i], errs[i], offs[0])
		}
	}
	if st := s.Stats(); st.RestoredObjectsTotal != 1 || st.NumPinned != 1 {
		t.Fatalf("stats: %+v", st)
	}
	if o := objectInfo(t, s, oid(1)); o.Pins != n {
		t.Fatalf("pins %d, want %d", o.Pins, n)
	}
	if err := checkFill(s.Segment().Slice(offs[0], obj100K), 1); err != nil {
		t.Fatal(err)
	}
	for _, h := range holders {
		s.ReleaseAll(h)
	}
	if st := s.Stats(); st.NumPinned != 0 {
		t.Fatalf("stats after release: %+v", st)
	}
}

func TestStoreClose(t *testing.T) {
	s := newSpillStore(t, 1<<20, obj100K)
	for i := range uint32(15) {
		if err := s.Put(oid(i), pattern(obj100K, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if st, files := s.Stats(), spillFiles(t, s); st.SpillFiles < 2 || len(files) != st.SpillFiles {
		t.Fatalf("stats %+v, files %v", st, files)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.opts.SpillDir); !os.IsNotExist(err) {
		t.Fatalf("spill dir left: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := s.Acquire(oid(14), s.NewHolder()); !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
	if _, err := s.Create(oid(100), 10); !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("Create after Close: %v", err)
	}
	// What is in memory is still readable by those who know where.
	off, size, ok := s.Get(oid(14))
	if !ok {
		t.Fatal("in-memory object gone after Close")
	}
	if err := checkFill(s.Segment().Slice(off, size), 14); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.SpillFiles != 0 || st.NumSpilled != 0 || st.SpilledBytes != 0 {
		t.Fatalf("stats after Close: %+v", st)
	}
}

// TestStoreCloseWakesWaiters closes the store while a Create waits for a
// spill round.
func TestStoreCloseWakesWaiters(t *testing.T) {
	s := newSpillStore(t, 1<<20, 300<<10)
	for i := range uint32(10) {
		if err := s.Put(oid(i), pattern(obj100K, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	inHook, unblock := make(chan struct{}), make(chan struct{})
	s.testHookSpillWritten = func() {
		close(inHook)
		<-unblock
	}
	created := make(chan error, 1)
	go func() {
		_, err := s.Create(oid(10), obj100K)
		created <- err
	}()
	<-inHook
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	if err := <-created; !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("waiting Create: %v", err)
	}
	close(unblock)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// TestSpillCycles runs create/seal/acquire/delete cycles, some deleting
// while pinned, in a store small enough to spill now and then; at the end
// nothing may be left.
func TestSpillCycles(t *testing.T) {
	// Eight live objects of up to 3000 bytes fit in 32 KiB; every 64th
	// object is 12 KiB, which makes the spiller work now and then.
	s := newSpillStore(t, 32<<10, 8<<10)
	h := s.NewHolder()
	var ids [8]uint32
	for i := range uint32(100_000) {
		slot := i % uint32(len(ids))
		if i >= uint32(len(ids)) {
			id := oid(ids[slot])
			if _, _, err := s.Acquire(id, h); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(id); err != nil {
				t.Fatal(err)
			}
			s.Release(id, h)
		}
		ids[slot] = i
		size := uint64(i % 3001)
		if i%64 == 0 {
			size = 12 << 10
		}
		if _, err := s.Create(oid(i), size); err != nil {
			t.Fatal(err)
		}
		if err := s.Seal(oid(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range ids {
		if err := s.Delete(oid(i)); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	t.Logf("%+v", st)
	if st.NumObjects != 0 || st.Used != 0 || st.LargestFree != st.Capacity || st.NumDeleting != 0 || st.NumPinned != 0 ||
		st.Pinned != 0 || st.NumSpilled != 0 || st.SpilledBytes != 0 || st.SpillFiles != 0 || st.NumSealed != 0 {
		t.Fatalf("store not empty after cycles: %+v", st)
	}
	if files := spillFiles(t, s); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
}

// TestSpillConcurrent mixes puts, acquires, releases and deletes while the
// spiller works. Content checks catch a block handed to two objects or a
// restore of the wrong record; -race checks the locking.
func TestSpillConcurrent(t *testing.T) {
	s := newSpillStore(t, 4<<20, 512<<10)
	const writers, readers, perWriter = 4, 4, 150
	size := func(i uint32) int { return 20_000 + int(i*7919%80_000) }
	var wg sync.WaitGroup
	errc := make(chan error, writers+readers)
	for w := range uint32(writers) {
		wg.Go(func() {
			for r := range uint32(perWriter) {
				i := w*perWriter + r
				if err := s.Put(oid(i), pattern(size(i), byte(i))); err != nil {
					errc <- err
					return
				}
				// Delete an older object of ours now and then, spilled
				// or not, maybe pinned by a reader.
				if r%3 == 2 {
					if err := s.Delete(oid(i - 2)); err != nil {
						errc <- err
						return
					}
				}
			}
		})
	}
	for rd := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(rd), 7))
			h := s.NewHolder()
			for range 400 {
				i := uint32(rng.IntN(writers * perWriter))
				off, sz, err := s.Acquire(oid(i), h)
				if errors.Is(err, ErrObjectNotFound) {
					continue // not yet written, or deleted
				}
				if err != nil {
					errc <- err
					return
				}
				if err := checkFill(s.Segment().Slice(off, sz), byte(i)); err != nil || sz != uint64(size(i)) {
					errc <- fmt.Errorf("object %d (size %d): %v", i, sz, err)
					return
				}
				if rng.IntN(4) == 0 {
					s.ReleaseAll(h)
				} else {
					s.Release(oid(i), h)
				}
				_ = s.Stats()
				_ = s.Objects()
			}
			s.ReleaseAll(h)
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	st := s.Stats()
	t.Logf("%+v", st)
	if st.SpilledObjectsTotal == 0 {
		t.Error("nothing spilled: test too gentle")
	}
	for i := range uint32(writers * perWriter) {
		_ = s.Delete(oid(i))
	}
	if st := s.Stats(); st.NumObjects != 0 || st.Used != 0 || st.NumDeleting != 0 || st.SpillFiles != 0 || st.NumPinned != 0 {
		t.Fatalf("store not empty: %+v", st)
	}
}

func TestTryCreateDoesNotSpill(t *testing.T) {
	s := newSpillStore(t, 1<<20, 300<<10)
	if s.SpillDir() == "" {
		t.Fatal("spilling store has no SpillDir")
	}
	t.Run("no spilling", func(t *testing.T) {
		if d := newStore(t, 1<<20).SpillDir(); d != "" {
			t.Fatalf("SpillDir = %q", d)
		}
	})
	for i := range uint32(10) {
		if err := s.Put(oid(i), pattern(obj100K, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	w := protos.WorkerID{7}
	if _, err := s.TryCreateOwned(oid(10), obj100K, w); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("TryCreateOwned on a full store: %v", err)
	}
	if st := s.Stats(); st.SpilledObjectsTotal != 0 || st.NumObjects != 10 {
		t.Fatalf("TryCreateOwned spilled: %+v", st)
	}
	if _, err := s.CreateOwned(oid(10), obj100K, w); err != nil {
		t.Fatal(err)
	}
	if o := objectInfo(t, s, oid(10)); o.Owner != w || o.Sealed {
		t.Fatalf("created object: %+v", o)
	}
	if _, err := s.TryCreateOwned(oid(11), 1000, w); err != nil {
		t.Fatalf("TryCreateOwned with room: %v", err)
	}
}

// TestSpillWriteFails removes the spill directory under the store: the
// round fails, Create reports why, and no object is lost.
func TestSpillWriteFails(t *testing.T) {
	s := newSpillStore(t, 1<<20, 300<<10)
	for i := range uint32(10) {
		if err := s.Put(oid(i), pattern(obj100K, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(s.SpillDir()); err != nil {
		t.Fatal(err)
	}
	_, err := s.Create(oid(10), obj100K)
	var full *FullError
	if !errors.As(err, &full) || full.SpillErr == nil || !strings.Contains(err.Error(), "spilling failed") {
		t.Fatalf("err = %v, want a *FullError with SpillErr", err)
	}
	if st := s.Stats(); st.SpillFiles != 0 || st.NumSpilled != 0 || st.NumObjects != 10 {
		t.Fatalf("stats: %+v", st)
	}
	h := s.NewHolder()
	for i := range uint32(10) {
		if err := checkObject(s, oid(i), h, obj100K, byte(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Once the directory is back, spilling works again.
	if err := os.Mkdir(s.SpillDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(oid(10), obj100K); err != nil {
		t.Fatal(err)
	}
}
