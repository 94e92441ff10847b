package objstore

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

var sysPageSize = uint64(unix.Getpagesize())

// Prefault makes the kernel allocate and map the pages under [off, off+size)
// now, in one call, instead of one fault per page on first write. Contents
// are preserved. The range is widened to whole pages, which may touch the
// edges of neighbouring objects; that is harmless because a prefault
// changes no byte.
func (s *Segment) Prefault(off, size uint64) error {
	if size == 0 {
		return nil
	}
	if _, err := s.CheckedSlice(off, size); err != nil {
		return fmt.Errorf("objstore: prefault: %w", err)
	}
	start := off &^ (sysPageSize - 1)
	end := min((off+size+sysPageSize-1)&^(sysPageSize-1), s.capacity)
	b := s.Slice(start, end-start)
	err := unix.Madvise(b, unix.MADV_POPULATE_WRITE)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("objstore: prefault [%d, +%d) of %s: %w", off, size, s.path, err)
	}
	// Kernels before 5.14 lack MADV_POPULATE_WRITE. An atomic add of zero
	// is a write fault that keeps the data even if another process is
	// writing the same word.
	for i := uint64(0); i < uint64(len(b)); i += sysPageSize {
		atomic.AddUint32((*uint32)(unsafe.Pointer(&b[i])), 0)
	}
	return nil
}
