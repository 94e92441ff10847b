package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// cliDriverEnv makes TestCLIDriverHelper act as a driver: "exit" runs its
// tasks and exits, "hold" then stays connected until stdin closes.
const cliDriverEnv = "GORAY_CLI_TEST_DRIVER"

// cliDriverMarker starts the line a driver prints with its results.
const cliDriverMarker = "CLI-DRIVER-OK"

// TestCLIDriverHelper is not a test on its own: TestCLIStartStatusStop runs
// the test binary again with only this test selected, as a driver program
// joining the cluster `goray start` runs (through GORAY_ADDRESS).
func TestCLIDriverHelper(t *testing.T) {
	mode := os.Getenv(cliDriverEnv)
	if mode == "" {
		t.Skip("runs only as a driver process started by TestCLIStartStatusStop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if os.Getenv(sdk.EnvAddress) == "" {
		t.Fatalf("%s is not set", sdk.EnvAddress)
	}
	if err := sdk.Init(ctx); err != nil {
		t.Fatalf("Init with %s=%s: %v", sdk.EnvAddress, os.Getenv(sdk.EnvAddress), err)
	}
	defer sdk.Shutdown()
	sum, err := Add.Remote(ctx, 1, 2).Get(ctx)
	if err != nil || sum != 3 {
		t.Fatalf("Add(1, 2) = %v, %v; want 3", sum, err)
	}
	info, err := Context.Remote(ctx).Get(ctx)
	if err != nil {
		t.Fatalf("Context: %v", err)
	}
	workerPID, err := strconv.Atoi(info["pid"])
	if err != nil || workerPID <= 0 || workerPID == os.Getpid() {
		t.Fatalf("task ran in pid %q (driver pid %d); want a worker process", info["pid"], os.Getpid())
	}
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatalf("ClusterStatus: %v", err)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].Total["CPU"] != 2 {
		t.Fatalf("ClusterStatus nodes = %v; want one node with CPU 2", st.Nodes)
	}
	if mode == "hold" {
		// Demands for goray status: a task holding both CPUs, one waiting
		// for them (pending) and one needing a GPU (infeasible). They
		// never finish: goray stop ends them.
		Sleep.Options(sdk.NumCPUs(2)).Remote(ctx, time.Hour)
		Sleep.Options(sdk.NumCPUs(2)).Remote(ctx, time.Hour)
		Sleep.Options(sdk.NumGPUs(1)).Remote(ctx, time.Hour)
	}
	fmt.Printf("%s sum=%d job=%s driver_pid=%d worker_pid=%d\n", cliDriverMarker, sum, info["job"], os.Getpid(), workerPID)
	if mode == "hold" {
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
}

// TestCLIStartStatusStop drives the goray command end to end: start a head
// daemon, run drivers against it, read goray status, then goray stop, and
// check that no process or shared memory of the cluster remains.
func TestCLIStartStatusStop(t *testing.T) {
	bin := buildGoray(t)
	tmp := t.TempDir() // TMPDIR of every subprocess: its own current_cluster file
	session := t.TempDir()
	env := cliEnv(tmp)
	addrFile := filepath.Join(tmp, "goray", "current_cluster")

	var (
		daemonPID int
		segment   string
		stopped   bool
		drivers   []*driverProc
	)
	t.Cleanup(func() {
		for _, d := range drivers {
			if d.wait(0) != nil {
				_ = d.cmd.Process.Kill()
			}
		}
		reapCluster(t, bin, env, session, stopped, daemonPID, segment)
	})

	// goray start: a daemon in its own session, recorded in the file.
	out, err := runGoray(bin, env, "start", "--head", "--num-cpus", "2", "--port", "0",
		"--session-dir", session, "--object-store-memory", "256MiB")
	if err != nil {
		t.Fatalf("goray start: %v\n%s", err, out)
	}
	t.Logf("goray start:\n%s", out)
	addr := field(out, "Address:")
	daemonPID, _ = strconv.Atoi(field(out, "Daemon pid:"))
	if !strings.HasPrefix(addr, "nats://127.0.0.1:") || daemonPID <= 0 {
		t.Fatalf("goray start printed no address or daemon pid:\n%s", out)
	}
	if !strings.Contains(out, "GORAY_ADDRESS="+addr) || !strings.Contains(out, `sdk.Address("auto")`) {
		t.Errorf("goray start does not say how to connect:\n%s", out)
	}
	if b, err := os.ReadFile(addrFile); err != nil || strings.TrimSpace(string(b)) != addr {
		t.Fatalf("%s = %q, %v; want %s", addrFile, b, err, addr)
	}
	if !processAlive(daemonPID) {
		t.Fatalf("daemon %d is not running after goray start", daemonPID)
	}
	if sid := sessionID(daemonPID); sid != daemonPID {
		t.Errorf("daemon %d runs in session %d; want its own session (setsid)", daemonPID, sid)
	}

	// The node as the GCS describes it, its segment and its session.
	node := clusterNode(t, addr, session)
	segment = storePath(daemonPID, node.ID)
	if _, err := os.Stat(segment); err != nil {
		t.Fatalf("object store segment: %v", err)
	}
	if socks, _ := filepath.Glob(filepath.Join(session, "sockets", "*")); len(socks) == 0 {
		t.Fatalf("no socket in the session dir %s (--session-dir)", session)
	}
	if !node.IsHead || !node.Alive {
		t.Fatalf("node %+v; want the alive head", node)
	}
	if got := node.Total["CPU"]; got != 2 {
		t.Fatalf("node CPU total = %v; want 2 (--num-cpus 2)", got)
	}

	// The daemon's own log, read through its raylet by node id.
	if out, err := runGoray(bin, env, "logs", "--node", node.ID.String()[:8], "--tail", "50"); err != nil || !strings.Contains(out, "goray head node running at "+addr) {
		t.Errorf("goray logs --node: %v\n%s", err, out)
	}

	// A second goray start refuses while this cluster runs.
	if out, err := runGoray(bin, env, "start", "--head", "--port", "0"); err == nil || !strings.Contains(out, "already running") {
		t.Errorf("second goray start: err %v; want a failure saying a cluster is already running:\n%s", err, out)
	}

	// Driver 1 joins through GORAY_ADDRESS, runs tasks and exits.
	d1 := startDriver(t, env, addr, "exit")
	drivers = append(drivers, d1)
	r1 := d1.waitResult(t)
	if err := d1.wait(time.Minute); err != nil {
		t.Fatalf("driver 1: %v\n%s", err, d1.out.String())
	}
	// Driver 2 does the same and stays connected, its worker alive.
	d2 := startDriver(t, env, addr, "hold")
	drivers = append(drivers, d2)
	r2 := d2.waitResult(t)
	for _, r := range []driverResult{r1, r2} {
		if r.sum != "3" || len(r.job) != 32 || r.workerPID <= 0 {
			t.Fatalf("driver result %+v; want sum 3, a job id and a worker pid", r)
		}
	}
	if !processAlive(r2.workerPID) {
		t.Fatalf("worker %d of the running driver is not alive", r2.workerPID)
	}
	if pids := workerPIDs(session); len(pids) == 0 {
		t.Fatalf("no worker process found by GORAY_SESSION_DIR=%s", session)
	}

	// goray status: the node with CPU x/2.0, the store, both jobs.
	var status string
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		out, err := runGoray(bin, env, "status")
		if err != nil {
			return fmt.Errorf("goray status: %v\n%s", err, out)
		}
		status = out
		nodeLine := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(node.ID.String()[:8]) + `\s+\S+\s+head\s+ALIVE\s*$`)
		if !nodeLine.MatchString(out) {
			return fmt.Errorf("status lacks the line of node %s (head, ALIVE):\n%s", node.ID.String()[:8], out)
		}
		if !regexp.MustCompile(`CPU 2\.0/2\.0`).MatchString(out) {
			return fmt.Errorf("status lacks CPU used/total 2.0/2.0 (a task holds both CPUs):\n%s", out)
		}
		if !regexp.MustCompile(`Pending:\s+\{CPU: 2\}: [1-9]\d* pending`).MatchString(out) {
			return fmt.Errorf("status lacks the pending demand {CPU: 2}:\n%s", out)
		}
		if !regexp.MustCompile(`Infeasible:\s+\{CPU: 1, GPU: 1\}: [1-9]\d* pending, infeasible: no node has GPU`).MatchString(out) {
			return fmt.Errorf("status lacks the infeasible demand {CPU: 1, GPU: 1}:\n%s", out)
		}
		if !regexp.MustCompile(`Object store:\s+\S+ \S*B/256\.0 MiB`).MatchString(out) {
			return fmt.Errorf("status lacks the object store used/capacity:\n%s", out)
		}
		if !regexp.MustCompile(`Workers:\s+[1-9]`).MatchString(out) {
			return fmt.Errorf("status shows no worker while driver 2 holds one:\n%s", out)
		}
		for _, j := range []struct {
			r     driverResult
			state string
		}{{r1, "finished"}, {r2, "running"}} {
			line := regexp.MustCompile(`(?m)^\s*` + j.r.job[:8] + `\s+` + j.state + `\s+` + strconv.Itoa(j.r.driverPID) + `\s`)
			if !line.MatchString(out) {
				return fmt.Errorf("status lacks job %s (%s, driver pid %d):\n%s", j.r.job[:8], j.state, j.r.driverPID, out)
			}
		}
		return nil
	})
	t.Logf("goray status:\n%s", status)

	// goray stop: the daemon, its workers and its shared memory are gone.
	out, err = runGoray(bin, env, "stop")
	stopped = err == nil
	if err != nil {
		t.Fatalf("goray stop: %v\n%s", err, out)
	}
	t.Logf("goray stop:\n%s", out)
	if !strings.Contains(out, "Stopped the goray cluster") {
		t.Errorf("goray stop does not say it stopped the cluster:\n%s", out)
	}
	if strings.Contains(out, "SIGTERM") || strings.Contains(out, "SIGKILL") || strings.Contains(out, "left behind") {
		t.Errorf("the daemon did not shut down cleanly on request:\n%s", out)
	}
	if processAlive(daemonPID) {
		t.Errorf("daemon %d still alive after goray stop", daemonPID)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if pids := workerPIDs(session); len(pids) > 0 {
			return fmt.Errorf("worker processes left behind: %v", pids)
		}
		if _, err := os.Stat(segment); err == nil {
			return fmt.Errorf("shm segment %s left behind", segment)
		}
		for _, f := range []string{addrFile, addrFile + ".pid"} {
			if _, err := os.Stat(f); err == nil {
				return fmt.Errorf("%s left behind", f)
			}
		}
		return nil
	})

	// The held driver notices and exits once released.
	_ = d2.stdin.Close()
	if err := d2.wait(30 * time.Second); err != nil && !isExitError(err) {
		t.Errorf("driver 2 after goray stop: %v\n%s", err, d2.out.String())
	} else {
		t.Logf("driver 2 after goray stop: exit %v", err)
	}

	// Without a cluster: status fails clearly, stop is a no-op.
	out, err = runGoray(bin, env, "status")
	if err == nil || !strings.Contains(out, "no goray cluster is running") {
		t.Errorf("goray status without a cluster: err %v; want a failure saying no cluster runs:\n%s", err, out)
	}
	out, err = runGoray(bin, env, "stop")
	if err != nil || !strings.Contains(out, "No goray cluster is running") {
		t.Errorf("goray stop without a cluster: err %v; want success saying no cluster runs:\n%s", err, out)
	}
}

