package objstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/goray/goray/state"
)

// Segment is one process's mapping of a node's shared-memory file. The same
// file is mapped at a different address in every process, which is why
// objects are named by offset into the segment and never by pointer.
type Segment struct {
	path     string
	capacity uint64
	// file stays open for the mapping's life: Reserve allocates pages
	// through it and, in the creating process, it holds the flock that
	// tells RemoveStaleSegments the segment is in use. An *os.File
	// rather than a raw descriptor so that a Close racing a Reserve
	// cannot make the fallocate land in whatever file reuses the number.
	file *os.File

	mu      sync.Mutex // guards data and removed against concurrent Close/Remove
	data    []byte
	removed bool
}

// DefaultShmDir is where nodes put their segments unless configured
// otherwise: the tmpfs every Linux system mounts for POSIX shared memory.
const DefaultShmDir = "/dev/shm"

// CreateSegment creates the shared-memory file at path (normally under
// /dev/shm), sizes it to capacity bytes and maps it read-write. It fails if
// the file exists: a leftover file may belong to a live raylet, and silently
// sharing it would corrupt both stores.
//
// tmpfs allocates pages lazily, so a large capacity costs nothing until
// objects are written; the other side of that is that a tmpfs smaller than
// the store is only found out when a write faults. So CreateSegment first
// checks that the directory has capacity bytes free and fails with
// ErrShmTooSmall if not. The creator holds an exclusive flock on the file
// until Close, which RemoveStaleSegments takes as proof of life.
func CreateSegment(path string, capacity uint64) (*Segment, error) {
	if capacity == 0 {
		return nil, fmt.Errorf("objstore: create segment %s: capacity must be positive", path)
	}
	if capacity > uint64(maxInt) {
		return nil, fmt.Errorf("objstore: create segment %s: capacity %d too large", path, capacity)
	}
	if err := CheckShmSpace(filepath.Dir(path), capacity); err != nil {
		return nil, fmt.Errorf("objstore: create segment %s: %w", path, err)
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("objstore: create segment %s: %w", path, &os.PathError{Op: "open", Path: path, Err: err})
	}
	fail := func(op string, err error) (*Segment, error) {
		_ = unix.Unlink(path)
		_ = unix.Close(fd)
		return nil, fmt.Errorf("objstore: create segment %s: %s: %w", path, op, err)
	}
	// Blocking: a RemoveStaleSegments in another process may hold the lock
	// for the moment it takes to see that this process is alive.
	if err := flock(fd, unix.LOCK_EX); err != nil {
		return fail("flock", err)
	}
	if err := unix.Ftruncate(fd, int64(capacity)); err != nil {
		return fail("ftruncate", err)
	}
	data, err := unix.Mmap(fd, 0, int(capacity), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mmap", err)
	}
	return &Segment{path: path, capacity: capacity, data: data, file: os.NewFile(uintptr(fd), path)}, nil
}

// CheckShmSpace reports, as an error wrapping ErrShmTooSmall, whether the
// file system of dir has fewer than need bytes free. A tmpfs mounted
// without a size limit reports no blocks at all and always passes.
//
// Free space is a snapshot: stores of other nodes on the machine grow into
// it as they are used, which is why the store also reserves each block's
// pages before handing it out (see Store.Create).
func CheckShmSpace(dir string, need uint64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("objstore: statfs: %w", &os.PathError{Op: "statfs", Path: dir, Err: err})
	}
	if st.Blocks == 0 {
		return nil
	}
	if free := st.Bavail * uint64(st.Bsize); free < need {
		return fmt.Errorf("%w: %s has %d bytes (%s) free, the object store asks for %d bytes (%s)",
			ErrShmTooSmall, dir, free, state.FormatBytes(free), need, state.FormatBytes(need))
	}
	return nil
}

// freeSpace is the free space of dir's file system, 0 if unknown; for
// error messages.
func freeSpace(dir string) uint64 {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0
	}
	return st.Bavail * uint64(st.Bsize)
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// OpenSegment maps an existing segment, as a worker or driver does with the
// path its raylet gave it. The size comes from the file itself so the two
// sides cannot disagree about it.
func OpenSegment(path string) (*Segment, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("objstore: open segment: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	fail := func(err error) (*Segment, error) {
		_ = unix.Close(fd)
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(fmt.Errorf("objstore: open segment %s: fstat: %w", path, err))
	}
	if st.Size <= 0 {
		return fail(fmt.Errorf("objstore: open segment %s: file is empty", path))
	}
	data, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("objstore: open segment %s: mmap: %w", path, err))
	}
	return &Segment{path: path, capacity: uint64(st.Size), data: data, file: os.NewFile(uintptr(fd), path)}, nil
}

