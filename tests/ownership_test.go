package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// RefBox nests a ref in a value, so it travels as a borrowed ref.
type RefBox struct{ R sdk.Ref[[]byte] }

// ChainLink is one hop of a relay: either the next hop's result or, at the
// end, the checksum of the relayed object.
type ChainLink struct {
	Next sdk.Ref[ChainLink]
	CRC  uint32
	Done bool
}

// ObjectOwner is an actor that owns objects it hands out.
type ObjectOwner struct{}

func (o *ObjectOwner) MakeBox(ctx context.Context, size int) (RefBox, error) {
	ref, err := sdk.Put(ctx, pattern(size, 9))
	return RefBox{R: ref}, err
}

var (
	// CRCOf checksums b; its second argument orders it after another task.
	CRCOf = sdk.Register2("tests.CRCOf", func(ctx context.Context, b []byte, _ bool) (uint32, error) {
		return crc32.ChecksumIEEE(b), nil
	})

	// WaitGate returns once the gate file exists.
	WaitGate = sdk.Register1("tests.WaitGate", func(ctx context.Context, gate string) (bool, error) {
		return true, waitForFile(ctx, gate)
	})

	// Relay passes box on through depth more tasks, each returning at once;
	// the last waits for the gate file, then checksums the boxed object.
	Relay *sdk.Func3[int, RefBox, string, ChainLink]

	ObjectOwnerActor = sdk.RegisterActor0("tests.ObjectOwner", func(ctx context.Context) (*ObjectOwner, error) { return &ObjectOwner{}, nil })
	ObjectOwnerBox   = sdk.NewMethod1(ObjectOwnerActor, "MakeBox", (*ObjectOwner).MakeBox)
)

func init() {
	Relay = sdk.Register3("tests.Relay", func(ctx context.Context, depth int, box RefBox, gate string) (ChainLink, error) {
		if depth > 0 {
			return ChainLink{Next: Relay.Remote(ctx, depth-1, box, gate)}, nil
		}
		if err := waitForFile(ctx, gate); err != nil {
			return ChainLink{}, err
		}
		b, err := box.R.Get(ctx)
		if err != nil {
			return ChainLink{}, err
		}
		return ChainLink{CRC: crc32.ChecksumIEEE(b), Done: true}, nil
	})
}

func waitForFile(ctx context.Context, path string) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// pattern returns size bytes that depend on seed everywhere, cheaply: a
// seeded 4 KiB block repeated, with the offset of every 4 KiB stamped in.
func pattern(size int, seed uint64) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed*31+7))
	block := min(size, 4096)
	for i := 0; i+8 <= block; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for off := block; off < size; off *= 2 {
		copy(b[off:], b[:off])
	}
	for off := 0; off+8 <= size; off += 4096 {
		binary.LittleEndian.PutUint64(b[off:], uint64(off)^seed)
	}
	return b
}

// TestSpilledObjectsReadBackInRandomOrder puts 100 objects of 8-24 MB
// (1.6 GB) through a 75 MiB store: most are spilled to disk and restored
// when read.
func TestSpilledObjectsReadBackInRandomOrder(t *testing.T) {
	ctx := startCluster(t, sdk.ObjectStoreMemory(75<<20))
	const n = 100
	r := rand.New(rand.NewPCG(1, 2))
	src := pattern(24<<20, 77)
	refs := make([]sdk.Ref[[]byte], n)
	sums := make([]uint32, n)
	for i := range refs {
		size := 8<<20 + r.IntN(16<<20)
		data := src[:size]
		binary.LittleEndian.PutUint64(data[size/2:], uint64(i))
		binary.LittleEndian.PutUint64(data[size-8:], uint64(i)*3)
		sums[i] = crc32.ChecksumIEEE(data)
		ref, err := sdk.Put(ctx, data)
		if err != nil {
			t.Fatalf("put %d (%d bytes): %v", i, size, err)
		}
		refs[i] = ref
	}
	for _, i := range r.Perm(n) {
		v, err := sdk.GetView(ctx, refs[i])
		if err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		if got := crc32.ChecksumIEEE(v.Bytes()); got != sums[i] {
			t.Fatalf("object %d read back with crc %08x, want %08x", i, got, sums[i])
		}
		v.Release()
	}
	mem, err := sdk.MemorySummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := mem.Nodes[0].Store
	if st.SpilledObjectsTotal == 0 || st.RestoredObjectsTotal == 0 {
		t.Fatalf("1.6 GB through 75 MiB without spilling and restoring: %+v", st)
	}
	t.Logf("spilled %d objects (%d bytes), restored %d (%d bytes)", st.SpilledObjectsTotal, st.SpilledBytesTotal, st.RestoredObjectsTotal, st.RestoredBytesTotal)
}

