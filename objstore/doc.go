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
//	objstore.RemoveStaleSegments(objstore.DefaultShmDir) // of raylets killed here
//	path := filepath.Join(objstore.DefaultShmDir, objstore.SegmentName(os.Getpid(), nodeID.Short()))
//	seg, err := objstore.CreateSegment(path, 8<<30) // ErrShmTooSmall if /dev/shm has less free
//	if err != nil { ... }
//	defer seg.Remove()
//	defer seg.Close()
//	store := objstore.NewStore(seg)
//	// or, to spill to disk under memory pressure:
//	store, err := objstore.NewStoreWithOptions(seg, objstore.Options{SpillDir: dir})
//	defer store.Close()
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
//	// or, pinning it (and restoring it if spilled) until Release
//	off, size, err := store.Acquire(id, holder)
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
// A reader that must keep an object's bytes in place pins it: Acquire
// returns the location of a sealed object and pins it for a Holder (one
// per process or request, from NewHolder); Release drops one pin and
// ReleaseAll every pin of a holder whose process died. Pins are counted per
// holder and object. A pinned object is never spilled nor freed. Get does
// not pin, and does not see spilled objects; it suits callers that manage
// lifetimes themselves in a store without spilling.
//
// Delete takes an object out of view at once: Get, Acquire and Contains no
// longer find it and its id can be created again. Its block is freed at
// once if nothing holds it, otherwise it waits, outside the table, until
// the last pin is released and any spill or restore of it has finished.
// Delete also drops the object's spill record. CreateOwned records the
// worker owning an object, and DeleteOwnedBy deletes everything a worker
// owned, as when it died.
//
// # Spilling
//
// A store made by NewStoreWithOptions with a SpillDir spills, as Ray does:
// when a Create (or a restore) finds no free block large enough, sealed,
// unpinned objects are written to files in SpillDir, least recently used
// (by Seal or Acquire) first, and their blocks freed. One spiller goroutine
// runs the spill rounds one at a time; creators post a request and wait
// for the outcome without holding the store lock, which is never held
// during file I/O or copies, so lookups and acquires of other objects go
// on meanwhile. A round writes one file of at least Options.MinSpillBytes
// (64 MiB by default) when there are that many spillable bytes, since few
// large sequential writes are what disks do best. Rounds go on until the
// request fits, judged by the largest free block since freed space may be
// scattered, or nothing is left to spill; then Create fails with a
// *FullError naming the requested, used, pinned and unspillable bytes and
// the largest free block. A request larger than the whole store fails at
// once without spilling anything.
//
// Acquire of a spilled object restores it into a new block, on the
// caller's goroutine; concurrent Acquires of it share that one restore. A
// restored object keeps its spill record, so evicting it again only frees
// its block. A spill file is deleted when every object in it has been
// deleted, and Close deletes them all. Spill files do not outlive the
// store: they are not synced, and a restarted raylet starts empty.
//
// A spill file is a sequence of records, each a 40-byte header (magic
// "GRS1", CRC-32C of the data, data size, object id, CRC-32C of the
// header; layout in spillfile.go) followed by the object's bytes. Data
// goes from the segment mapping to the file and back with no intermediate
// buffer. A restore verifies the header and the data CRC: a missing file
// is ErrSpillLost, a mismatch ErrSpillCorrupt, and in both cases the
// object stays spilled, so later Acquires fail the same way.
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
// (Segment.Prefault, in parallel chunks), which speeds it up. A worker
// writing into a block it created can call Prefault on it for the same
// effect. Copy splits large copies over several goroutines; thresholds are
// explained in copy.go.
//
// # Running out of shared memory
//
// A first write into a page that a full tmpfs cannot allocate is not an
// error but a SIGBUS, which kills the writing process: a worker, or a
// driver whose process also holds the embedded raylet and GCS. Two guards
// keep every write in allocated pages:
//
//   - CreateSegment checks with statfs that the segment's directory has
//     as much free space as the capacity asked for, and otherwise fails
//     with an error wrapping ErrShmTooSmall that names the directory, the
//     size asked for and the space free (CheckShmSpace).
//   - The Store reserves the pages of each block before handing it out
//     (Segment.Reserve: fallocate on the segment's file), growing the
//     reservation as a high-water mark, so only the first use of a region
//     pays. Space can still run out after the start check, as other
//     nodes' stores and other files fill the directory: then Create (and
//     Put, and a restore) gives the block back and fails with a
//     *ShmFullError, which matches ErrStoreFull and ErrShmTooSmall and
//     names the directory. Blocks already reserved go on being served.
//
// Reserving the whole capacity at start would have done the same with one
// call, but it takes time in proportion to the store (0.18 s for 2 GiB) and
// commits the memory of a store that may never fill; per block, the
// reservation costs about what the first writes would have cost anyway,
// since it only moves the zeroing of the pages earlier (docs/benchmarks.md,
// "Reserving shared memory").
//
// # Stale segments
//
// A process killed with SIGKILL cannot remove its segment, whose memory
// tmpfs then keeps until reboot. The creating process holds an exclusive
// flock on the segment's file until Close, and the kernel drops the lock
// however the process dies. RemoveStaleSegments, which a raylet runs when
// it starts and when it hears that another node left, removes from a
// directory the files named as SegmentName names them whose lock is free
// and whose creator is gone: no process has its pid, or it is a zombie, or
// the process that has it started after the file was made (a reused pid).
// The pid check also covers the instant between a creator's open and its
// flock.
package objstore