// Reserve has the file system allocate the pages under [off, off+size)
// now, so that no later write there can fault for want of space: on a full
// tmpfs a write into a page it cannot allocate raises SIGBUS, which kills
// the process, whereas the allocation fails here with an error. Contents
// are preserved. The pages stay allocated for the file's life, since
// nothing punches holes in a segment.
//
// On tmpfs this is fallocate, which zeroes the pages without mapping them:
// about as costly as the first writes would have been without it (the
// figures are in docs/benchmarks.md). A file system without fallocate gets
// the pages populated through the mapping instead, which reports the same
// failure as an error too.
func (s *Segment) Reserve(off, size uint64) error {
	if size == 0 {
		return nil
	}
	if _, err := s.CheckedSlice(off, size); err != nil {
		return fmt.Errorf("objstore: reserve: %w", err)
	}
	rc, err := s.file.SyscallConn()
	if err != nil {
		return fmt.Errorf("objstore: reserve [%d, +%d) of %s: %w", off, size, s.path, ErrSegmentClosed)
	}
	var ferr error
	var fsize int64
	if err := rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if ferr = unix.Fstat(int(fd), &st); ferr != nil {
			return
		}
		if fsize = st.Size; uint64(fsize) < off+size {
			return
		}
		for {
			// KEEP_SIZE: a file someone shrank must stay short
			// and fail below, not be silently re-extended over
			// objects it lost.
			ferr = unix.Fallocate(int(fd), unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(size))
			if !errors.Is(ferr, unix.EINTR) {
				return
			}
		}
	}); err != nil {
		return fmt.Errorf("objstore: reserve [%d, +%d) of %s: %w", off, size, s.path, ErrSegmentClosed)
	}
	if ferr == nil && uint64(fsize) < off+size {
		return fmt.Errorf("objstore: reserve [%d, +%d) of %s: the file was truncated to %d bytes: %w", off, size, s.path, fsize, ErrOutOfRange)
	}
	switch {
	case ferr == nil:
		return nil
	case errors.Is(ferr, unix.EOPNOTSUPP):
		ferr = s.populate(off, size)
		if ferr == nil {
			return nil
		}
	}
	if errors.Is(ferr, unix.ENOSPC) || errors.Is(ferr, unix.EFAULT) || errors.Is(ferr, unix.ENOMEM) {
		dir := filepath.Dir(s.path)
		return &ShmFullError{Dir: dir, Off: off, Size: size, Free: freeSpace(dir), Err: ferr}
	}
	return fmt.Errorf("objstore: reserve [%d, +%d) of %s: %w", off, size, s.path, ferr)
}

// populate is Reserve for file systems without fallocate:
// MADV_POPULATE_WRITE allocates the pages and fails with EFAULT where a
// write would have raised SIGBUS. Kernels before 5.14 lack it, and the
// only other way, touching each page, is the very SIGBUS this avoids, so
// there it fails.
func (s *Segment) populate(off, size uint64) error {
	start := off &^ (sysPageSize - 1)
	end := min((off+size+sysPageSize-1)&^(sysPageSize-1), s.capacity)
	b, err := s.CheckedSlice(start, end-start)
	if err != nil {
		return err
	}
	return unix.Madvise(b, unix.MADV_POPULATE_WRITE)
}

const maxInt = int(^uint(0) >> 1)

// Path is the file backing the segment; hand it to processes that should
// open the same segment.
func (s *Segment) Path() string { return s.path }

// Capacity is the size of the mapping in bytes.
func (s *Segment) Capacity() uint64 { return s.capacity }

// Slice returns a view of size bytes at off. It panics if the range is
// outside the segment or the segment is closed: callers pass offsets they got
// from their own Store, so a bad one is a bug. Use CheckedSlice for offsets
// that arrived from another process.
//
// The view is valid only until Close; touching it afterwards faults.
func (s *Segment) Slice(off, size uint64) []byte {
	b, err := s.CheckedSlice(off, size)
	if err != nil {
		panic(err)
	}
	return b
}

// CheckedSlice is Slice returning ErrOutOfRange or ErrSegmentClosed instead
// of panicking.
func (s *Segment) CheckedSlice(off, size uint64) ([]byte, error) {
	s.mu.Lock()
	data := s.data
	s.mu.Unlock()
	if data == nil {
		return nil, fmt.Errorf("slice of %s: %w", s.path, ErrSegmentClosed)
	}
	if off > s.capacity || size > s.capacity-off {
		return nil, fmt.Errorf("slice [%d, +%d) of %s (capacity %d): %w", off, size, s.path, s.capacity, ErrOutOfRange)
	}
	// The capacity limit stops append from growing into the next object.
	return data[off : off+size : off+size], nil
}

// Closed reports whether Close has been called.
func (s *Segment) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data == nil
}

// Close unmaps the segment and closes its file. Slices obtained earlier
// become invalid, so call it only when no goroutine still reads or writes
// objects. The file and other processes' mappings are unaffected. Calling
// Close again is a no-op.
func (s *Segment) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data == nil {
		return nil
	}
	err := unix.Munmap(s.data)
	s.data = nil
	// Closing the file releases the creator's flock, after which
	// RemoveStaleSegments in any process may remove the file.
	_ = s.file.Close()
	if err != nil {
		return fmt.Errorf("objstore: close segment %s: munmap: %w", s.path, err)
	}
	return nil
}

// Remove unlinks the segment file so its memory is returned once every
// process has unmapped it. Only the creating raylet should call it. A file
// that is already gone is not an error, so shutdown paths may call it
// unconditionally.
func (s *Segment) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return nil
	}
	if err := unix.Unlink(s.path); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("objstore: remove segment: %w", &os.PathError{Op: "unlink", Path: s.path, Err: err})
	}
	s.removed = true
	return nil
}