// TestObjectOfPendingTaskSurvivesChurn drops every ref to an object but the
// one a queued task holds (it waits for another task), then fills the store
// many times over with objects that stay referenced: the object is spilled
// and restored, never lost, and the task reads it intact.
func TestObjectOfPendingTaskSurvivesChurn(t *testing.T) {
	ctx := startCluster(t, sdk.ObjectStoreMemory(40<<20))
	gate := filepath.Join(t.TempDir(), "gate")
	data := pattern(12<<20, 5)
	want := crc32.ChecksumIEEE(data)
	ref, err := sdk.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	sum := CRCOf.RemoteArgs(ctx, ref, WaitGate.Remote(ctx, gate))
	xid := ref.ID()
	ref, data = sdk.Ref[[]byte]{}, nil
	runtime.GC()
	churn := pattern(8<<20, 6)
	var keep []sdk.Ref[[]byte]
	for i := 0; i < 20; i++ {
		churn[0] = byte(i)
		r, err := sdk.Put(ctx, churn)
		if err != nil {
			t.Fatalf("churn put %d: %v", i, err)
		}
		keep = append(keep, r)
	}
	mem, err := sdk.MemorySummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := mem.Nodes[0].Store; st.SpilledObjectsTotal == 0 {
		t.Fatalf("160 MB of live objects in a 40 MiB store spilled nothing: %+v", st)
	}
	spilled := false
	for _, o := range mem.Objects {
		if o.ID == xid.String() {
			spilled = o.Spilled && !o.InMemory
		}
	}
	if !spilled {
		t.Fatal("the oldest object, held only by a queued task, was not spilled")
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := sum.Get(ctx)
	if err != nil || got != want {
		t.Fatalf("task read the object with crc %08x, %v; want %08x", got, err, want)
	}
	runtime.KeepAlive(keep)
}

// TestPutFreeCyclesLeaveStoreEmpty runs 100,000 put/free cycles of objects
// in the store.
func TestPutFreeCyclesLeaveStoreEmpty(t *testing.T) {
	ctx := startCluster(t, sdk.ObjectStoreMemory(64<<20))
	data := make([]byte, 100<<10+1) // just over the inline limit
	for i := 0; i < 100_000; i++ {
		binary.LittleEndian.PutUint32(data, uint32(i))
		ref, err := sdk.Put(ctx, data)
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if i%10_000 == 0 {
			b, err := ref.Get(ctx)
			if err != nil || binary.LittleEndian.Uint32(b) != uint32(i) {
				t.Fatalf("cycle %d read back: %v", i, err)
			}
		}
	}
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		runtime.GC()
		if n := storeObjects(ctx, t); n != 0 {
			return errorf("store still holds %d objects", n)
		}
		return nil
	})
}

