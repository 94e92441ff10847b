package objstore

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goray/goray/internal/shmtest"

	"golang.org/x/sys/unix"
)

// fillTmpfs writes a file of size bytes into dir, taking that much of the
// tmpfs's space, and returns its path.
func fillTmpfs(t *testing.T, dir string, size int) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
	return path
}

func createIn(t *testing.T, dir string, capacity uint64) *Segment {
	t.Helper()
	seg, err := CreateSegment(filepath.Join(dir, "goray-seg"), capacity)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = seg.Close()
		_ = seg.Remove()
	})
	return seg
}

// A store larger than its tmpfs is refused at creation with an error that
// says where, how much was asked and how much there is.
func TestCreateSegmentShmTooSmall(t *testing.T) {
	dir := shmtest.MountTmpfs(t, 8<<20)
	path := filepath.Join(dir, "goray-seg")
	_, err := CreateSegment(path, 16<<20)
	if !errors.Is(err, ErrShmTooSmall) {
		t.Fatalf("CreateSegment of 16 MiB in an 8 MiB tmpfs: %v, want ErrShmTooSmall", err)
	}
	for _, want := range []string{dir, "16777216 bytes (16.0 MiB)", "8388608 bytes (8.0 MiB) free"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, serr := os.Stat(path); !os.IsNotExist(serr) {
		t.Errorf("refused segment left a file: %v", serr)
	}

	// Space taken by other files counts: 6 MiB fit an empty 8 MiB tmpfs,
	// not one with 4 MiB used.
	filler := fillTmpfs(t, dir, 4<<20)
	if _, err := CreateSegment(path, 6<<20); !errors.Is(err, ErrShmTooSmall) {
		t.Fatalf("CreateSegment of 6 MiB with 4 MiB free: %v, want ErrShmTooSmall", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	createIn(t, dir, 6<<20)
}

// When the tmpfs fills up after the store started (other files, other
// nodes' stores), a Create whose block reaches into pages never allocated
// fails with a *ShmFullError instead of handing out memory whose first
// write would kill the writer with SIGBUS, and blocks already reserved go
// on working, in this process and in others.
func TestStoreCreateBeyondShm(t *testing.T) {
	dir := shmtest.MountTmpfs(t, 8<<20)
	s := NewStore(createIn(t, dir, 6<<20))
	a := pattern(1<<20, 1)
	if err := s.Put(oid(1), a); err != nil {
		t.Fatal(err)
	}
	filler := fillTmpfs(t, dir, 6<<20) // 1 MiB used by the store, 1 MiB left
	before := s.Stats()

	for _, size := range []uint64{2 << 20, 3 << 20} {
		off, err := s.Create(oid(2), size)
		if err == nil {
			t.Fatalf("Create of %d bytes with 1 MiB left in the tmpfs returned offset %d", size, off)
		}
		var full *ShmFullError
		if !errors.As(err, &full) || !errors.Is(err, ErrStoreFull) || !errors.Is(err, ErrShmTooSmall) || !errors.Is(err, unix.ENOSPC) {
			t.Fatalf("Create beyond the tmpfs: %v (%T), want a *ShmFullError matching ErrStoreFull, ErrShmTooSmall and ENOSPC", err, err)
		}
		if full.Dir != dir || !strings.Contains(err.Error(), dir) {
			t.Errorf("error %q does not name the directory %s", err, dir)
		}
		if s.Contains(oid(2)) {
			t.Fatal("failed Create left its object in the table")
		}
		if got := s.Stats(); got.Used != before.Used || got.NumObjects != before.NumObjects {
			t.Fatalf("failed Create changed the store: %+v, was %+v", got, before)
		}
	}
	if err := s.Put(oid(3), pattern(3<<20, 3)); !errors.Is(err, ErrShmTooSmall) {
		t.Fatalf("Put beyond the tmpfs: %v, want ErrShmTooSmall", err)
	}
	// A block in reserved pages is fine, written by another process too.
	if err := s.Delete(oid(1)); err != nil {
		t.Fatal(err)
	}
	off, err := s.Create(oid(4), 1<<20)
	if err != nil {
		t.Fatalf("Create within pages reserved before: %v", err)
	}
	if err := runWriter(s.Segment().Path(), off, 1<<20); err != nil {
		t.Fatalf("child writing its block: %v", err)
	}

	// Room made in the tmpfs is room for the store again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	off, err = s.Create(oid(5), 3<<20)
	if err != nil {
		t.Fatalf("Create after the tmpfs was emptied: %v", err)
	}
	if err := runWriter(s.Segment().Path(), off, 3<<20); err != nil {
		t.Fatalf("child writing its block: %v", err)
	}
	if err := s.Seal(oid(5)); err != nil {
		t.Fatal(err)
	}
	off, size, _ := s.Get(oid(5))
	if err := checkFill(s.Segment().Slice(off, size), childSeed); err != nil {
		t.Fatal(err)
	}
}

// The hazard the reservation guards against is real: a process writing into
// segment pages a full tmpfs never allocated dies of SIGBUS. Checked in a
// child, so that the test shows the store's tests run where it would bite.
func TestUnreservedWriteOnFullShmIsSIGBUS(t *testing.T) {
	dir := shmtest.MountTmpfs(t, 8<<20)
	seg := createIn(t, dir, 6<<20)
	fillTmpfs(t, dir, 8<<20-256<<10) // 256 KiB left for a 1 MiB write
	err := runWriter(seg.Path(), 4<<20, 1<<20)
	// The Go runtime turns the signal into a fatal error naming it.
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(err.Error(), "signal SIGBUS") {
		t.Fatalf("child writing unreserved pages of a full tmpfs: %.300v, want it killed by SIGBUS", err)
	}
}

// runWriter has a child process map the segment at path and fill
// [off, +size) with childSeed's pattern, as a worker writes an object.
func runWriter(path string, off, size uint64) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,0,0,%d,%d", childEnv, path, off, size))
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return nil
}

// BenchmarkCreateSegment is the start-up cost of a node's segment: "lazy"
// is what CreateSegment does (statfs, create, flock, ftruncate, mmap), and
// "reserve-all" adds the alternative of reserving every page at start
// (one fallocate of the whole capacity), which the store does not do. The
// sizes are 2 GiB and the raylet's default, 30% of the machine's memory.
func BenchmarkCreateSegment(b *testing.B) {
	sizes := []uint64{2 << 30}
	if total := memTotal(); total > 0 {
		sizes = append(sizes, total*3/10&^4095)
	}
	for _, kind := range []string{"lazy", "reserve-all"} {
		for _, size := range sizes {
			b.Run(fmt.Sprintf("%s/%dMiB", kind, size>>20), func(b *testing.B) {
				if err := CheckShmSpace(DefaultShmDir, size); err != nil {
					b.Skip(err)
				}
				path := segmentPath(b)
				for b.Loop() {
					seg, err := CreateSegment(path, size)
					if err != nil {
						b.Fatal(err)
					}
					if kind == "reserve-all" {
						if err := seg.Reserve(0, size); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					_ = seg.Close()
					_ = seg.Remove()
					b.StartTimer()
				}
			})
		}
	}
}

// BenchmarkFirstWrite is the cost of the first write into a region of the
// segment, as a worker writes a new object: "plain" copies into pages
// tmpfs allocates on fault (what could SIGBUS), "reserved" reserves them
// first as Store.Create does, then copies.
func BenchmarkFirstWrite(b *testing.B) {
	sizes := []int{128 << 10, 1 << 20, 64 << 20}
	maxSize := sizes[len(sizes)-1]
	src := pattern(maxSize, 1)
	seg := newSegment(b, uint64(maxSize))
	for _, kind := range []string{"plain", "reserved"} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%s", kind, sizeName(n)), func(b *testing.B) {
				dst := seg.Slice(0, uint64(n))
				b.SetBytes(int64(n))
				for b.Loop() {
					b.StopTimer()
					if err := unix.Madvise(dst, unix.MADV_REMOVE); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if kind == "reserved" {
						if err := seg.Reserve(0, uint64(n)); err != nil {
							b.Fatal(err)
						}
					}
					copy(dst, src[:n])
				}
			})
		}
	}
}

// BenchmarkReserve is Segment.Reserve alone, of pages not yet allocated
// ("fresh") and of pages already allocated ("again"): why the store keeps
// a high-water mark rather than reserving every block it hands out.
func BenchmarkReserve(b *testing.B) {
	sizes := []int{1 << 20, 64 << 20}
	seg := newSegment(b, uint64(sizes[len(sizes)-1]))
	for _, kind := range []string{"fresh", "again"} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%s", kind, sizeName(n)), func(b *testing.B) {
				dst := seg.Slice(0, uint64(n))
				b.SetBytes(int64(n))
				if err := seg.Reserve(0, uint64(n)); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if kind == "fresh" {
						b.StopTimer()
						if err := unix.Madvise(dst, unix.MADV_REMOVE); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					if err := seg.Reserve(0, uint64(n)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func memTotal() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		var kb uint64
		if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	return 0
}
