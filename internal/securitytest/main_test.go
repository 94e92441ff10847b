// Package securitytest holds the end-to-end security tests that need
// goray's internals: they speak its wire protocol to a real cluster's
// processes and read the GCS's records. The test binary doubles as the
// worker, as in tests/: TestMain hands over to sdk.WorkerMain when goray
// started this process as one. The helpers are copies of tests/' own.
package securitytest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/sdk"
)

func TestMain(m *testing.M) {
	sdk.WorkerMain()
	code := m.Run()
	if gorayDir != "" {
		_ = os.RemoveAll(gorayDir)
	}
	os.Exit(code)
}

// Functions the tests call remotely, registered in driver and workers.
var (
	Add = sdk.Register2("securitytest.Add", func(ctx context.Context, a, b int) (int, error) { return a + b, nil })

	Pid = sdk.Register1("securitytest.Pid", func(ctx context.Context, d time.Duration) (int, error) {
		time.Sleep(d)
		return os.Getpid(), nil
	})

	// Getenv returns a worker's environment variable.
	Getenv = sdk.Register1("securitytest.Getenv", func(ctx context.Context, name string) (string, error) {
		return os.Getenv(name), nil
	})
)

// --- An embedded cluster (sdk.Init) for one test ---

// startCluster starts an embedded cluster for one test and shuts it down
// (checking that nothing is left behind) when the test ends.
func startCluster(t *testing.T, opts ...sdk.InitOption) context.Context {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	all := append([]sdk.InitOption{sdk.SessionDir(dir), sdk.ObjectStoreMemory(256 << 20)}, opts...)
	if err := sdk.Init(ctx, all...); err != nil {
		cancel()
		t.Fatalf("Init: %v", err)
	}
	st, err := sdk.ClusterStatus(ctx)
	if err != nil || len(st.Nodes) != 1 {
		cancel()
		sdk.Shutdown()
		t.Fatalf("ClusterStatus: %v, %v", st, err)
	}
	segment := fmt.Sprintf("/dev/shm/goray-%d-%s", os.Getpid(), st.Nodes[0].ID.String()[:8])
	t.Cleanup(func() {
		cancel()
		sdk.Shutdown()
		checkNoLeftovers(t, dir, segment)
	})
	return ctx
}

