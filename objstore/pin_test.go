package objstore

import (
	"errors"
	"slices"
	"testing"

	"github.com/goray/goray/protos"
)

func TestHolders(t *testing.T) {
	s := newStore(t, 1<<20)
	seen := make(map[Holder]bool)
	for range 1000 {
		h := s.NewHolder()
		if h == 0 || seen[h] {
			t.Fatalf("holder %d zero or repeated", h)
		}
		seen[h] = true
	}
}

func TestAcquireNotFound(t *testing.T) {
	s := newStore(t, 1<<20)
	h := s.NewHolder()
	if _, err := s.Create(oid(1), 10); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(oid(2), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(oid(2)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		id   protos.ObjectID
	}{{"absent", oid(0)}, {"unsealed", oid(1)}, {"deleted", oid(2)}} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := s.Acquire(tc.id, h); !errors.Is(err, ErrObjectNotFound) {
				t.Fatalf("err = %v, want ErrObjectNotFound", err)
			}
		})
	}
	// Releasing what was never pinned is a no-op.
	s.Release(oid(1), h)
	s.ReleaseAll(h)
	if st := s.Stats(); st.NumPinned != 0 || st.Pinned != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestDeferredDelete(t *testing.T) {
	block := BlockSize(5000)
	tests := []struct {
		name    string
		pins    int
		release func(s *Store, h Holder)
	}{
		{"Release", 1, func(s *Store, h Holder) { s.Release(oid(1), h) }},
		{"Release twice for two pins", 2, func(s *Store, h Holder) {
			s.Release(oid(1), h)
			if st := s.Stats(); st.NumDeleting != 1 {
				t.Fatalf("freed with a pin left: %+v", st)
			}
			s.Release(oid(1), h)
		}},
		{"ReleaseAll", 3, func(s *Store, h Holder) { s.ReleaseAll(h) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, 1<<20)
			h := s.NewHolder()
			if err := s.Put(oid(1), pattern(5000, 1)); err != nil {
				t.Fatal(err)
			}
			var off uint64
			for range tc.pins {
				var err error
				if off, _, err = s.Acquire(oid(1), h); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Delete(oid(1)); err != nil {
				t.Fatal(err)
			}
			// Out of view at once...
			if _, _, ok := s.Get(oid(1)); ok || s.Contains(oid(1)) {
				t.Fatal("deleted object still visible")
			}
			if _, _, err := s.Acquire(oid(1), h); !errors.Is(err, ErrObjectNotFound) {
				t.Fatalf("Acquire of deleted: %v", err)
			}
			st := s.Stats()
			if st.NumObjects != 0 || st.NumDeleting != 1 || st.Used != block || st.Pinned != block || st.NumPinned != 1 {
				t.Fatalf("stats after delete: %+v", st)
			}
			// ...but its bytes stay put for the holder...
			if err := checkFill(s.Segment().Slice(off, 5000), 1); err != nil {
				t.Fatal(err)
			}
			// ...while the id can be used again.
			if err := s.Put(oid(1), pattern(5000, 2)); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Used != 2*block || st.NumObjects != 1 {
				t.Fatalf("stats after re-create: %+v", st)
			}
			tc.release(s, h)
			st = s.Stats()
			if st.NumDeleting != 0 || st.Used != block || st.NumPinned != 0 || st.Pinned != 0 || st.NumObjects != 1 {
				t.Fatalf("stats after release: %+v", st)
			}
			if err := checkObject(s, oid(1), h, 5000, 2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReleaseOldestFirst pins an id, deletes and re-creates it and pins
// the new object: the holder's first Release goes to the old one.
func TestReleaseOldestFirst(t *testing.T) {
	s := newStore(t, 1<<20)
	h := s.NewHolder()
	for seed := range byte(2) {
		if err := s.Put(oid(1), pattern(100, seed)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Acquire(oid(1), h); err != nil {
			t.Fatal(err)
		}
		if seed == 0 {
			if err := s.Delete(oid(1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Release(oid(1), h)
	if st := s.Stats(); st.NumDeleting != 0 || st.NumPinned != 1 {
		t.Fatalf("stats: %+v", st)
	}
	if o := s.Objects(); len(o) != 1 || o[0].Pins != 1 {
		t.Fatalf("objects: %+v", o)
	}
}

func TestDeleteOwnedBy(t *testing.T) {
	s := newStore(t, 1<<20)
	w1, w2 := protos.WorkerID{1}, protos.WorkerID{2}
	owners := []protos.WorkerID{w1, w2, w1, {}, w1}
	for i, w := range owners {
		off, err := s.CreateOwned(oid(uint32(i)), 1000, w)
		if err != nil {
			t.Fatal(err)
		}
		fill(s.Segment().Slice(off, 1000), byte(i))
		if err := s.Seal(oid(uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	// A reader still holds one of w1's objects.
	h := s.NewHolder()
	if _, _, err := s.Acquire(oid(2), h); err != nil {
		t.Fatal(err)
	}
	if ids := s.DeleteOwnedBy(protos.WorkerID{}); ids != nil {
		t.Fatalf("zero owner deleted %v", ids)
	}
	ids := s.DeleteOwnedBy(w1)
	if want := []protos.ObjectID{oid(0), oid(2), oid(4)}; !slices.Equal(ids, want) {
		t.Fatalf("deleted %v, want %v", ids, want)
	}
	for i, w := range owners {
		if s.Contains(oid(uint32(i))) == (w == w1) {
			t.Fatalf("object %d of %v: Contains %v", i, w, !(w == w1))
		}
	}
	objs := s.Objects()
	if len(objs) != 2 || objs[0].Owner != w2 || !objs[1].Owner.IsZero() {
		t.Fatalf("objects left: %+v", objs)
	}
	if st := s.Stats(); st.NumDeleting != 1 {
		t.Fatalf("pinned object not deferred: %+v", st)
	}
	s.ReleaseAll(h)
	if st := s.Stats(); st.NumDeleting != 0 || st.Used != 2*BlockSize(1000) {
		t.Fatalf("stats: %+v", st)
	}
	if ids := s.DeleteOwnedBy(w1); len(ids) != 0 {
		t.Fatalf("second DeleteOwnedBy: %v", ids)
	}
}
