package tests

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

func TestWorkerPoolReusesAndCaps(t *testing.T) {
	ctx := startCluster(t, sdk.NodeCPUs(4), sdk.MaxWorkers(2))
	pids := map[int]bool{}
	for i := 0; i < 50; i++ {
		pid, err := Pid.Remote(ctx, 0).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pids[pid] = true
	}
	// Four CPUs' worth of concurrent tasks, but at most two processes.
	refs := make([]sdk.Ref[int], 8)
	for i := range refs {
		refs[i] = Pid.Remote(ctx, 100*time.Millisecond)
	}
	vals, err := sdk.GetAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range vals {
		pids[p] = true
	}
	if len(pids) > 2 {
		t.Fatalf("tasks ran in %d worker processes, cap is 2: %v", len(pids), pids)
	}
	// A dead worker is reaped and replaced.
	if _, err := CrashUntil.Options(sdk.MaxRetries(0)).Remote(ctx, 1).Get(ctx); !errors.Is(err, sdk.ErrWorkerCrashed) {
		t.Fatalf("crash: %v", err)
	}
	if v, err := Add.Remote(ctx, 1, 1).Get(ctx); err != nil || v != 2 {
		t.Fatalf("after a crash: %v, %v", v, err)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		st, err := sdk.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		if n := st.Nodes[0].Workers; n > 2 {
			return errorf("%d workers alive", n)
		}
		return nil
	})
}

// lockedBuffer is a bytes.Buffer safe for the log printer's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestWorkerOutputReachesDriver(t *testing.T) {
	var out lockedBuffer
	ctx := startCluster(t, sdk.LogWriter(&out))
	if _, err := Echo.Remote(ctx, "hello from a worker").Get(ctx); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		s := out.String()
		if !strings.Contains(s, "(tests.Echo pid=") || !strings.Contains(s, "echo: hello from a worker") || !strings.Contains(s, "echo-err: hello from a worker") {
			return errorf("driver saw %q", s)
		}
		return nil
	})
}

// TestBinaryMismatch runs a driver whose function table differs from its
// workers': tasks fail with ErrBinaryMismatch, naming the digests.
func TestBinaryMismatch(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBinaryMismatchDriver$", "-test.v")
	cmd.Env = append(os.Environ(), "GORAY_TEST_DRIVER_ONLY=1", "GORAY_TEST_MISMATCH_DRIVER=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "MISMATCH-OK") {
		t.Fatalf("driver failed: %v\n%s", err, out)
	}
}

func TestBinaryMismatchDriver(t *testing.T) {
	if os.Getenv("GORAY_TEST_MISMATCH_DRIVER") != "1" {
		t.Skip("run by TestBinaryMismatch")
	}
	ctx := startCluster(t)
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err := Add.Remote(c, 1, 2).Get(c)
	if !errors.Is(err, sdk.ErrBinaryMismatch) || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("want ErrBinaryMismatch, got %v", err)
	}
	t.Logf("MISMATCH-OK: %v", err)
}
