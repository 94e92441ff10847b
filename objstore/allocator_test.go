package objstore

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// checkInvariants verifies the allocator's internal consistency: the free
// blocks and allocated blocks tile [0, capacity) exactly, free blocks are
// aligned and fully coalesced, and the treap and both indexes agree.
func checkInvariants(t *testing.T, a *Allocator) {
	t.Helper()
	type ext struct {
		off, size uint64
		free      bool
	}
	var exts []ext
	var prev *block
	var freeSum uint64
	a.free.walk(func(b *block) {
		if prev != nil && !prev.less(b.size, b.off) {
			t.Fatalf("tree out of order: (%d,%d) before (%d,%d)", prev.size, prev.off, b.size, b.off)
		}
		prev = b
		for _, c := range []*block{b.left, b.right} {
			if c != nil && c.prio > b.prio {
				t.Fatalf("heap order violated at offset %d", b.off)
			}
		}
		if a.byStart[b.off] != b || a.byEnd[b.off+b.size] != b {
			t.Fatalf("free block [%d,+%d) missing from an index", b.off, b.size)
		}
		exts = append(exts, ext{b.off, b.size, true})
		freeSum += b.size
	})
	if len(exts) != a.FreeBlocks() || len(a.byStart) != len(exts) || len(a.byEnd) != len(exts) {
		t.Fatalf("free block count: tree %d, n %d, byStart %d, byEnd %d", len(exts), a.FreeBlocks(), len(a.byStart), len(a.byEnd))
	}
	var usedSum uint64
	for off, size := range a.alloc {
		exts = append(exts, ext{off, size, false})
		usedSum += size
	}
	if usedSum != a.Used() {
		t.Fatalf("Used() = %d, allocated blocks sum to %d", a.Used(), usedSum)
	}
	slices.SortFunc(exts, func(x, y ext) int { return cmp.Compare(x.off, y.off) })
	var pos uint64
	for i, e := range exts {
		if e.off != pos {
			t.Fatalf("gap or overlap at %d: next extent starts at %d", pos, e.off)
		}
		if e.off%Alignment != 0 || e.size%Alignment != 0 || e.size == 0 {
			t.Fatalf("misaligned extent [%d,+%d)", e.off, e.size)
		}
		if e.free && i > 0 && exts[i-1].free {
			t.Fatalf("adjacent free blocks at %d not coalesced", e.off)
		}
		pos += e.size
	}
	if pos != a.Capacity() || freeSum+usedSum != a.Capacity() {
		t.Fatalf("extents cover %d bytes, free+used = %d, capacity %d", pos, freeSum+usedSum, a.Capacity())
	}
}