// TestBorrowerChainKeepsObjectAlive relays a ref through five nested tasks
// that each return at once. The owner drops its own ref at the start; the
// object lives until the last task has read it, and is freed after.
func TestBorrowerChainKeepsObjectAlive(t *testing.T) {
	ctx := startCluster(t)
	gate := filepath.Join(t.TempDir(), "gate")
	data := pattern(3<<20, 11)
	want := crc32.ChecksumIEEE(data)
	ref, err := sdk.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	id := ref.ID()
	first := Relay.Remote(ctx, 5, RefBox{R: ref}, gate)
	ref, data = sdk.Ref[[]byte]{}, nil
	// Follow the chain to the last, still waiting, hop: five tasks have
	// ended by then, and none holds the object but through borrowing.
	link, err := first.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for hops := 1; hops < 5; hops++ {
		if link, err = link.Next.Get(ctx); err != nil || link.Done {
			t.Fatalf("hop %d: %+v, %v", hops, link, err)
		}
	}
	// Wait until the owner's own holds are gone and only the last hop's
	// holders borrow it: the worker running it and the one that submitted
	// it (a pending task's argument), which may be the same process. The
	// other hops' workers have given theirs back.
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		runtime.GC()
		mem, err := sdk.MemorySummary(ctx)
		if err != nil {
			return err
		}
		for _, o := range mem.Objects {
			if o.ID != id.String() {
				continue
			}
			for _, h := range o.Holders {
				if h.Owner && (h.LocalRefs > 0 || h.SubmittedRefs > 0 || h.Borrowers < 1) {
					return errorf("owner holds the object itself or has no borrower: %+v", h)
				}
				if !h.Owner && h.LocalRefs == 0 && h.SubmittedRefs == 0 && h.ContainedRefs == 0 {
					return errorf("process %d still lists the object without holding it", h.Process.PID)
				}
			}
			return nil
		}
		return errorf("object %s is gone while the last hop still borrows it", id)
	})
	if !storeHas(ctx, t, id.String()) {
		t.Fatal("the object was freed while the last task of the chain still borrowed it")
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	last, err := link.Next.Get(ctx)
	if err != nil || !last.Done || last.CRC != want {
		t.Fatalf("last hop: %+v, %v; want crc %08x", last, err, want)
	}
	first, link, last = sdk.Ref[ChainLink]{}, ChainLink{}, ChainLink{}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		runtime.GC()
		if storeHas(ctx, t, id.String()) {
			return errorf("object %s still in the store after the chain ended", id)
		}
		return nil
	})
}

// storeHas reports whether the local node's store holds the object.
func storeHas(ctx context.Context, t *testing.T, id string) bool {
	t.Helper()
	mem, err := sdk.MemorySummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range mem.Objects {
		if o.ID == id && (o.InMemory || o.Spilled) {
			return true
		}
	}
	return false
}

// TestOwnerDiedError kills the actor owning an object the driver borrows:
// Get fails at once with ErrOwnerDied.
func TestOwnerDiedError(t *testing.T) {
	ctx := startCluster(t)
	owner, err := ObjectOwnerActor.Remote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	box, err := ObjectOwnerBox.Remote(ctx, owner, 1<<20).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fetched, err := ObjectOwnerBox.Remote(ctx, owner, 1<<20).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := fetched.R.Get(ctx); err != nil || len(b) != 1<<20 {
		t.Fatalf("borrowed object while its owner lives: %d bytes, %v", len(b), err)
	}
	if err := sdk.Kill(ctx, owner, true); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]sdk.Ref[[]byte]{"never fetched": box.R, "fetched before": fetched.R} {
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			_, err := r.Get(ctx, sdk.Timeout(5*time.Second))
			if errors.Is(err, sdk.ErrGetTimeout) {
				t.Fatalf("%s: Get timed out instead of failing with ErrOwnerDied", name)
			}
			if !errors.Is(err, sdk.ErrOwnerDied) {
				return errorf("%s: Get after the owner died: %v", name, err)
			}
			return nil
		})
	}
}

