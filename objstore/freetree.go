package objstore

// freeTree orders free blocks by (size, offset) so best fit is one descent:
// the first block not smaller than the request, lowest offset among equals
// (which keeps allocations packed toward the start of the segment).
//
// It is a treap whose priorities are a hash of the offset rather than random
// draws: the shape depends only on the set of blocks, so the allocator stays
// deterministic while the expected depth is still O(log n).
type freeTree struct {
	root *block
	n    int
}

// block is one free extent. The allocator also indexes it by start and end
// for coalescing, so the node is shared rather than copied.
type block struct {
	off, size   uint64
	prio        uint64
	left, right *block
}

func (b *block) less(size, off uint64) bool {
	return b.size < size || (b.size == size && b.off < off)
}

func (t *freeTree) insert(b *block) {
	b.prio = mix64(b.off)
	b.left, b.right = nil, nil
	t.root = treapInsert(t.root, b)
	t.n++
}

func (t *freeTree) remove(b *block) {
	t.root = treapRemove(t.root, b)
	t.n--
}

// ceil returns the smallest block of at least size bytes, or nil.
func (t *freeTree) ceil(size uint64) *block {
	var best *block
	for n := t.root; n != nil; {
		if n.size >= size {
			best, n = n, n.left
		} else {
			n = n.right
		}
	}
	return best
}

// max returns the largest block, or nil.
func (t *freeTree) max() *block {
	n := t.root
	if n == nil {
		return nil
	}
	for n.right != nil {
		n = n.right
	}
	return n
}

// walk visits blocks in (size, offset) order.
func (t *freeTree) walk(f func(*block)) {
	var rec func(*block)
	rec = func(n *block) {
		if n == nil {
			return
		}
		rec(n.left)
		f(n)
		rec(n.right)
	}
	rec(t.root)
}

func treapInsert(root, b *block) *block {
	if root == nil {
		return b
	}
	if b.prio > root.prio {
		b.left, b.right = treapSplit(root, b.size, b.off)
		return b
	}
	if b.less(root.size, root.off) {
		root.left = treapInsert(root.left, b)
	} else {
		root.right = treapInsert(root.right, b)
	}
	return root
}

// treapSplit divides t into keys below (size, off) and the rest.
func treapSplit(t *block, size, off uint64) (lo, hi *block) {
	if t == nil {
		return nil, nil
	}
	if t.less(size, off) {
		t.right, hi = treapSplit(t.right, size, off)
		return t, hi
	}
	lo, t.left = treapSplit(t.left, size, off)
	return lo, t
}

func treapRemove(root, b *block) *block {
	if root == nil {
		panic("objstore: free block missing from tree")
	}
	if root == b {
		m := treapMerge(root.left, root.right)
		b.left, b.right = nil, nil
		return m
	}
	if b.less(root.size, root.off) {
		root.left = treapRemove(root.left, b)
	} else {
		root.right = treapRemove(root.right, b)
	}
	return root
}

// treapMerge joins two treaps where every key of lo is below every key of hi.
func treapMerge(lo, hi *block) *block {
	switch {
	case lo == nil:
		return hi
	case hi == nil:
		return lo
	case lo.prio > hi.prio:
		lo.right = treapMerge(lo.right, hi)
		return lo
	default:
		hi.left = treapMerge(lo, hi.left)
		return hi
	}
}

// mix64 is the splitmix64 finalizer: cheap, and it spreads the low-entropy,
// 64-byte-aligned offsets over all 64 bits.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
