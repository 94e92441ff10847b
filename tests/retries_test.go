package tests

import (
	"errors"
	"syscall"
	"testing"

	"github.com/goray/goray/sdk"
)

// A worker that dies costs a retry only to the task it was running: the
// tasks pipelined behind it never started, so they go back to the queue
// uncharged (Ray counts attempts that ran). With MaxRetries(0), killing a
// worker in the middle of thousands of short tasks fails one task at most.
func TestWorkerDeathChargesOnlyTheRunningTask(t *testing.T) {
	ctx := startCluster(t)
	// Short tasks are pipelined to a leased worker once the submitter
	// has seen that they are short.
	warm := make([]sdk.Ref[int], 300)
	for i := range warm {
		warm[i] = Pid.Remote(ctx, 0)
	}
	if _, err := sdk.GetAll(ctx, warm); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	refs := make([]sdk.Ref[int], n)
	for i := range refs {
		refs[i] = Pid.Options(sdk.MaxRetries(0)).Remote(ctx, 0)
	}
	victim, err := refs[0].Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, r := range refs {
		if _, err := r.Get(ctx); err != nil {
			if !errors.Is(err, sdk.ErrWorkerCrashed) {
				t.Fatalf("want ErrWorkerCrashed, got %v", err)
			}
			failed++
		}
	}
	if failed > 1 {
		t.Fatalf("%d of %d tasks failed after one worker was killed; only the one it was running may", failed, n)
	}

	// With MaxRetries(-1) none fails, however many workers die under it.
	for i := range refs {
		refs[i] = Pid.Options(sdk.MaxRetries(-1)).Remote(ctx, 0)
	}
	for kill := 0; kill < 3; kill++ {
		victim, err := refs[kill*n/3].Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = syscall.Kill(victim, syscall.SIGKILL)
	}
	for i, r := range refs {
		if _, err := r.Get(ctx); err != nil {
			t.Fatalf("task %d with MaxRetries(-1): %v", i, err)
		}
	}
}

// MaxRetries(-1) never runs out, however often the worker dies.
func TestInfiniteRetries(t *testing.T) {
	ctx := startCluster(t)
	v, err := CrashUntil.Options(sdk.MaxRetries(-1)).Remote(ctx, 6).Get(ctx)
	if err != nil || v != 6 {
		t.Fatalf("CrashUntil(6) with MaxRetries(-1) = %v, %v; want success on attempt 6", v, err)
	}
}