// TestCLIStartRejectsBadInput checks that bad flags fail before anything
// starts, with a message naming the flag.
func TestCLIStartRejectsBadInput(t *testing.T) {
	bin := buildGoray(t)
	tmp := t.TempDir()
	env := cliEnv(tmp)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"start", "--head", "--resources", "{bad"}, "--resources"},
		{[]string{"start", "--head", "--resources", `{"TPU": -1}`}, "--resources"},
		{[]string{"start", "--head", "--resources", `{"CPU": 4}`}, "--num-cpus"},
		{[]string{"start", "--head", "--num-cpus", "-1"}, "--num-cpus"},
		{[]string{"start", "--head", "--object-store-memory", "lots"}, "--object-store-memory"},
		{[]string{"start", "--head", "--port", "70000"}, "--port"},
		{[]string{"start"}, "--head"},
		{[]string{"start", "--head", "--address", "127.0.0.1:6380"}, "--address"},
		{[]string{"start", "--address", "127.0.0.1:6380", "--labels", "zone"}, "--labels"},
		{[]string{"start", "--address", "127.0.0.1:6380", "--labels", "zone=a,zone=b"}, "twice"},
		{[]string{"start", "--address", "127.0.0.1:6380", "--node-ip", "somewhere"}, "--node-ip"},
		{[]string{"start", "--address", "127.0.0.1:6380", "--node-timeout", "5s"}, "--node-timeout"},
	} {
		out, err := runGoray(bin, env, c.args...)
		if err == nil {
			t.Errorf("goray %s succeeded; want a failure:\n%s", strings.Join(c.args, " "), out)
			_, _ = runGoray(bin, env, "stop")
			continue
		}
		if !isExitError(err) || !strings.Contains(out, c.want) {
			t.Errorf("goray %s: %v; want an error naming %q:\n%s", strings.Join(c.args, " "), err, c.want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "goray", "current_cluster")); err == nil {
		t.Errorf("a rejected goray start recorded a cluster")
	}
}