func TestAllocatorScenarios(t *testing.T) {
	// Each step allocates (size > 0 or zero with alloc set) or frees the
	// block returned by an earlier step. want is the expected offset, or
	// -1 for a failed allocation.
	type step struct {
		alloc bool
		size  uint64
		free  int // index of the earlier alloc step to free
		want  int64
	}
	A := func(size uint64, want int64) step { return step{alloc: true, size: size, want: want} }
	F := func(i int) step { return step{free: i} }
	const K = Alignment
	tests := []struct {
		name        string
		capacity    uint64
		steps       []step
		used        uint64
		largestFree uint64
		freeBlocks  int
	}{
		{
			name: "alignment rounds sizes up", capacity: 1024,
			steps: []step{A(1, 0), A(64, K), A(65, 2*K), A(0, 4*K)},
			used:  5 * K, largestFree: 1024 - 5*K, freeBlocks: 1,
		},
		{
			name: "capacity rounds down", capacity: 1000,
			steps: []step{A(960, 0), A(1, -1)},
			used:  960, largestFree: 0, freeBlocks: 0,
		},
		{
			name: "exact fill then full", capacity: 4 * K,
			steps: []step{A(2*K, 0), A(2*K, 2*K), A(1, -1)},
			used:  4 * K, largestFree: 0, freeBlocks: 0,
		},
		{
			name: "larger than capacity", capacity: 4 * K,
			steps: []step{A(4*K+1, -1), A(^uint64(0), -1), A(^uint64(0)-62, -1)},
			used:  0, largestFree: 4 * K, freeBlocks: 1,
		},
		{
			name: "free reuses the hole", capacity: 8 * K,
			steps: []step{A(K, 0), A(K, K), A(K, 2*K), F(1), A(K, K)},
			used:  3 * K, largestFree: 5 * K, freeBlocks: 1,
		},
		{
			name: "coalesce with left neighbour", capacity: 8 * K,
			steps: []step{A(K, 0), A(K, K), A(K, 2*K), A(5*K, 3*K), F(0), F(1), A(2*K, 0)},
			used:  8 * K, largestFree: 0, freeBlocks: 0,
		},
		{
			name: "coalesce with right neighbour", capacity: 8 * K,
			steps: []step{A(K, 0), A(K, K), A(K, 2*K), A(5*K, 3*K), F(2), F(1), A(2*K, K)},
			used:  8 * K, largestFree: 0, freeBlocks: 0,
		},
		{
			name: "coalesce both sides", capacity: 8 * K,
			steps: []step{A(K, 0), A(K, K), A(K, 2*K), A(5*K, 3*K), F(0), F(2), F(1), A(3*K, 0)},
			used:  8 * K, largestFree: 0, freeBlocks: 0,
		},
		{
			name: "coalesce with trailing free space", capacity: 8 * K,
			steps: []step{A(K, 0), A(K, K), F(1)},
			used:  K, largestFree: 7 * K, freeBlocks: 1,
		},
		{
			name: "best fit picks smallest hole", capacity: 16 * K,
			// Holes of 3K at 0, 1K at 4K, 2K at 6K; then the tail.
			steps: []step{A(3*K, 0), A(K, 3*K), A(K, 4*K), A(K, 5*K), A(2*K, 6*K), A(K, 8*K),
				F(0), F(2), F(4), A(2*K, 6*K), A(K, 4*K), A(3*K, 0)},
			used: 9 * K, largestFree: 7 * K, freeBlocks: 1,
		},
		{
			name: "best fit prefers lowest offset among equals", capacity: 16 * K,
			steps: []step{A(K, 0), A(K, K), A(K, 2*K), A(K, 3*K), F(2), F(0), A(K, 0), A(K, 2*K)},
			used:  4 * K, largestFree: 12 * K, freeBlocks: 1,
		},
		{
			name: "fragmented: enough free space but no block", capacity: 8 * K,
			steps: []step{A(K, 0), A(K, K), A(K, 2*K), A(K, 3*K), A(K, 4*K), A(K, 5*K), A(K, 6*K), A(K, 7*K),
				F(0), F(2), F(4), F(6), A(2*K, -1), A(K, 0)},
			used: 5 * K, largestFree: K, freeBlocks: 3,
		},
		{
			name: "zero capacity", capacity: 10,
			steps: []step{A(0, -1), A(1, -1)},
			used:  0, largestFree: 0, freeBlocks: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAllocator(tc.capacity)
			offs := make([]uint64, len(tc.steps))
			for i, s := range tc.steps {
				if !s.alloc {
					a.Free(offs[s.free])
					checkInvariants(t, a)
					continue
				}
				off, ok := a.Alloc(s.size)
				switch {
				case s.want < 0 && ok:
					t.Fatalf("step %d: Alloc(%d) = %d, want failure", i, s.size, off)
				case s.want >= 0 && (!ok || off != uint64(s.want)):
					t.Fatalf("step %d: Alloc(%d) = %d, %v; want %d", i, s.size, off, ok, s.want)
				}
				offs[i] = off
				checkInvariants(t, a)
			}
			if a.Used() != tc.used || a.LargestFree() != tc.largestFree || a.FreeBlocks() != tc.freeBlocks {
				t.Errorf("Used %d, LargestFree %d, FreeBlocks %d; want %d, %d, %d",
					a.Used(), a.LargestFree(), a.FreeBlocks(), tc.used, tc.largestFree, tc.freeBlocks)
			}
		})
	}
}

func TestAllocatorFreeUnknownPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		prep func(a *Allocator) uint64
	}{
		{"never allocated", func(a *Allocator) uint64 { return 128 }},
		{"inside a block", func(a *Allocator) uint64 { off, _ := a.Alloc(256); return off + 64 }},
		{"double free", func(a *Allocator) uint64 { off, _ := a.Alloc(64); a.Free(off); return off }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAllocator(4096)
			off := tc.prep(a)
			defer func() {
				if recover() == nil {
					t.Fatalf("Free(%d) did not panic", off)
				}
			}()
			a.Free(off)
		})
	}
}

