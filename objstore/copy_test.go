package objstore

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCopy(t *testing.T) {
	// The chunking logic does not depend on scale, so small buffers with
	// odd lengths cover it; Copy itself is run once above its threshold.
	for _, n := range []int{0, 1, 4095, 3*4096 + 5, 1<<20 + 3} {
		src := periodic(n, byte(n))
		for _, workers := range []int{1, 2, 3, 8, 1000} {
			dst := make([]byte, n+10)
			if err := copyChunks(dst[:n], src, workers, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst[:n], src) || !bytes.Equal(dst[n:], make([]byte, 10)) {
				t.Fatalf("n=%d workers=%d: copy wrong", n, workers)
			}
		}
	}
	for _, n := range []int{0, 1, 1 << 20, parallelCopyMin + 4097} {
		src := periodic(n, byte(n))
		dst := make([]byte, n)
		Copy(dst, src)
		if !bytes.Equal(dst, src) {
			t.Fatalf("Copy n=%d wrong", n)
		}
	}
	// Length is the shorter of the two, as with the builtin.
	dst := make([]byte, 3)
	Copy(dst, []byte("abcdef"))
	if string(dst) != "abc" {
		t.Fatalf("got %q", dst)
	}
	dst = []byte("xyz")
	Copy(dst, []byte("a"))
	if string(dst) != "ayz" {
		t.Fatalf("got %q", dst)
	}
}

// periodic is a cheap stand-in for pattern at large sizes (pattern's byte
// loop is slow under -race). Its prime period means a chunk copied to the
// wrong page-multiple offset still shows.
func periodic(n int, seed byte) []byte {
	b := make([]byte, n)
	fill(b[:min(n, 4099)], seed)
	for done := min(n, 4099); done < n; done *= 2 {
		copy(b[done:], b[:done])
	}
	return b
}

func TestWriteFresh(t *testing.T) {
	seg := newSegment(t, 8<<20)
	for _, r := range [][2]uint64{{0, 0}, {64, 100}, {4096 + 64, 300 << 10}, {1 << 20, 5<<20 + 17}} {
		src := pattern(int(r[1]), byte(r[0]))
		if err := seg.writeFresh(r[0], src); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(seg.Slice(r[0], r[1]), src) {
			t.Fatalf("writeFresh(%d, %d bytes) wrong", r[0], r[1])
		}
	}
}

// BenchmarkCopy measures plain and split copies for the destinations a Put
// meets, to choose the thresholds in copy.go:
//
//   - heap: warm private memory, the pure bandwidth case;
//   - shm-warm: segment pages already populated, the steady state once a
//     region of the segment has been used;
//   - shm-fresh: pages never touched, so each first write faults and the
//     kernel allocates and zeroes the page;
//   - shm-fresh-prefault: as shm-fresh, but each goroutine prefaults its
//     chunk with MADV_POPULATE_WRITE before copying (what writeFresh does).
//
// Sub-benchmarks are kind/size/wN, N being the number of goroutines.
func BenchmarkCopy(b *testing.B) {
	sizes := []int{256 << 10, 1 << 20, 4 << 20, 32 << 20, 64 << 20, 256 << 20}
	maxSize := sizes[len(sizes)-1]
	src := pattern(maxSize, 1)
	heap := make([]byte, maxSize)
	copy(heap, src)
	seg := newSegment(b, uint64(maxSize))
	shm := seg.Slice(0, uint64(maxSize))

	for _, kind := range []string{"heap", "shm-warm", "shm-fresh", "shm-fresh-prefault"} {
		for _, n := range sizes {
			for _, w := range []int{1, 2, 4} {
				b.Run(fmt.Sprintf("%s/%s/w%d", kind, sizeName(n), w), func(b *testing.B) {
					dst := shm[:n]
					fresh := kind == "shm-fresh" || kind == "shm-fresh-prefault"
					var prepare func(lo, hi int) error
					switch kind {
					case "heap":
						dst = heap[:n]
					case "shm-warm":
						copy(dst, src)
					case "shm-fresh-prefault":
						prepare = func(lo, hi int) error { return seg.Prefault(uint64(lo), uint64(hi-lo)) }
					}
					b.SetBytes(int64(n))
					b.ResetTimer()
					for range b.N {
						if fresh {
							// Hand the pages back to tmpfs so the next
							// write is a first touch again.
							b.StopTimer()
							if err := unix.Madvise(dst, unix.MADV_REMOVE); err != nil {
								b.Fatal(err)
							}
							b.StartTimer()
						}
						if err := copyChunks(dst, src[:n], w, prepare); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}
