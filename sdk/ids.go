package sdk

import (
	"encoding/hex"
	"fmt"
)

// Ids name the cluster's entities. They print as lowercase hex, and are
// comparable, so they work as map keys.
type (
	// ObjectID names an object: the task that returns it (or the process
	// that put it) and an index.
	ObjectID [20]byte
	// TaskID names a task or an actor call.
	TaskID [16]byte
	// NodeID names a node of the cluster.
	NodeID [16]byte
	// JobID names a job (one driver program run).
	JobID [16]byte
	// WorkerID names a driver or worker process.
	WorkerID [16]byte
	// ActorID names an actor.
	ActorID [16]byte
	// PlacementGroupID names a placement group.
	PlacementGroupID [16]byte
)

// String returns the id in hex.
func (id ObjectID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is unset.
func (id ObjectID) IsZero() bool { return id == ObjectID{} }

// TaskID returns the task that created the object.
func (id ObjectID) TaskID() TaskID { return TaskID(id[:16]) }

// String returns the id in hex.
func (id TaskID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is unset.
func (id TaskID) IsZero() bool { return id == TaskID{} }

// String returns the id in hex.
func (id NodeID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is unset.
func (id NodeID) IsZero() bool { return id == NodeID{} }

// String returns the id in hex.
func (id JobID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is unset.
func (id JobID) IsZero() bool { return id == JobID{} }

// String returns the id in hex.
func (id WorkerID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is unset.
func (id WorkerID) IsZero() bool { return id == WorkerID{} }

// String returns the id in hex.
func (id ActorID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is unset.
func (id ActorID) IsZero() bool { return id == ActorID{} }

// String returns the id in hex.
func (id PlacementGroupID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is unset.
func (id PlacementGroupID) IsZero() bool { return id == PlacementGroupID{} }

// ParseNodeID parses a node id from its hex form.
func ParseNodeID(s string) (NodeID, error) {
	var id NodeID
	return id, parseHex(s, id[:])
}

func parseHex(s string, dst []byte) error {
	b, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("%w: id %q: %v", ErrArgument, s, err)
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%w: id %q: %d bytes, want %d", ErrArgument, s, len(b), len(dst))
	}
	copy(dst, b)
	return nil
}
