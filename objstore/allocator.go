package objstore

import "fmt"

// Alignment of every block. 64 bytes is a cache line, so objects never
// share a line (no false sharing between writers of neighbouring objects),
// and it satisfies the alignment of any scalar or SIMD load a reader might
// do directly on the shared memory.
const Alignment = 64

// Allocator hands out aligned blocks of the range [0, capacity). It does no
// I/O and knows nothing of the memory it manages; the Store pairs it with a
// Segment. It is not safe for concurrent use.
//
// Policy: best fit (smallest block that fits, lowest offset among equals),
// carving from the block's start, and immediate coalescing of a freed block
// with free neighbours. Best fit keeps large blocks intact for large objects,
// and coalescing means the free space is always a set of maximal extents, so
// an empty allocator is a single block again.
//
// Cost: O(log n) expected per Alloc/Free in the number of free blocks, plus
// O(1) map operations.
type Allocator struct {
	capacity uint64
	used     uint64

	free    freeTree
	byStart map[uint64]*block // free block starting at offset
	byEnd   map[uint64]*block // free block ending at offset (exclusive)
	alloc   map[uint64]uint64 // allocated block offset -> block size
}

// NewAllocator manages [0, capacity) rounded down to Alignment, since a
// trailing partial unit could never hold an aligned block.
func NewAllocator(capacity uint64) *Allocator {
	capacity &^= Alignment - 1
	a := &Allocator{
		capacity: capacity,
		byStart:  make(map[uint64]*block),
		byEnd:    make(map[uint64]*block),
		alloc:    make(map[uint64]uint64),
	}
	if capacity > 0 {
		a.addFree(&block{off: 0, size: capacity})
	}
	return a
}

// BlockSize is the space Alloc reserves for a request of size bytes: size
// rounded up to Alignment, and at least one unit so that every object,
// even an empty one, has its own offset.
func BlockSize(size uint64) uint64 {
	if size == 0 {
		return Alignment
	}
	return (size + Alignment - 1) &^ (Alignment - 1)
}

// Alloc reserves a block of at least size bytes and returns its offset. ok is
// false when no free block is large enough.
func (a *Allocator) Alloc(size uint64) (off uint64, ok bool) {
	if size > a.capacity {
		return 0, false // also keeps BlockSize from overflowing
	}
	need := BlockSize(size)
	b := a.free.ceil(need)
	if b == nil {
		return 0, false
	}
	a.removeFree(b)
	off = b.off
	if b.size > need {
		b.off += need
		b.size -= need
		a.addFree(b)
	}
	a.alloc[off] = need
	a.used += need
	return off, true
}

// Free returns the block at off. It panics if off is not the start of an
// allocated block: a double free or a stray offset means the caller's
// bookkeeping is corrupt, and carrying on would hand one region to two
// objects.
func (a *Allocator) Free(off uint64) {
	size, ok := a.alloc[off]
	if !ok {
		panic(fmt.Sprintf("objstore: free of unallocated offset %d", off))
	}
	delete(a.alloc, off)
	a.used -= size

	// Reuse a neighbour's node for the merged block, to spare the garbage
	// collector one node per Free.
	var merged *block
	start, end := off, off+size
	if prev, ok := a.byEnd[start]; ok {
		a.removeFree(prev)
		start, merged = prev.off, prev
	}
	if next, ok := a.byStart[end]; ok {
		a.removeFree(next)
		end = next.off + next.size
		if merged == nil {
			merged = next
		}
	}
	if merged == nil {
		merged = &block{}
	}
	merged.off, merged.size = start, end-start
	a.addFree(merged)
}

// Size returns the size of the allocated block at off.
func (a *Allocator) Size(off uint64) (size uint64, ok bool) {
	size, ok = a.alloc[off]
	return size, ok
}

// Capacity is the number of bytes managed.
func (a *Allocator) Capacity() uint64 { return a.capacity }

// Used is the total size of allocated blocks, including alignment padding.
func (a *Allocator) Used() uint64 { return a.used }

// LargestFree is the largest request that would currently succeed.
func (a *Allocator) LargestFree() uint64 {
	if b := a.free.max(); b != nil {
		return b.size
	}
	return 0
}

// FreeBlocks is the number of free extents; with Used it measures
// fragmentation.
func (a *Allocator) FreeBlocks() int { return a.free.n }

func (a *Allocator) addFree(b *block) {
	a.free.insert(b)
	a.byStart[b.off] = b
	a.byEnd[b.off+b.size] = b
}

func (a *Allocator) removeFree(b *block) {
	a.free.remove(b)
	delete(a.byStart, b.off)
	delete(a.byEnd, b.off+b.size)
}