// buildGoray builds cmd/goray into a temporary directory.
func buildGoray(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build cmd/goray: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "goray")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/goray/goray/cmd/goray").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/goray: %v\n%s", err, out)
	}
	return bin
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

// runGoray runs the goray command and returns its stdout and stderr.
func runGoray(bin string, env []string, args ...string) (string, error) {
	var out bytes.Buffer
	err := runGorayTo(&out, &out, bin, env, args...)
	return out.String(), err
}

// runGorayStreams is runGoray with stdout and stderr apart.
func runGorayStreams(bin string, env []string, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := runGorayTo(&out, &errOut, bin, env, args...)
	return out.String(), errOut.String(), err
}

func runGorayTo(stdout, stderr io.Writer, bin string, env []string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	return cmd.Run()
}

func isExitError(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}

// field returns the rest of the first line of out starting with label.
func field(out, label string) string {
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), label); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// sessionID reads a process's session id from /proc.
func sessionID(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 4 {
		return -1
	}
	sid, _ := strconv.Atoi(f[3]) // field 6
	return sid
}

// clusterNode asks the cluster at addr (its head's session in session)
// for its only node.
func clusterNode(t *testing.T, addr, session string) sdk.Node {
	t.Helper()
	st := clusterStatusAt(t, addr, session)
	if len(st.Nodes) != 1 {
		t.Fatalf("cluster has %d nodes; want 1: %+v", len(st.Nodes), st.Nodes)
	}
	return st.Nodes[0]
}

