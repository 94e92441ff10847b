package tests

import (
	"context"
	"time"

	"github.com/goray/goray/sdk"
)

// Functions of the multi-node tests: each tells where it ran.

var (
	NodeOf = sdk.Register0("tests.NodeOf", func(ctx context.Context) (string, error) {
		return sdk.GetRuntimeContext(ctx).NodeID.String(), nil
	})

	// Assigned returns the resources the task was granted.
	Assigned = sdk.Register0("tests.Assigned", func(ctx context.Context) (map[string]float64, error) {
		return sdk.GetRuntimeContext(ctx).Resources, nil
	})

	// SleepThenNode sleeps ms milliseconds, then says where it ran.
	SleepThenNode = sdk.Register1("tests.SleepThenNode", func(ctx context.Context, ms int) (string, error) {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return sdk.GetRuntimeContext(ctx).NodeID.String(), nil
	})

	// MakeBlob returns n bytes with a pattern BlobSum recognises.
	MakeBlob = sdk.Register1("tests.MakeBlob", func(ctx context.Context, n int) ([]byte, error) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + i>>13)
		}
		return b, nil
	})

	// Rewrap checks a blob and returns a copy of it: a result made from an
	// argument.
	Rewrap = sdk.Register1("tests.Rewrap", func(ctx context.Context, b []byte) ([]byte, error) {
		for i := range b {
			if b[i] != byte(i*7+i>>13) {
				return nil, errorf("byte %d of %d is %d, want %d", i, len(b), b[i], byte(i*7+i>>13))
			}
		}
		return append([]byte(nil), b...), nil
	})

	// BlobCheck verifies MakeBlob's pattern and says where it ran.
	BlobCheck = sdk.Register1("tests.BlobCheck", func(ctx context.Context, b []byte) (string, error) {
		for i := range b {
			if b[i] != byte(i*7+i>>13) {
				return "", errorf("byte %d of %d is %d, want %d", i, len(b), b[i], byte(i*7+i>>13))
			}
		}
		return sdk.GetRuntimeContext(ctx).NodeID.String(), nil
	})
)

// Locator is an actor that tells where it was placed.
type Locator struct{ node string }

func (l *Locator) Node(ctx context.Context) (string, error) { return l.node, nil }

var (
	LocatorActor = sdk.RegisterActor0("tests.Locator", func(ctx context.Context) (*Locator, error) {
		return &Locator{node: sdk.GetRuntimeContext(ctx).NodeID.String()}, nil
	})
	LocatorNode = sdk.NewMethod0(LocatorActor, "Node", (*Locator).Node)
)

// BlobKeeper owns a blob stored on another node (a task's return value).
type BlobKeeper struct{ blob sdk.Ref[[]byte] }

// Make has a task on node (soft affinity) make a 1 MiB blob and keeps the
// ref; it returns the blob's object id (hex).
func (k *BlobKeeper) Make(ctx context.Context, node string) (string, error) {
	id, err := sdk.ParseNodeID(node)
	if err != nil {
		return "", err
	}
	k.blob = MakeBlob.Options(sdk.Scheduling(sdk.NodeAffinity(id, true))).Remote(ctx, 1<<20)
	if _, _, err := sdk.Wait(ctx, []sdk.Ref[[]byte]{k.blob}, 1, sdk.FetchLocal(false)); err != nil {
		return "", err
	}
	return k.blob.ID().String(), nil
}

// Check gets the kept blob and verifies it; it returns its length.
func (k *BlobKeeper) Check(ctx context.Context) (int, error) {
	b, err := k.blob.Get(ctx)
	if err != nil {
		return 0, err
	}
	for i := range b {
		if b[i] != byte(i*7+i>>13) {
			return 0, errorf("byte %d of the kept blob is %d", i, b[i])
		}
	}
	return len(b), nil
}

var (
	BlobKeeperActor = sdk.RegisterActor0("tests.BlobKeeper", func(ctx context.Context) (*BlobKeeper, error) { return &BlobKeeper{}, nil })
	BlobKeeperMake  = sdk.NewMethod1(BlobKeeperActor, "Make", (*BlobKeeper).Make)
	BlobKeeperCheck = sdk.NewMethod0(BlobKeeperActor, "Check", (*BlobKeeper).Check)
)
