package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"

	"github.com/goray/goray/sdk"
)

// Remote functions and actors of the chaos workload, registered at package
// init so that the driver and its workers (which re-run this binary) build
// the same tables. Every result is a pure function of the arguments, so the
// driver can compute what each task must return, however often it ran.

// blobSize is above the 100 KiB inline limit: blobs live in the nodes'
// shared memory and travel between nodes as objects.
const blobSize = 150 << 10

// chainLen is the number of dependent small tasks in a unit's chain.
const chainLen = 5

// mix is splitmix64's finaliser: a cheap bijection whose output changes
// completely when any input bit does, so a wrong or stale argument shows.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func stepValue(prev, k uint64) uint64 { return mix(prev ^ mix(k)) }

// blobBytes is MakeBlob's result for seed.
func blobBytes(seed uint64, size int) []byte {
	b := make([]byte, size)
	x := seed
	for i := 0; i+8 <= size; i += 8 {
		x = mix(x)
		for j := 0; j < 8; j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	return b
}

// blobStepBytes is BlobStep's result.
func blobStepBytes(in []byte, k uint64) []byte {
	out := make([]byte, len(in))
	for i, c := range in {
		out[i] = c ^ byte(k+uint64(i)*31)
	}
	return out
}

func checksum(parts ...[]byte) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum64()
}

var (
	stepFn = sdk.Register2("chaos.Step", func(ctx context.Context, prev, k uint64) (uint64, error) {
		return stepValue(prev, k), nil
	})
	makeBlobFn = sdk.Register2("chaos.MakeBlob", func(ctx context.Context, seed uint64, size int) ([]byte, error) {
		return blobBytes(seed, size), nil
	})
	blobStepFn = sdk.Register2("chaos.BlobStep", func(ctx context.Context, in []byte, k uint64) ([]byte, error) {
		if len(in) != blobSize {
			return nil, fmt.Errorf("BlobStep got %d bytes, want %d", len(in), blobSize)
		}
		return blobStepBytes(in, k), nil
	})
	combineFn = sdk.Register2("chaos.Combine", func(ctx context.Context, a, b []byte) (uint64, error) {
		return checksum(a, b), nil
	})
)

// counter counts the Inc calls its incarnation has run. A restart starts a
// new incarnation at zero, so the driver can tell a reset (new
// incarnation, count 1) from a lost or repeated call (same incarnation, a
// count that is not the previous one plus one).
type counter struct {
	incarnation string
	n           int64
}

// IncReply is what Inc returns; Seq echoes the caller's sequence number.
type IncReply struct {
	Incarnation string
	Count       int64
	Seq         int64
}

func (c *counter) Inc(ctx context.Context, seq int64) (IncReply, error) {
	c.n++
	return IncReply{Incarnation: c.incarnation, Count: c.n, Seq: seq}, nil
}

// Ping is idempotent: what the head-restart probe calls, so that it does not
// disturb the Inc sequence of the service's caller loop.
func (c *counter) Ping(ctx context.Context, x int64) (int64, error) { return x + 1, nil }

var (
	counterClass = sdk.RegisterActor0("chaos.Counter", func(ctx context.Context) (*counter, error) {
		return &counter{incarnation: fmt.Sprintf("pid %d #%x", os.Getpid(), rand.Uint32())}, nil
	})
	incMethod  = sdk.NewMethod1(counterClass, "Inc", (*counter).Inc)
	pingMethod = sdk.NewMethod1(counterClass, "Ping", (*counter).Ping)
)
