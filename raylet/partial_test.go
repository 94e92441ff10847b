package raylet

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/protos"
)

// A process that created an object and went away before sealing it (a
// worker killed while storing its result) leaves no partial object behind:
// one would keep the task's retried result, made on another node, from
// being pulled to this one ("object already exists"). Its sealed objects
// stay.
func TestUnsealedObjectsOfAClosedConnectionAreDeleted(t *testing.T) {
	r, err := New(shmConfig(t, "", 16<<20, zerolog.Nop()))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Shutdown)
	c := dialRaylet(t, r)
	ctx := t.Context()
	partial := protos.ObjectIDFor(protos.TaskID{7}, 1)
	sealed := protos.ObjectIDFor(protos.TaskID{7}, 2)
	for _, id := range []protos.ObjectID{partial, sealed} {
		if err := c.Call(ctx, protos.Method_CREATE_OBJECT, &protos.CreateObjectRequest{ObjectId: id.Bytes(), Size: 1 << 20}, &protos.CreateObjectReply{}); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
	}
	if err := c.Call(ctx, protos.Method_SEAL_OBJECT, &protos.SealObjectRequest{ObjectId: sealed.Bytes()}, &protos.SealObjectReply{}); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for r.store.Contains(partial) {
		if time.Now().After(deadline) {
			t.Fatal("the unsealed object of a closed connection is still in the store after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, _, ok := r.store.Get(sealed); !ok {
		t.Fatal("the sealed object went with its creator's connection")
	}
	// The id can be created again: a pull of the object would succeed.
	c2 := dialRaylet(t, r)
	if err := c2.Call(ctx, protos.Method_CREATE_OBJECT, &protos.CreateObjectRequest{ObjectId: partial.Bytes(), Size: 1 << 20}, &protos.CreateObjectReply{}); err != nil {
		t.Fatalf("create again after the creator left: %v", err)
	}
}