// clusterStatusAt joins the cluster at addr (its head's session in
// session) as a driver, as an operator's program on the head's machine
// would, and returns its status; it disconnects before returning.
func clusterStatusAt(t *testing.T, addr, session string) *sdk.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sdk.Init(ctx, sdk.Address(addr), sdk.AuthTokenFile(tokenFile(session)), sdk.LogToDriver(false)); err != nil {
		t.Fatalf("Init(%s): %v", addr, err)
	}
	defer sdk.Shutdown()
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatalf("ClusterStatus: %v", err)
	}
	return st
}

// driverProc is the test binary re-run as a driver (TestCLIDriverHelper).
type driverProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *syncBuffer
	done  chan error
}

type driverResult struct {
	sum       string
	job       string
	driverPID int
	workerPID int
}

func startDriver(t *testing.T, env []string, addr, mode string) *driverProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestCLIDriverHelper$", "-test.v", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(append([]string{}, env...), sdk.EnvAddress+"="+addr, cliDriverEnv+"="+mode)
	d := &driverProc{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start driver: %v", err)
	}
	go func() { d.done <- cmd.Wait() }()
	return d
}

// waitResult waits for the driver's result line and parses it.
func (d *driverProc) waitResult(t *testing.T) driverResult {
	t.Helper()
	var r driverResult
	checkFor(t, 2*time.Minute, 20*time.Millisecond, func() error {
		for _, line := range strings.Split(d.out.String(), "\n") {
			if rest, ok := strings.CutPrefix(line, cliDriverMarker+" "); ok {
				kv := map[string]string{}
				for _, f := range strings.Fields(rest) {
					k, v, _ := strings.Cut(f, "=")
					kv[k] = v
				}
				r.sum, r.job = kv["sum"], kv["job"]
				r.driverPID, _ = strconv.Atoi(kv["driver_pid"])
				r.workerPID, _ = strconv.Atoi(kv["worker_pid"])
				return nil
			}
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("driver exited (%v) without a result:\n%s", err, d.out.String())
		default:
		}
		return fmt.Errorf("no %s line from the driver yet:\n%s", cliDriverMarker, d.out.String())
	})
	return r
}

// wait waits up to timeout for the driver to exit and returns how it
// exited, or an error if it still runs.
func (d *driverProc) wait(timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-timer.C:
		return fmt.Errorf("driver still running after %v", timeout)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// reapCluster makes sure a test's `goray start` cluster leaves nothing
// running, whatever failed: it stops the cluster unless the test did, and
// reports (then kills or removes) any daemon, worker or segment left.
func reapCluster(t *testing.T, bin string, env []string, session string, stopped bool, daemonPID int, segment string) {
	t.Helper()
	if !stopped {
		out, err := runGoray(bin, env, "stop")
		t.Logf("cleanup: goray stop: %v\n%s", err, out)
	}
	if daemonPID > 0 && processAlive(daemonPID) {
		t.Errorf("cleanup: daemon %d still alive; killing it", daemonPID)
		_ = syscall.Kill(daemonPID, syscall.SIGKILL)
	}
	for _, pid := range workerPIDs(session) {
		t.Errorf("cleanup: worker %d still alive; killing it", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if segment != "" {
		if err := os.Remove(segment); err == nil {
			t.Errorf("cleanup: removed leftover segment %s", segment)
		}
	}
}
