// Package objstore is the node-local shared-memory object store, the
// counterpart of Ray's Plasma store. Objects too large to travel inline in
// messages (over 100 KiB) are written once into a shared-memory segment and
// read by every process on the node through its own mapping, without
// copying.
//
// # Who does what
//
// The raylet creates the node's segment, a file in /dev/shm, and owns the
// Store: the table of objects and the allocator that places them. Workers
// and drivers on the node map the same file with OpenSegment and never
// allocate themselves; they ask the raylet (over its RPC interface) to
// create or look up an object and receive an offset and a size.
//
//	// raylet
//	seg, err := objstore.CreateSegment("/dev/shm/goray-"+nodeID.Short(), 8<<30)
//	if err != nil { ... }
//	defer seg.Remove()
//	defer seg.Close()
//	store := objstore.NewStore(seg)
//
//	// in-process put: create, copy, seal in one call
//	err = store.Put(id, data)
//
//	// on a worker's CreateObject request
//	off, err := store.Create(id, size) // reply with off
//	// ... on its SealObject request
//	err = store.Seal(id)
//
//	// on a worker's GetObject request
//	off, size, ok := store.Get(id) // reply with off, size
//
//	// worker or driver
//	seg, err := objstore.OpenSegment(path) // path from the raylet
//	buf, err := seg.CheckedSlice(off, size)  // write it before Seal, or read it after
//
// # Offsets, not pointers
//
// Each process maps the segment at whatever address its kernel picks, so a
// pointer into the segment means nothing to another process. Everything
// that crosses a process boundary is an offset from the segment's start,
// turned into a slice locally by Slice or CheckedSlice; offsets received
// from other processes should go through CheckedSlice, which reports rather
// than panics on a bad range.
//
// # Immutability
//
// An object is written between Create and Seal by exactly one process and
// is invisible to Get until sealed. After Seal its bytes never change, which
// is what makes it safe for any number of processes to read them
// concurrently, zero-copy and without locks. Nothing enforces this on the
// mapping (every process maps it writable, as the writer must); it is a rule
// for the code that uses the store.
//
// # Lifetime
//
// Delete returns an object's block to the allocator at once. Deciding when
// no process can still be reading an object (reference counting, pinning
// while a worker uses it) belongs to the raylet, not to this package.
//
// # Allocation
//
// The Allocator is pure bookkeeping over [0, capacity): 64-byte aligned
// blocks, best fit, and coalescing of free neighbours, so that freeing
// everything always restores one block of full capacity. A Store serialises
// its table and allocator under one mutex held only for bookkeeping; the
// bytes are copied outside it, so a large put does not delay lookups.
//
// # Memory
//
// tmpfs allocates segment pages on first touch, so a segment costs nothing
// until it is used, but the first write to each page is a fault in which the
// kernel allocates and zeroes it, an order of magnitude slower than copying
// into a page already present. Freed blocks keep their pages, so this is
// paid once per region. The Store remembers how far into the segment it has
// ever allocated; a Put reaching past that point populates the pages first
// (Segment.Prefault, in parallel chunks), which both speeds it up and turns
// an out-of-space tmpfs into an error instead of a SIGBUS. A worker writing
// into a block it created can call Prefault on it for the same effect.
// Copy splits large copies over several goroutines; thresholds are
// explained in copy.go.
package objstore