// TestPinnedViewSurvivesChurn holds a view while the store fills many
// times over: the viewed bytes never change.
func TestPinnedViewSurvivesChurn(t *testing.T) {
	ctx := startCluster(t, sdk.ObjectStoreMemory(40<<20))
	data := pattern(10<<20, 3)
	want := crc32.ChecksumIEEE(data)
	ref, err := sdk.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sdk.GetView(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	ref, data = sdk.Ref[[]byte]{}, nil
	runtime.GC()
	churn := pattern(8<<20, 4)
	var keep []sdk.Ref[[]byte]
	for i := 0; i < 12; i++ {
		churn[1] = byte(i)
		r, err := sdk.Put(ctx, churn)
		if err != nil {
			t.Fatalf("churn put %d: %v", i, err)
		}
		keep = append(keep, r)
	}
	if got := crc32.ChecksumIEEE(v.Bytes()); got != want {
		t.Fatalf("pinned view changed under churn: crc %08x, want %08x", got, want)
	}
	v.Release()
	_ = keep
}

// TestCorruptSpillFileIsReported corrupts and then removes a spill file:
// reading the object gives a clear error, and other objects are intact.
func TestCorruptSpillFileIsReported(t *testing.T) {
	dir := t.TempDir()
	ctx := startClusterIn(t, dir, sdk.ObjectStoreMemory(32<<20))
	a, err := sdk.Put(ctx, pattern(20<<20, 1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sdk.Put(ctx, pattern(20<<20, 2)) // spills a
	if err != nil {
		t.Fatal(err)
	}
	files := spillFiles(dir)
	if len(files) == 0 {
		t.Fatal("no spill file after overfilling the store")
	}
	f, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, 10<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = a.Get(ctx)
	if err == nil || !errors.Is(err, sdk.ErrObjectLost) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Get of an object whose spill file is corrupt: %v", err)
	}
	// A view, not Get: Get would keep b pinned while b is referenced,
	// leaving no room to try restoring a again below.
	v, err := sdk.GetView(ctx, b)
	if err != nil || crc32.ChecksumIEEE(v.Bytes()) != crc32.ChecksumIEEE(pattern(20<<20, 2)) {
		t.Fatalf("other object after the corruption: %v", err)
	}
	v.Release()
	for _, f := range files {
		_ = os.Remove(f)
	}
	_, err = a.Get(ctx)
	if err == nil || !errors.Is(err, sdk.ErrObjectLost) {
		t.Fatalf("Get of an object whose spill file is gone: %v", err)
	}
}

var SumFloats = sdk.Register1("tests.SumFloats", func(ctx context.Context, xs []float64) (float64, error) {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s, nil
})

var MakeInts = sdk.Register1("tests.MakeInts", func(ctx context.Context, n int) ([]int32, error) {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i) * 3
	}
	return out, nil
})

// TestNumericSlicesAreViews: large numeric slices are read from shared
// memory without copying, as arguments and results too; small ones
// travel inline.
func TestNumericSlicesAreViews(t *testing.T) {
	ctx := startCluster(t)
	xs := make([]float64, 1<<20)
	var want float64
	for i := range xs {
		xs[i] = float64(i) / 4
		want += xs[i]
	}
	ref, err := sdk.Put(ctx, xs)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ref.Get(ctx)
	if err != nil || len(a) != len(xs) || a[12345] != xs[12345] {
		t.Fatalf("Get []float64: len %d, %v", len(a), err)
	}
	b, err := ref.Get(ctx)
	if err != nil || &a[0] != &b[0] {
		t.Fatalf("two Gets of one []float64 should share the pinned view: %v", err)
	}
	if &a[0] == &xs[0] {
		t.Fatal("Get returned the caller's slice, not the stored object")
	}
	if s, err := SumFloats.RemoteArgs(ctx, ref).Get(ctx); err != nil || s != want {
		t.Fatalf("SumFloats(ref) = %v, %v; want %v", s, err, want)
	}
	ints, err := MakeInts.Remote(ctx, 100_000).Get(ctx)
	if err != nil || len(ints) != 100_000 || ints[99_999] != 99_999*3 {
		t.Fatalf("MakeInts: len %d, %v", len(ints), err)
	}
	small, err := MakeInts.Remote(ctx, 5).Get(ctx)
	if err != nil || len(small) != 5 || small[4] != 12 {
		t.Fatalf("MakeInts(5): %v, %v", small, err)
	}
	var asAny any
	asAny, err = sdk.AsRef[any](ref).Get(ctx)
	if f, ok := asAny.([]float64); err != nil || !ok || len(f) != len(xs) {
		t.Fatalf("Get as any: %T, %v", asAny, err)
	}
	if _, err := sdk.AsRef[[]int64](ref).Get(ctx); !errors.Is(err, sdk.ErrArgument) {
		t.Fatalf("Get of []float64 as []int64: %v", err)
	}
}
