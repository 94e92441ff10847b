package objstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"testing"
)

func TestSegmentCreateOpen(t *testing.T) {
	const capacity = 1<<20 + 100 // not a page multiple on purpose
	seg := newSegment(t, capacity)
	if seg.Capacity() != capacity || seg.Path() != segmentPath(t) {
		t.Fatalf("Capacity %d Path %s", seg.Capacity(), seg.Path())
	}
	fi, err := os.Stat(seg.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != capacity || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file size %d mode %v", fi.Size(), fi.Mode())
	}

	// A second mapping in the same process sees writes through the first:
	// the pages are shared, not copied.
	other, err := OpenSegment(seg.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if other.Capacity() != capacity {
		t.Fatalf("opened capacity %d, want %d", other.Capacity(), capacity)
	}
	fill(seg.Slice(capacity-5000, 5000), 9)
	if err := checkFill(other.Slice(capacity-5000, 5000), 9); err != nil {
		t.Fatal(err)
	}
	fill(other.Slice(0, 100), 3)
	if err := checkFill(seg.Slice(0, 100), 3); err != nil {
		t.Fatal(err)
	}
}

func TestSegmentCreateErrors(t *testing.T) {
	seg := newSegment(t, 4096)
	if _, err := CreateSegment(seg.Path(), 4096); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("create over existing file: %v", err)
	}
	if _, err := CreateSegment(seg.Path()+"-zero", 0); err == nil {
		t.Fatal("zero capacity accepted")
	}
	if _, err := os.Stat(seg.Path() + "-zero"); !os.IsNotExist(err) {
		t.Fatal("failed create left a file")
	}
	if _, err := OpenSegment(seg.Path() + "-missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
	if _, err := CreateSegment("/nonexistent-dir/seg", 4096); err == nil {
		t.Fatal("create in missing directory succeeded")
	}
}

func TestSegmentSliceBounds(t *testing.T) {
	seg := newSegment(t, 4096)
	tests := []struct {
		off, size uint64
		ok        bool
	}{
		{0, 0, true},
		{0, 4096, true},
		{4096, 0, true},
		{4095, 1, true},
		{4095, 2, false},
		{4097, 0, false},
		{1, ^uint64(0), false},
		{^uint64(0), 2, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d+%d", tc.off, tc.size), func(t *testing.T) {
			b, err := seg.CheckedSlice(tc.off, tc.size)
			if tc.ok {
				if err != nil || uint64(len(b)) != tc.size || uint64(cap(b)) != tc.size {
					t.Fatalf("len %d cap %d err %v", len(b), cap(b), err)
				}
				return
			}
			if !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("err = %v, want ErrOutOfRange", err)
			}
			defer func() {
				if recover() == nil {
					t.Fatal("Slice did not panic")
				}
			}()
			seg.Slice(tc.off, tc.size)
		})
	}
}

func TestSegmentCloseRemoveIdempotent(t *testing.T) {
	seg := newSegment(t, 4096)
	for range 2 {
		if err := seg.Close(); err != nil {
			t.Fatal(err)
		}
		if err := seg.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	if !seg.Closed() {
		t.Fatal("Closed false after Close")
	}
	if _, err := seg.CheckedSlice(0, 1); !errors.Is(err, ErrSegmentClosed) {
		t.Fatalf("slice after close: %v", err)
	}
	if err := seg.Prefault(0, 1); !errors.Is(err, ErrSegmentClosed) {
		t.Fatalf("prefault after close: %v", err)
	}
}

// TestSegmentRemoveWhileMapped checks the property the raylet relies on at
// shutdown: unlinking does not disturb processes that still have it mapped.
func TestSegmentRemoveWhileMapped(t *testing.T) {
	seg := newSegment(t, 4096)
	if err := seg.Remove(); err != nil {
		t.Fatal(err)
	}
	fill(seg.Slice(0, 4096), 1)
	if err := checkFill(seg.Slice(0, 4096), 1); err != nil {
		t.Fatal(err)
	}
}

func TestSegmentPrefault(t *testing.T) {
	seg := newSegment(t, 1<<20)
	fill(seg.Slice(5000, 10000), 4)
	// Unaligned range crossing the written data, and the very end.
	for _, r := range [][2]uint64{{4000, 20000}, {1<<20 - 10, 10}, {0, 1 << 20}} {
		if err := seg.Prefault(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkFill(seg.Slice(5000, 10000), 4); err != nil {
		t.Fatalf("prefault changed data: %v", err)
	}
	if err := seg.Prefault(1<<20-10, 11); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("prefault past end: %v", err)
	}
}

// TestCrossProcess runs this test binary again as a child that maps the
// same segment: the child checks an object the parent put and fills one the
// parent created, and the parent then checks that.
func TestCrossProcess(t *testing.T) {
	s := newStore(t, 8<<20)
	const size = 3<<20 + 123
	in, out := oid(1), oid(2)
	if err := s.Put(in, pattern(size, parentSeed)); err != nil {
		t.Fatal(err)
	}
	inOff, inSize, _ := s.Get(in)
	outOff, err := s.Create(out, size)
	if err != nil {
		t.Fatal(err)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d,%d,%d", childEnv, s.Segment().Path(), inOff, inSize, outOff, uint64(size)))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, msg)
	}

	if err := s.Seal(out); err != nil {
		t.Fatal(err)
	}
	off, n, ok := s.Get(out)
	if !ok {
		t.Fatal("child's object missing")
	}
	if err := checkFill(s.Segment().Slice(off, n), childSeed); err != nil {
		t.Fatalf("child's object: %v", err)
	}
}
