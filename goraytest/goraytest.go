package goraytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// DefaultObjectStoreMemory is the object store of a test node unless the
// test asks for another size: big enough for test data, and far from the
// 30% of RAM a real node takes, which several nodes on one machine would
// overcommit.
const DefaultObjectStoreMemory = 128 << 20

// Main is what a test binary that uses goray calls from TestMain. In a
// process goray started as a worker it runs the worker and exits; in a
// process NewCluster started as a node daemon it runs the node until it is
// stopped and exits; otherwise it runs the tests and exits with their
// status.
func Main(m *testing.M) {
	Serve()
	os.Exit(m.Run())
}

// Serve is Main for a TestMain that does more around m.Run: in a worker or
// node daemon process it runs that and exits; otherwise it returns.
func Serve() {
	// A node's workers inherit its environment, so the worker check comes
	// first: they are workers, not daemons.
	sdk.WorkerMain()
	if cfg, ok := os.LookupEnv(envNode); ok {
		_ = os.Unsetenv(envNode)
		os.Exit(runDaemon(cfg))
	}
}

// Start starts an embedded single-node cluster (sdk.Init without an
// address) for the test and makes the test process its driver. The
// session directory is temporary, worker output is not streamed to the
// test's output (pass sdk.LogToDriver(true) to see it), and the object
// store is DefaultObjectStoreMemory; opts add to or override these. The
// test's cleanup shuts the cluster down. The context returned ends a
// little before the test's deadline, so that a call that hangs fails the
// test instead of the whole test binary timing out.
func Start(t testing.TB, opts ...sdk.InitOption) context.Context {
	t.Helper()
	// An address in the environment would make sdk.Init join that cluster
	// instead of starting the test's own.
	if os.Getenv(sdk.EnvAddress) != "" {
		t.Setenv(sdk.EnvAddress, "")
	}
	dir := sessionDir(t)
	ctx := testContext(t)
	all := append([]sdk.InitOption{sdk.SessionDir(dir), sdk.LogToDriver(false), sdk.ObjectStoreMemory(DefaultObjectStoreMemory)}, opts...)
	if err := sdk.Init(ctx, all...); err != nil {
		t.Fatalf("goraytest: start embedded cluster: %v", err)
	}
	t.Cleanup(func() {
		sdk.Shutdown()
		// The embedded raylet runs in this process, so its segment is
		// named after our pid.
		if segs := removeSegments(os.Getpid()); len(segs) > 0 {
			t.Errorf("goraytest: the embedded cluster left shm segments behind (removed them): %v", segs)
		}
		if err := waitNoWorkers(dir, workerGrace); err != nil {
			t.Errorf("goraytest: the embedded cluster: %v", err)
		}
	})
	return ctx
}

// workerGrace is how long workers may take to exit after their node
// stopped: they notice when the raylet's connection closes.
const workerGrace = 10 * time.Second

// testContext is canceled when the test ends, and shortly before its
// deadline (go test -timeout) if it has one.
func testContext(t testing.TB) context.Context {
	ctx := t.Context()
	d, ok := t.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return ctx
	}
	deadline, ok := d.Deadline()
	if !ok {
		return ctx
	}
	// Time to report the failure and clean up before the binary's own
	// timeout panics and leaves the node processes to their stdin.
	margin := min(max(time.Until(deadline)/10, time.Second), 30*time.Second)
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(-margin))
	t.Cleanup(cancel)
	return ctx
}

// maxSocketPath is what a unix socket path may hold (sun_path is 108
// bytes with its NUL); socketSuffix is the longest name goray puts under a
// session directory ("/sockets/raylet-0123abcd.sock"), with room to spare.
const (
	maxSocketPath = 107
	socketSuffix  = 40
)

// sessionDir returns a temporary directory short enough for the sockets
// goray makes in it: t.TempDir() when it is, else a new one under $TMPDIR
// or /tmp, removed when the test ends.
func sessionDir(t testing.TB) string {
	t.Helper()
	if dir := t.TempDir(); len(dir)+socketSuffix <= maxSocketPath {
		return dir
	}
	return shortTempDir(t)
}

// shortTempDir makes a directory with a short path (see sessionDir),
// removed when the test ends.
func shortTempDir(t testing.TB) string {
	t.Helper()
	parent := ""
	if len(os.TempDir())+len("/gt-1234567890/head")+socketSuffix > maxSocketPath {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "gt-")
	if err != nil {
		t.Fatalf("goraytest: session directory: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("goraytest: remove %s: %v", dir, err)
		}
	})
	return dir
}

// removeSegments removes the shm segments of the raylet that ran in
// process pid and returns their paths.
func removeSegments(pid int) []string {
	segs, _ := filepath.Glob(fmt.Sprintf("/dev/shm/goray-%d-*", pid))
	for _, s := range segs {
		_ = os.Remove(s)
	}
	return segs
}

// workerPIDs finds the worker processes of the node whose session
// directory is dir: goray starts each with GORAY_SESSION_DIR=dir.
func workerPIDs(dir string) []int {
	want := []byte("GORAY_SESSION_DIR=" + dir + "\x00")
	environs, _ := filepath.Glob("/proc/[0-9]*/environ")
	var pids []int
	for _, p := range environs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, want) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil && running(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// running reports whether pid is a live process (a zombie has exited).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may itself hold spaces.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// waitNoWorkers waits until the node in dir has no worker process left;
// after grace it kills those that are and says which they were.
func waitNoWorkers(dir string, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for {
		pids := workerPIDs(dir)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			return fmt.Errorf("worker processes %v of %s still ran %v after their node stopped (killed them)", pids, dir, grace)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