func TestAllocatorSize(t *testing.T) {
	a := NewAllocator(4096)
	off, _ := a.Alloc(100)
	if size, ok := a.Size(off); !ok || size != 128 {
		t.Fatalf("Size = %d, %v; want 128, true", size, ok)
	}
	if _, ok := a.Size(off + 64); ok {
		t.Fatal("Size of a non-block offset succeeded")
	}
}

// TestAllocatorChurn runs random allocations and frees, with sizes spanning
// several orders of magnitude, and checks that freeing everything restores
// a single block of full capacity.
func TestAllocatorChurn(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			const capacity = 64 << 20
			rng := rand.New(rand.NewPCG(seed, 99))
			a := NewAllocator(capacity)
			var live []uint64
			failures := 0
			for i := range 20000 {
				if len(live) > 0 && rng.IntN(100) < 45 {
					j := rng.IntN(len(live))
					a.Free(live[j])
					live[j] = live[len(live)-1]
					live = live[:len(live)-1]
				} else {
					// Log-uniform sizes from 1 byte to 2 MiB.
					size := uint64(1) << rng.IntN(22)
					size += rng.Uint64N(size)
					if off, ok := a.Alloc(size); ok {
						live = append(live, off)
					} else {
						failures++
						if size <= a.LargestFree() {
							t.Fatalf("Alloc(%d) failed with largest free block %d", size, a.LargestFree())
						}
					}
				}
				if i%1000 == 0 {
					checkInvariants(t, a)
				}
			}
			checkInvariants(t, a)
			t.Logf("live %d, used %d MiB, free blocks %d, largest free %d KiB, failed allocs %d",
				len(live), a.Used()>>20, a.FreeBlocks(), a.LargestFree()>>10, failures)
			rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
			for _, off := range live {
				a.Free(off)
			}
			checkInvariants(t, a)
			if a.Used() != 0 || a.FreeBlocks() != 1 || a.LargestFree() != capacity {
				t.Fatalf("after freeing all: Used %d, FreeBlocks %d, LargestFree %d", a.Used(), a.FreeBlocks(), a.LargestFree())
			}
		})
	}
}

// TestAllocatorFragmentation fills the allocator with mixed sizes, frees
// every other object and checks that the freed space can be reused for
// objects of the sizes that were freed: best fit must not break up holes
// needed later.
func TestAllocatorFragmentation(t *testing.T) {
	const capacity = 16 << 20
	a := NewAllocator(capacity)
	sizes := []uint64{100 << 10, 1 << 20, 300 << 10, 2 << 20, 150 << 10}
	var offs []uint64
	var sz []uint64
	for i := 0; ; i++ {
		s := sizes[i%len(sizes)]
		off, ok := a.Alloc(s)
		if !ok {
			break
		}
		offs, sz = append(offs, off), append(sz, s)
	}
	var freed []uint64
	for i := 0; i < len(offs); i += 2 {
		a.Free(offs[i])
		freed = append(freed, sz[i])
	}
	checkInvariants(t, a)
	// Reallocate the freed sizes largest first; every one must fit.
	slices.Sort(freed)
	slices.Reverse(freed)
	for _, s := range freed {
		if _, ok := a.Alloc(s); !ok {
			t.Fatalf("Alloc(%d) failed; used %d of %d, largest free %d", s, a.Used(), capacity, a.LargestFree())
		}
	}
	checkInvariants(t, a)
}

func BenchmarkAllocator(b *testing.B) {
	a := NewAllocator(1 << 40)
	rng := rand.New(rand.NewPCG(1, 2))
	live := make([]uint64, 0, 1<<16)
	for len(live) < cap(live)/2 {
		off, _ := a.Alloc(uint64(rng.IntN(1<<20) + 1))
		live = append(live, off)
	}
	b.ResetTimer()
	for b.Loop() {
		j := rng.IntN(len(live))
		a.Free(live[j])
		off, ok := a.Alloc(uint64(rng.IntN(1<<20) + 1))
		if !ok {
			b.Fatal("full")
		}
		live[j] = off
	}
}
