package protos

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// ID sizes. An ObjectID is the TaskID that made it plus a 4-byte index, as
// in Ray, so a task's returns can be named before it runs.
const (
	UniqueIDSize = 16
	ObjectIDSize = UniqueIDSize + 4
)

// UniqueID identifies jobs, tasks, workers, nodes and leases.
type UniqueID [UniqueIDSize]byte

// Typed ids keep one kind of id from being passed where another is wanted.
type (
	JobID    = UniqueID
	TaskID   = UniqueID
	WorkerID = UniqueID
	NodeID   = UniqueID
	LeaseID  = UniqueID
)

// ObjectID names an object: the task that returns it (or the put task of
// the process that put it) and an index.
type ObjectID [ObjectIDSize]byte

// NewUniqueID returns a random id.
func NewUniqueID() UniqueID {
	var id UniqueID
	if _, err := rand.Read(id[:]); err != nil {
		panic(fmt.Sprintf("goray: crypto/rand failed: %v", err))
	}
	return id
}

// UniqueIDFromBytes converts wire bytes to an id; short or long input is an error.
func UniqueIDFromBytes(b []byte) (UniqueID, error) {
	var id UniqueID
	if len(b) != UniqueIDSize {
		return id, fmt.Errorf("id has %d bytes, want %d", len(b), UniqueIDSize)
	}
	copy(id[:], b)
	return id, nil
}

// MustUniqueID is UniqueIDFromBytes for bytes that came from a UniqueID; a
// wrong length yields the zero id.
func MustUniqueID(b []byte) UniqueID {
	id, _ := UniqueIDFromBytes(b)
	return id
}

// UniqueIDFromHex parses the String form of an id.
func UniqueIDFromHex(s string) (UniqueID, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return UniqueID{}, fmt.Errorf("id %q: %w", s, err)
	}
	return UniqueIDFromBytes(b)
}

func (id UniqueID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex digits, for logs.
func (id UniqueID) Short() string { return hex.EncodeToString(id[:4]) }

func (id UniqueID) IsZero() bool { return id == UniqueID{} }

// Bytes returns a copy for a protobuf field.
func (id UniqueID) Bytes() []byte { b := id; return b[:] }

// ObjectIDFor names the index-th object of a task (returns are 1..n, puts
// use the put counter of the creating task).
func ObjectIDFor(task TaskID, index uint32) ObjectID {
	var id ObjectID
	copy(id[:], task[:])
	binary.BigEndian.PutUint32(id[UniqueIDSize:], index)
	return id
}

// ObjectIDFromBytes converts wire bytes to an object id.
func ObjectIDFromBytes(b []byte) (ObjectID, error) {
	var id ObjectID
	if len(b) != ObjectIDSize {
		return id, fmt.Errorf("object id has %d bytes, want %d", len(b), ObjectIDSize)
	}
	copy(id[:], b)
	return id, nil
}

// ObjectIDFromHex parses the String form of an object id.
func ObjectIDFromHex(s string) (ObjectID, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return ObjectID{}, fmt.Errorf("object id %q: %w", s, err)
	}
	return ObjectIDFromBytes(b)
}

// TaskID returns the task that made the object.
func (id ObjectID) TaskID() TaskID {
	var t TaskID
	copy(t[:], id[:UniqueIDSize])
	return t
}

// Index returns the object's index within its task.
func (id ObjectID) Index() uint32 { return binary.BigEndian.Uint32(id[UniqueIDSize:]) }

func (id ObjectID) String() string { return hex.EncodeToString(id[:]) }

func (id ObjectID) Bytes() []byte { b := id; return b[:] }

func (id ObjectID) IsZero() bool { return id == ObjectID{} }
