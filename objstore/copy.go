package objstore

import (
	"errors"
	"runtime"
	"sync"
)

// Thresholds for splitting a copy across goroutines, from BenchmarkCopy on
// a 2-core VM (AMD EPYC, tmpfs /dev/shm); median GB/s, one goroutine vs two:
//
//   - Warm memory (heap or populated segment pages): 4 MiB 27 vs 25 (loss),
//     32 MiB 17-20 vs 17-25 (break-even to +25% between runs), 64 MiB 14 vs
//     18.6, 256 MiB 14 vs 20. Below the cache size a split copy can win too
//     (1 MiB: 27 vs 37) but objects that small are rarely in cache when put.
//     Hence 32 MiB, in chunks of at least 8 MiB so each goroutine's start-up
//     is amortised.
//   - Fresh segment pages: the kernel allocating and zeroing each page on
//     first touch costs far more than the copy (1.4 GB/s on one core, a
//     tenth of a warm copy) and that work runs in parallel: two goroutines
//     reached 2.4 GB/s from 1 MiB up, 2.6-2.9 GB/s when each first
//     prefaults its chunk with MADV_POPULATE_WRITE. At 256 KiB two
//     goroutines did not pay off. Hence a much smaller chunk for fresh
//     memory.
const (
	parallelCopyMin = 32 << 20
	copyChunkMin    = 8 << 20
	freshChunkMin   = 256 << 10
)

// Copy copies min(len(dst), len(src)) bytes from src to dst, splitting
// copies of 32 MiB or more across up to runtime.NumCPU() goroutines, since a
// single core cannot saturate memory bandwidth. dst and src must not
// overlap.
func Copy(dst, src []byte) {
	n := min(len(dst), len(src))
	workers := 1
	if n >= parallelCopyMin {
		workers = min(runtime.NumCPU(), n/copyChunkMin)
	}
	_ = copyChunks(dst[:n], src[:n], workers, nil)
}

// writeFresh copies src to off in seg where some pages may never have been
// touched. Besides running the faults in parallel, prefaulting first turns
// a tmpfs that is out of space into an error; a plain write would instead
// kill the process with SIGBUS.
func (s *Segment) writeFresh(off uint64, src []byte) error {
	dst := s.Slice(off, uint64(len(src)))
	workers := max(1, min(runtime.NumCPU(), len(src)/freshChunkMin))
	return copyChunks(dst, src, workers, func(lo, hi int) error {
		return s.Prefault(off+uint64(lo), uint64(hi-lo))
	})
}

// copyChunks copies src to dst (equal lengths) in up to workers chunks,
// calling prepare on each chunk's range first; a chunk whose prepare fails
// is not copied.
func copyChunks(dst, src []byte, workers int, prepare func(lo, hi int) error) error {
	n := len(src)
	one := func(lo, hi int) error {
		if prepare != nil {
			if err := prepare(lo, hi); err != nil {
				return err
			}
		}
		copy(dst[lo:hi], src[lo:hi])
		return nil
	}
	if workers < 2 {
		return one(0, n)
	}
	// Page-multiple chunks, so goroutines share at most the pages at chunk
	// boundaries rather than interleaving faults on many.
	chunk := max(pageSize, ((n+workers-1)/workers+pageSize-1)&^(pageSize-1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for lo := chunk; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Go(func() {
			if err := one(lo, hi); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	err := one(0, min(chunk, n))
	wg.Wait()
	return errors.Join(append(errs, err)...)
}

const pageSize = 4096
