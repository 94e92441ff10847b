package tests

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

func TestCancel(t *testing.T) {
	ctx := startCluster(t, sdk.NodeCPUs(2))

	// A running task is interrupted through its context.
	running := Sleep.Remote(ctx, time.Minute)
	waitRunning(t, ctx, 1)
	if err := sdk.Cancel(ctx, running); err != nil {
		t.Fatal(err)
	}
	if _, err := running.Get(ctx, sdk.Timeout(20*time.Second)); !errors.Is(err, sdk.ErrTaskCancelled) {
		t.Fatalf("cancelled running task: %v", err)
	}

	// Force kills a task that ignores its context.
	stubborn := SleepIgnoringCancel.Remote(ctx, time.Minute)
	waitRunning(t, ctx, 1)
	if err := sdk.Cancel(ctx, stubborn, sdk.Force()); err != nil {
		t.Fatal(err)
	}
	if _, err := stubborn.Get(ctx, sdk.Timeout(20*time.Second)); !errors.Is(err, sdk.ErrTaskCancelled) {
		t.Fatalf("force-cancelled task: %v", err)
	}

	// A queued task never runs; tasks depending on a cancelled one fail;
	// independent tasks are untouched.
	blockers := []sdk.Ref[string]{SleepIgnoringCancel.Remote(ctx, 3*time.Second), SleepIgnoringCancel.Remote(ctx, 3*time.Second)}
	queued := Upper.Remote(ctx, "never")
	dependent := Upper.RemoteArgs(ctx, queued)
	if err := sdk.Cancel(ctx, queued); err != nil {
		t.Fatal(err)
	}
	if _, err := queued.Get(ctx, sdk.Timeout(time.Second)); !errors.Is(err, sdk.ErrTaskCancelled) {
		t.Fatalf("cancelled queued task: %v", err)
	}
	if _, err := dependent.Get(ctx, sdk.Timeout(20*time.Second)); !errors.Is(err, sdk.ErrTaskCancelled) {
		t.Fatalf("dependent of a cancelled task: %v", err)
	}
	if v, err := Add.Remote(ctx, 2, 3).Get(ctx, sdk.Timeout(30*time.Second)); err != nil || v != 5 {
		t.Fatalf("independent task: %v, %v", v, err)
	}
	if _, err := sdk.GetAll(ctx, blockers); err != nil {
		t.Fatal(err)
	}

	// Recursive: the children a task submitted are cancelled with it, and
	// every resource comes back.
	parent := SpawnSleepers.Remote(ctx, 3, time.Minute)
	waitRunning(t, ctx, 1)
	if err := sdk.Cancel(ctx, parent); err != nil {
		t.Fatal(err)
	}
	if _, err := parent.Get(ctx, sdk.Timeout(20*time.Second)); !errors.Is(err, sdk.ErrTaskCancelled) {
		t.Fatalf("cancelled parent: %v", err)
	}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		st, err := sdk.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		n := st.Nodes[0]
		if avail, total := n.Available["CPU"], n.Total["CPU"]; avail != total {
			return errorf("CPU available %v of %v", avail, total)
		}
		return nil
	})

	// Only the owner can cancel; a nil ref is an error.
	if err := sdk.Cancel(ctx, sdk.ObjectRef{}); !errors.Is(err, sdk.ErrArgument) {
		t.Fatalf("Cancel(nil): %v", err)
	}
}

// waitRunning waits until at least n CPUs are in use on the node.
func waitRunning(t *testing.T, ctx context.Context, n float64) {
	t.Helper()
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		st, err := sdk.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		node := st.Nodes[0]
		used := node.Total["CPU"] - node.Available["CPU"]
		if used < n {
			return errorf("%v CPUs in use, want %v", used, n)
		}
		return nil
	})
}
