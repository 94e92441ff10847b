package objstore

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Segment is one process's mapping of a node's shared-memory file. The same
// file is mapped at a different address in every process, which is why
// objects are named by offset into the segment and never by pointer.
type Segment struct {
	path     string
	capacity uint64

	mu      sync.Mutex // guards data and removed against concurrent Close/Remove
	data    []byte
	removed bool
}

// CreateSegment creates the shared-memory file at path (normally under
// /dev/shm), sizes it to capacity bytes and maps it read-write. It fails if
// the file exists: a leftover file may belong to a live raylet, and silently
// sharing it would corrupt both stores. tmpfs allocates pages lazily, so a
// large capacity costs nothing until objects are written.
func CreateSegment(path string, capacity uint64) (*Segment, error) {
	if capacity == 0 {
		return nil, fmt.Errorf("objstore: create segment %s: capacity must be positive", path)
	}
	if capacity > uint64(maxInt) {
		return nil, fmt.Errorf("objstore: create segment %s: capacity %d too large", path, capacity)
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("objstore: create segment %s: %w", path, &os.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	fail := func(op string, err error) (*Segment, error) {
		_ = unix.Unlink(path)
		return nil, fmt.Errorf("objstore: create segment %s: %s: %w", path, op, err)
	}
	if err := unix.Ftruncate(fd, int64(capacity)); err != nil {
		return fail("ftruncate", err)
	}
	data, err := unix.Mmap(fd, 0, int(capacity), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mmap", err)
	}
	return &Segment{path: path, capacity: capacity, data: data}, nil
}

// OpenSegment maps an existing segment, as a worker or driver does with the
// path its raylet gave it. The size comes from the file itself so the two
// sides cannot disagree about it.
func OpenSegment(path string) (*Segment, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("objstore: open segment: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	// The mapping outlives the descriptor, so there is no reason to hold it.
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("objstore: open segment %s: fstat: %w", path, err)
	}
	if st.Size <= 0 {
		return nil, fmt.Errorf("objstore: open segment %s: file is empty", path)
	}
	data, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("objstore: open segment %s: mmap: %w", path, err)
	}
	return &Segment{path: path, capacity: uint64(st.Size), data: data}, nil
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

// Close unmaps the segment. Slices obtained earlier become invalid, so call
// it only when no goroutine still reads or writes objects. The file and
// other processes' mappings are unaffected. Calling Close again is a no-op.
func (s *Segment) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data == nil {
		return nil
	}
	err := unix.Munmap(s.data)
	s.data = nil
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
