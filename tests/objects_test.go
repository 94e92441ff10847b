package tests

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/goray/goray/sdk"
)

func TestPutGetWait(t *testing.T) {
	ctx := startCluster(t)
	r1, err := sdk.Put(ctx, map[string]int{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := r1.Get(ctx)
	if err != nil || m["a"] != 1 {
		t.Fatalf("Get(put map) = %v, %v", m, err)
	}
	r2, _ := sdk.Put(ctx, []byte("raw bytes"))
	if b, err := r2.Get(ctx); err != nil || string(b) != "raw bytes" {
		t.Fatalf("Get(put []byte) = %q, %v", b, err)
	}

	// Get with a timeout on a pending object.
	slow := Sleep.Remote(ctx, 3*time.Second)
	if _, err := slow.Get(ctx, sdk.Timeout(50*time.Millisecond)); !errors.Is(err, sdk.ErrGetTimeout) {
		t.Fatalf("Get timeout: %v", err)
	}

	// Wait keeps input order, counts only numReturns as ready.
	fast := []sdk.ObjectRef{Add.Remote(ctx, 1, 1).Untyped(), Add.Remote(ctx, 2, 2).Untyped()}
	in := []sdk.ObjectRef{slow.Untyped(), fast[0], fast[1]}
	ready, notReady, err := sdk.Wait(ctx, in, 2, sdk.Timeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(ready) != 2 || ready[0].ID() != fast[0].ID() || ready[1].ID() != fast[1].ID() || len(notReady) != 1 || notReady[0].ID() != slow.ID() {
		t.Fatalf("Wait = %v / %v", ready, notReady)
	}
	// Timeout returns what is ready, without error.
	ready, notReady, err = sdk.Wait(ctx, in, 3, sdk.Timeout(50*time.Millisecond))
	if err != nil || len(ready) != 2 || len(notReady) != 1 {
		t.Fatalf("Wait with timeout = %v / %v, %v", ready, notReady, err)
	}
	// Duplicates are rejected; empty in, empty out.
	if _, _, err := sdk.Wait(ctx, []sdk.ObjectRef{fast[0], fast[0]}, 1); !errors.Is(err, sdk.ErrDuplicateRef) {
		t.Fatalf("Wait duplicates: %v", err)
	}
	ready, notReady, err = sdk.Wait(ctx, []sdk.ObjectRef(nil), 0)
	if err != nil || len(ready) != 0 || len(notReady) != 0 {
		t.Fatalf("Wait(empty) = %v, %v, %v", ready, notReady, err)
	}
	if _, _, err := sdk.Wait(ctx, fast, 3); !errors.Is(err, sdk.ErrArgument) {
		t.Fatalf("Wait numReturns > len: %v", err)
	}
}

func TestLargeObjectsUseSharedMemoryAndAreFreed(t *testing.T) {
	ctx := startCluster(t)
	const size = 4 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	ref, err := sdk.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ref.Get(ctx)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get(put 4 MiB): equal=%v, %v", bytes.Equal(got, data), err)
	}
	// Passed to a task: the worker reads it from the node's store.
	want := 0
	for _, b := range data {
		want += int(b)
	}
	if s, err := SumBytes.RemoteArgs(ctx, ref).Get(ctx); err != nil || s != want {
		t.Fatalf("SumBytes(ref) = %d, %v; want %d", s, err, want)
	}
	// A large result comes back through the store.
	big := MakeBytes.Remote(ctx, size, 3)
	b, err := big.Get(ctx)
	if err != nil || len(b) != size || b[10] != 3+byte(10%7) {
		t.Fatalf("MakeBytes: len %d, %v", len(b), err)
	}
	// ClusterStatus shows the node's last report: wait for one after the
	// result was stored.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if objs := storeObjects(ctx, t); objs < 2 {
			return errorf("store holds %d objects, want the put and the result", objs)
		}
		return nil
	})
	// Dropping every ref frees them.
	ref, big, got, b = sdk.Ref[[]byte]{}, sdk.Ref[[]byte]{}, nil, nil
	_, _, _, _ = ref, big, got, b
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		runtime.GC()
		if n := storeObjects(ctx, t); n != 0 {
			return errorf("store still holds %d objects", n)
		}
		return nil
	})
	// Small values never touch the store.
	for i := 0; i < 100; i++ {
		if _, err := sdk.Put(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if n := storeObjects(ctx, t); n != 0 {
		t.Fatalf("small puts went to the store: %d objects", n)
	}
}

func storeObjects(ctx context.Context, t *testing.T) int {
	t.Helper()
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return int(st.Nodes[0].StoreObjects)
}

func TestProtobufValuesTravelAsProtobuf(t *testing.T) {
	ctx := startCluster(t)
	in, err := structpb.NewStruct(map[string]any{"CPU": 2, "TPU": 0.5, "name": "gpu-pool"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Scale.Remote(ctx, in, 2).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f := out.GetFields(); f["CPU"].GetNumberValue() != 4 || f["TPU"].GetNumberValue() != 1 || f["name"].GetStringValue() != "gpu-pool" {
		t.Fatalf("Scale = %v", out)
	}
	ref, err := sdk.Put(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ref.Get(ctx)
	if err != nil || !proto.Equal(back, in) {
		t.Fatalf("Get(put proto) = %v, %v", back, err)
	}
}

// TestPutChurnFreesStore puts far more than the store holds, dropping each
// ref: objects are freed as their refs are collected, so every put fits.
func TestPutChurnFreesStore(t *testing.T) {
	ctx := startCluster(t, sdk.ObjectStoreMemory(32<<20))
	data := make([]byte, 1<<20)
	for i := 0; i < 1000; i++ {
		data[0] = byte(i)
		ref, err := sdk.Put(ctx, data)
		if err != nil {
			t.Fatalf("put %d (1 GiB through a 32 MiB store): %v", i, err)
		}
		if i%100 == 0 {
			b, err := ref.Get(ctx)
			if err != nil || b[0] != byte(i) {
				t.Fatalf("get %d: %v", i, err)
			}
		}
	}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		runtime.GC()
		if n := storeObjects(ctx, t); n != 0 {
			return errorf("store still holds %d objects", n)
		}
		return nil
	})
	// A value larger than the whole store fails clearly, naming sizes, and
	// leaves what is stored intact.
	keep, err := sdk.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sdk.Put(ctx, make([]byte, 40<<20))
	if !errors.Is(err, sdk.ErrObjectStoreFull) || !strings.Contains(err.Error(), "41943040") {
		t.Fatalf("oversized put: %v", err)
	}
	if b, err := keep.Get(ctx); err != nil || len(b) != len(data) {
		t.Fatalf("stored object after a failed put: %v", err)
	}
}