// checkNoLeftovers verifies that a session left no shm segment, socket or
// worker process behind.
func checkNoLeftovers(t *testing.T, sessionDir, segment string) {
	t.Helper()
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if _, err := os.Stat(segment); err == nil {
			return fmt.Errorf("shm segment %s left behind", segment)
		}
		socks, _ := filepath.Glob(filepath.Join(sessionDir, "sockets", "*"))
		if len(socks) > 0 {
			return fmt.Errorf("sockets left behind: %v", socks)
		}
		if pids := workerPIDs(sessionDir); len(pids) > 0 {
			return fmt.Errorf("worker processes left behind: %v", pids)
		}
		var spilled []string
		_ = filepath.WalkDir(filepath.Join(sessionDir, "spill"), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				spilled = append(spilled, path)
			}
			return nil
		})
		if len(spilled) > 0 {
			return fmt.Errorf("spill files left behind: %v", spilled)
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
			pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			if err == nil && processAlive(pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
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

// --- A `goray start` cluster with this process as its driver ---

var (
	gorayOnce sync.Once
	gorayBin  string
	gorayErr  error
	gorayDir  string
)

// sharedGoray builds cmd/goray once per test binary run (TestMain removes
// it).
func sharedGoray(t *testing.T) string {
	t.Helper()
	gorayOnce.Do(func() {
		gorayDir, gorayErr = os.MkdirTemp("", "goray-bin-")
		if gorayErr != nil {
			return
		}
		gorayBin = filepath.Join(gorayDir, "goray")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", gorayBin, "github.com/goray/goray/cmd/goray").CombinedOutput()
		if err != nil {
			gorayErr = fmt.Errorf("go build cmd/goray: %v\n%s", err, out)
		}
	})
	if gorayErr != nil {
		t.Fatal(gorayErr)
	}
	return gorayBin
}

// cliEnv is this process's environment without goray settings, with
// TMPDIR set so the current-cluster file is the test's own.
func cliEnv(tmpdir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		// TLS settings pass: `make test-tls` runs every test with them.
		if (strings.HasPrefix(kv, "GORAY_") && !strings.HasPrefix(kv, "GORAY_TLS_")) || strings.HasPrefix(kv, "TMPDIR=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "TMPDIR="+tmpdir)
}

// tlsFromEnv is the TLS of GORAY_TLS_* (make test-tls), or nil.
func tlsFromEnv(t *testing.T) *auth.TLS {
	t.Helper()
	tl, err := auth.TLSFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

type mnNode struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *strings.Builder
	mu   *sync.Mutex
}

type testCluster struct {
	t    *testing.T
	bin  string
	env  []string
	root string
	addr string
	head *mnNode
}

// startMultiNode starts a head (a `goray start --head --block` process)
// with headArgs, then connects this process as the driver. Cleanup stops
// it and checks that nothing is left behind.
func startMultiNode(t *testing.T, headArgs []string) (context.Context, *testCluster) {
	t.Helper()
	c := &testCluster{t: t, bin: sharedGoray(t), root: t.TempDir()}
	c.env = cliEnv(c.root)
	t.Cleanup(c.stop)
	args := append([]string{"start", "--head", "--block", "--port", "0", "--node-timeout", "2s", "--object-store-memory", "512MiB"}, headArgs...)
	var line string
	c.head, line = c.spawn("head", args, "goray head node running at ")
	c.addr = strings.Fields(line)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	if err := sdk.Init(ctx, sdk.Address(c.addr), sdk.LogToDriver(false), sdk.AuthTokenFile(filepath.Join(c.head.dir, auth.TokenFileName))); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(sdk.Shutdown)
	return ctx, c
}

// spawn runs goray with args and waits for the stdout line starting with
// ready; it returns the rest of that line.
func (c *testCluster) spawn(name string, args []string, ready string) (*mnNode, string) {
	c.t.Helper()
	dir := filepath.Join(c.root, name)
	n := &mnNode{dir: dir, done: make(chan struct{}), log: &strings.Builder{}, mu: &sync.Mutex{}}
	n.cmd = exec.Command(c.bin, append(args, "--session-dir", dir)...)
	n.cmd.Env = c.env
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	n.cmd.Stderr = lockedWriter{n.mu, n.log}
	if err := n.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			l := sc.Text()
			n.mu.Lock()
			n.log.WriteString(l + "\n")
			n.mu.Unlock()
			if !sent && strings.HasPrefix(l, ready) {
				line <- strings.TrimPrefix(l, ready)
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = n.cmd.Wait()
		close(n.done)
	}()
	select {
	case l := <-line:
		return n, l
	case <-n.done:
		c.t.Fatalf("%s exited before it was up:\n%s", name, n.output())
	case <-time.After(time.Minute):
		c.t.Fatalf("%s not up after a minute:\n%s", name, n.output())
	}
	return nil, ""
}

func (n *mnNode) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// stop ends the head (SIGTERM: it leaves cleanly) and checks it left
// nothing behind.
func (c *testCluster) stop() {
	sdk.Shutdown()
	n := c.head
	if n == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		c.t.Errorf("node in %s did not stop within 30s of SIGTERM:\n%s", n.dir, n.output())
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	if segs, _ := filepath.Glob(fmt.Sprintf("/dev/shm/goray-%d-*", n.cmd.Process.Pid)); len(segs) > 0 {
		c.t.Errorf("node in %s left shm segments %v", n.dir, segs)
	}
	checkFor(c.t, 10*time.Second, 20*time.Millisecond, func() error {
		if pids := workerPIDs(n.dir); len(pids) > 0 {
			return fmt.Errorf("worker processes of %s left behind: %v", n.dir, pids)
		}
		if socks, _ := filepath.Glob(filepath.Join(n.dir, "sockets", "*")); len(socks) > 0 {
			return fmt.Errorf("sockets left behind: %v", socks)
		}
		return nil
	})
	if c.t.Failed() {
		c.t.Logf("output of %s:\n%s", n.dir, n.output())
	}
}
