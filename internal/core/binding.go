package core

import (
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// nodeBinding is what ties a process to its node: the node's id, the
// process's address (which names the node), its raylet connection and the
// node's object store. It is replaced whole, never changed in place once
// published, so hot paths read it with one atomic load (Worker.node).
type nodeBinding struct {
	id     protos.NodeID
	addr   *protos.Address
	raylet *wire.Conn
	store  storeClient
	seg    *objstore.Segment
	// replaced is closed when another binding takes this one's place (a
	// driver rebinding to its restarted node's raylet).
	replaced chan struct{}
}

// node returns the process's current binding.
func (cw *Worker) node() *nodeBinding { return cw.bind.Load() }

// setup changes the binding while the process starts, before it serves
// anything: a copy is changed and published.
func (cw *Worker) setup(change func(*nodeBinding)) {
	b := &nodeBinding{replaced: make(chan struct{})}
	if old := cw.bind.Load(); old != nil {
		*b = *old
	}
	change(b)
	cw.bind.Store(b)
}

// setNode records the node's id, in the binding and in the process's
// address.
func (b *nodeBinding) setNode(id protos.NodeID) {
	b.id = id
	if b.addr != nil {
		a := proto.CloneOf(b.addr)
		a.NodeId = id.Bytes()
		b.addr = a
	}
}
