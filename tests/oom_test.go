package tests

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/internal/cluster"
	"github.com/goray/goray/raylet"
	"github.com/goray/goray/sdk"
)

// Hog allocates and touches memory, stepMiB at a time, up to maxMiB, and
// holds it: it is meant to be killed by the memory monitor before. With a
// gate directory it first waits until n hogs (itself included) have
// checked in there, so that n of them allocate at the same time.
var Hog = sdk.Register4("tests.Hog", func(ctx context.Context, stepMiB, maxMiB int, gate string, n int) (int, error) {
	if gate != "" {
		if err := os.WriteFile(filepath.Join(gate, strconv.Itoa(os.Getpid())), nil, 0o644); err != nil {
			return 0, err
		}
		for {
			entries, err := os.ReadDir(gate)
			if err != nil {
				return 0, err
			}
			if len(entries) >= n {
				break
			}
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	var held [][]byte
	for got := 0; got < maxMiB; got += stepMiB {
		b := make([]byte, stepMiB<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		held = append(held, b)
		// Grow at about 1 GiB/s, so the monitor sees the growth.
		time.Sleep(15 * time.Millisecond)
	}
	runtime.KeepAlive(held)
	return maxMiB, nil
})

// KernelHog moves its own process into the memory cgroup dir (cgroup
// v1), whose limit is limitMiB, and allocates past it: the kernel's OOM
// killer kills the worker.
var KernelHog = sdk.Register2("tests.KernelHog", func(ctx context.Context, dir string, limitMiB int) (int, error) {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return 0, err
	}
	var held [][]byte
	for got := 0; got < 4*limitMiB; got += 8 {
		b := make([]byte, 8<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		held = append(held, b)
	}
	runtime.KeepAlive(held)
	return 0, errors.New("allocated past the cgroup's limit and lived")
})

// oomHeadroom is how far above the node's memory use, as the test starts,
// it sets the memory monitor's threshold: enough that other processes of
// the machine do not cross it in the few seconds the test takes, small
// enough to be quick.
const oomHeadroom = 1 << 30

// TestMemoryMonitorKillsTasksNotActors runs tasks that allocate memory
// until killed, on a node whose memory monitor threshold is set 1 GiB
// above the memory the machine uses as the test starts. A lone task fails
// with ErrOutOfMemory naming the node's memory and the threshold (it is
// its caller's only task on the node, so retrying it would loop); of two
// that allocate at once, the newer is killed first and retried after a
// backoff, and both end with ErrOutOfMemory. A named actor on the node
// survives it all: the monitor kills actors only when no task is left.
func TestMemoryMonitorKillsTasksNotActors(t *testing.T) {
	u, err := raylet.ReadMemoryUsage()
	if err != nil {
		t.Skipf("cannot read the node's memory: %v", err)
	}
	threshold := float64(u.Used+oomHeadroom) / float64(u.Total)
	if threshold > 0.9 {
		t.Skipf("too little memory free for the test: %d of %d bytes used (%s)", u.Used, u.Total, u.Source)
	}
	t.Logf("memory: %d of %d bytes used (%s); threshold %.4f", u.Used, u.Total, u.Source, threshold)
	t.Setenv(cluster.EnvMemoryUsageThreshold, strconv.FormatFloat(threshold, 'f', 6, 64))
	t.Setenv(cluster.EnvMemoryMonitorInterval, "50ms")
	ctx := startCluster(t, sdk.MetricsAddress("127.0.0.1:0"))
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := st.Nodes[0].ID.String()[:8]

	survivor, err := CounterActor.Options(sdk.Name("oom-survivor")).Remote(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := CounterInc.Remote(ctx, survivor, 1).Get(ctx); err != nil || n != 11 {
		t.Fatalf("Inc = %d, %v; want 11", n, err)
	}
	actorPID, err := CounterPid.Remote(ctx, survivor).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// One task, with retries to spare: killed once, it fails.
	_, err = Hog.Options(sdk.MaxRetries(3)).Remote(ctx, 16, 8192, "", 0).Get(ctx)
	checkOOM(t, err, node)
	t.Logf("the lone task's error: %v", err)
	if !strings.Contains(err.Error(), "(attempt 1)") {
		t.Errorf("the lone task was retried: %v", err)
	}

	// Two at once: the newer is killed and retried, both end killed.
	gate := t.TempDir()
	a := Hog.Remote(ctx, 16, 8192, gate, 2)
	b := Hog.Remote(ctx, 16, 8192, gate, 2)
	_, errA := a.Get(ctx)
	_, errB := b.Get(ctx)
	checkOOM(t, errA, node)
	checkOOM(t, errB, node)
	t.Logf("two tasks' errors:\n%v\n%v", errA, errB)
	attempt := regexp.MustCompile(`\(attempt (\d+)\)`)
	retried := 0
	for _, err := range []error{errA, errB} {
		if m := attempt.FindStringSubmatch(err.Error()); m != nil && m[1] != "1" {
			retried++
		}
	}
	if retried == 0 {
		t.Errorf("neither of two tasks killed together was retried:\n%v\n%v", errA, errB)
	}

	// The actor lived through it, in the same process.
	if n, err := CounterInc.Remote(ctx, survivor, 1).Get(ctx); err != nil || n != 12 {
		t.Fatalf("Inc after the kills = %d, %v; want 12 (the actor kept its state)", n, err)
	}
	if pid, err := CounterPid.Remote(ctx, survivor).Get(ctx); err != nil || pid != actorPID {
		t.Fatalf("actor pid %d (%v), want %d: the actor was restarted", pid, err, actorPID)
	}
	if kills := scrapeCounter(t, sdk.MetricsURL(), "goray_node_memory_monitor_kills_total"); kills < 3 {
		t.Errorf("goray_node_memory_monitor_kills_total = %v, want at least 3", kills)
	}
}

// checkOOM wants err to be the memory monitor's ErrOutOfMemory, naming
// the node, its memory and the threshold.
func checkOOM(t *testing.T, err error, node string) {
	t.Helper()
	if !errors.Is(err, sdk.ErrOutOfMemory) || errors.Is(err, sdk.ErrWorkerCrashed) {
		t.Fatalf("want ErrOutOfMemory, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"out of memory running tests.Hog", "node " + node + " used ", "> threshold ", "the raylet's memory monitor killed worker pid"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q does not say %q", msg, want)
		}
	}
}

// scrapeCounter reads one sample of a metric from a metrics endpoint.
func scrapeCounter(t *testing.T, url, name string) float64 {
	t.Helper()
	v := scrapeSample(t, url, name, "")
	if v < 0 {
		t.Fatalf("no %s at %s", name, url)
	}
	return v
}

// TestKernelOOMKillIsReported puts a task's worker in a memory cgroup of
// its own with a small limit (cgroup v1, as root) and lets it allocate
// past it: the kernel's OOM killer kills it, and the caller gets
// ErrOutOfMemory saying so rather than ErrWorkerCrashed.
func TestKernelOOMKillIsReported(t *testing.T) {
	dir := ownMemoryCgroupV1(t)
	child := filepath.Join(dir, "goray-oom-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Skipf("cannot make a memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		// The cgroup empties once its killed worker is reaped.
		deadline := time.Now().Add(10 * time.Second)
		for os.Remove(child) != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	})
	const limitMiB = 64
	if err := os.WriteFile(filepath.Join(child, "memory.limit_in_bytes"), []byte(strconv.Itoa(limitMiB<<20)), 0o644); err != nil {
		t.Skipf("cannot limit a memory cgroup: %v", err)
	}
	ctx := startCluster(t, sdk.MetricsAddress("127.0.0.1:0"))
	_, err := KernelHog.Options(sdk.MaxRetries(0)).Remote(ctx, child, limitMiB).Get(ctx)
	if !errors.Is(err, sdk.ErrOutOfMemory) {
		t.Fatalf("want ErrOutOfMemory, got %v", err)
	}
	t.Logf("the task's error: %v", err)
	if !strings.Contains(err.Error(), "killed by the kernel's OOM killer") {
		t.Fatalf("error %q does not name the kernel's OOM killer", err)
	}
	if kills := scrapeCounter(t, sdk.MetricsURL(), "goray_node_kernel_oom_kills_total"); kills != 1 {
		t.Errorf("goray_node_kernel_oom_kills_total = %v, want 1", kills)
	}
}

// ownMemoryCgroupV1 is this process's cgroup v1 memory directory, or
// skips the test.
func ownMemoryCgroupV1(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && parts[1] == "memory" {
			dir := filepath.Join("/sys/fs/cgroup/memory", parts[2])
			if _, err := os.Stat(filepath.Join(dir, "memory.limit_in_bytes")); err != nil {
				t.Skipf("no cgroup v1 memory directory at %s", dir)
			}
			return dir
		}
	}
	t.Skip("no cgroup v1 memory controller")
	return ""
}
