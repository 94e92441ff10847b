// Package tests holds goray's end-to-end tests. They start real clusters
// (embedded NATS, GCS actors, raylet, shared memory) and real worker
// processes: the test binary doubles as the worker, so TestMain hands over
// to sdk.WorkerMain when goray started this process as one.
package tests

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/goraytest"
	"github.com/goray/goray/sdk"
)

func TestMain(m *testing.M) {
	goraytest.Serve()
	if os.Getenv(envRuntimeEnvDriver) != "" {
		os.Exit(runtimeEnvDriver())
	}
	if os.Getenv(envJobDriver) != "" {
		os.Exit(jobDriver())
	}
	code := m.Run()
	if gorayDir != "" {
		_ = os.RemoveAll(gorayDir)
	}
	os.Exit(code)
}

// startCluster starts an embedded cluster for one test and shuts it down
// (checking that nothing is left behind) when the test ends.
func startCluster(t *testing.T, opts ...sdk.InitOption) context.Context {
	t.Helper()
	return startClusterIn(t, t.TempDir(), opts...)
}

// startClusterIn is startCluster with the session in dir.
func startClusterIn(t *testing.T, dir string, opts ...sdk.InitOption) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	all := append([]sdk.InitOption{sdk.SessionDir(dir), sdk.ObjectStoreMemory(256 << 20)}, opts...)
	if err := sdk.Init(ctx, all...); err != nil {
		t.Fatalf("Init: %v", err)
	}
	st, err := sdk.ClusterStatus(ctx)
	if err != nil || len(st.Nodes) != 1 {
		t.Fatalf("ClusterStatus: %v, %v", st, err)
	}
	segment := storePath(os.Getpid(), st.Nodes[0].ID)
	if _, err := os.Stat(segment); err != nil {
		t.Fatalf("the node's shm segment: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		sdk.Shutdown()
		checkNoLeftovers(t, dir, segment)
	})
	return ctx
}

// storePath is the shm segment of the node id whose raylet runs in
// process pid (goray names it /dev/shm/goray-<pid>-<short node id>).
func storePath(pid int, id sdk.NodeID) string {
	return fmt.Sprintf("/dev/shm/goray-%d-%s", pid, id.String()[:8])
}

// checkNoLeftovers verifies that a session left no shm segment, socket or
// worker process behind.
func checkNoLeftovers(t *testing.T, sessionDir, segment string) {
	t.Helper()
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if _, err := os.Stat(segment); err == nil {
			return errorf("shm segment %s left behind", segment)
		}
		socks, _ := filepath.Glob(filepath.Join(sessionDir, "sockets", "*"))
		if len(socks) > 0 {
			return errorf("sockets left behind: %v", socks)
		}
		if pids := workerPIDs(sessionDir); len(pids) > 0 {
			return errorf("worker processes left behind: %v", pids)
		}
		if files := spillFiles(sessionDir); len(files) > 0 {
			return errorf("spill files left behind: %v", files)
		}
		return nil
	})
}

// workerPIDs lists live processes whose environment names the session.
func workerPIDs(sessionDir string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.Contains(string(b), "GORAY_SESSION_DIR="+sessionDir+"\x00") {
			var pid int
			if _, err := fmtSscan(filepath.Base(filepath.Dir(p)), &pid); err == nil && processAlive(pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// A zombie (state Z) has exited.
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] != "Z" && syscall.Kill(pid, 0) == nil
}

// checkFor polls cond until it returns nil or timeout passes.
func checkFor(t *testing.T, timeout, interval time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(interval)
	}
	t.Fatalf("condition not met after %v: %v", timeout, err)
}

// spillFiles lists the files under the session's spill directory.
func spillFiles(sessionDir string) []string {
	var out []string
	_ = filepath.WalkDir(filepath.Join(sessionDir, "spill"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, path)
		}
		return nil
	})
	return out
}
