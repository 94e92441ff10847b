package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// A multi-node test cluster: a head and worker nodes, each a `goray start
// --block` process of its own (real NATS, real sockets between nodes, one
// shm segment per node), and this test process as the driver.

// nodeTimeout is how fast the test clusters' GCS declares a silent node
// dead.
const nodeTimeout = 2 * time.Second

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

type mnNode struct {
	id   string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *strings.Builder
	mu   *sync.Mutex
	// killed nodes leave their segment behind: the test removes it.
	killed bool
}

type testCluster struct {
	t     *testing.T
	bin   string
	env   []string
	root  string
	addr  string
	head  *mnNode
	nodes []*mnNode
}

// nodeSpec is a worker node's `goray start` flags beyond --address.
type nodeSpec []string

// startMultiNode starts a head with headArgs and a worker node per spec,
// then connects this process as the driver. Cleanup stops them all and
// checks that nothing is left behind.
func startMultiNode(t *testing.T, headArgs []string, specs ...nodeSpec) (context.Context, *testCluster) {
	t.Helper()
	c := &testCluster{t: t, bin: sharedGoray(t), root: t.TempDir()}
	c.env = cliEnv(c.root)
	t.Cleanup(c.stop)
	args := append([]string{"start", "--head", "--block", "--port", "0", "--node-timeout", nodeTimeout.String(), "--object-store-memory", "512MiB"}, headArgs...)
	c.head = c.spawn("head", args, "goray head node running at ")
	c.addr = strings.Fields(c.head.id)[0]
	c.head.id = ""
	for _, s := range specs {
		c.addNode(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	if err := sdk.Init(ctx, sdk.Address(c.addr), sdk.LogToDriver(false), sdk.AuthTokenFile(tokenFile(c.head.dir))); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(sdk.Shutdown)
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatalf("ClusterStatus: %v", err)
	}
	for _, n := range st.Nodes {
		if n.IsHead {
			c.head.id = n.ID.String()
		}
	}
	if c.head.id == "" {
		t.Fatalf("no head node in %v", st.Nodes)
	}
	return ctx, c
}

// addNode starts a worker node that joins the cluster.
func (c *testCluster) addNode(spec nodeSpec) *mnNode {
	return c.addNodeEnv(spec)
}

// addNodeEnv is addNode with variables added to the node's environment.
func (c *testCluster) addNodeEnv(spec nodeSpec, env ...string) *mnNode {
	args := append([]string{"start", "--address", c.addr, "--block", "--object-store-memory", "512MiB"}, spec...)
	n := c.spawnEnv(fmt.Sprintf("node%d", len(c.nodes)+1), args, "goray node ", env)
	n.id = strings.Fields(n.id)[0]
	c.nodes = append(c.nodes, n)
	return n
}

// spawn runs goray with args and waits for the stdout line starting with
// ready; the node's id field gets the rest of that line.
func (c *testCluster) spawn(name string, args []string, ready string) *mnNode {
	c.t.Helper()
	return c.spawnEnv(name, args, ready, nil)
}

func (c *testCluster) spawnEnv(name string, args []string, ready string, env []string) *mnNode {
	c.t.Helper()
	dir := filepath.Join(c.root, name)
	n := &mnNode{dir: dir, done: make(chan struct{}), log: &strings.Builder{}, mu: &sync.Mutex{}}
	n.cmd = exec.Command(c.bin, append(args, "--session-dir", dir)...)
	n.cmd.Env = append(slices.Clip(c.env), env...)
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
		n.id = l
	case <-n.done:
		c.t.Fatalf("%s exited before it was up:\n%s", name, n.output())
	case <-time.After(time.Minute):
		c.t.Fatalf("%s not up after a minute:\n%s", name, n.output())
	}
	return n
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

// kill SIGKILLs a node's process, as a machine failing.
func (c *testCluster) kill(n *mnNode) {
	n.killed = true
	_ = n.cmd.Process.Kill()
	<-n.done
}

// stop ends every node (SIGTERM: they leave cleanly), the head last, and
// checks each left nothing behind.
func (c *testCluster) stop() {
	sdk.Shutdown()
	all := append(append([]*mnNode(nil), c.nodes...), c.head)
	for _, n := range all {
		if n == nil {
			continue
		}
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(30 * time.Second):
			c.t.Errorf("node in %s did not stop within 30s of SIGTERM:\n%s", n.dir, n.output())
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
	for _, n := range all {
		if n == nil {
			continue
		}
		segs, _ := filepath.Glob(fmt.Sprintf("/dev/shm/goray-%d-*", n.cmd.Process.Pid))
		if n.killed {
			// Nobody ran the node's shutdown: remove what it left, as
			// the other nodes on the machine do when it is declared
			// dead, and the next raylet to start here.
			for _, s := range segs {
				_ = os.Remove(s)
			}
			segs = nil
		}
		if len(segs) > 0 {
			c.t.Errorf("node in %s left shm segments %v", n.dir, segs)
		}
		checkFor(c.t, 10*time.Second, 20*time.Millisecond, func() error {
			if pids := workerPIDs(n.dir); len(pids) > 0 {
				return errorf("worker processes of %s left behind: %v", n.dir, pids)
			}
			if socks, _ := filepath.Glob(filepath.Join(n.dir, "sockets", "*")); len(socks) > 0 && !n.killed {
				return errorf("sockets left behind: %v", socks)
			}
			return nil
		})
	}
	if c.t.Failed() {
		for _, n := range all {
			if n != nil {
				c.t.Logf("output of %s:\n%s", n.dir, n.output())
			}
		}
	}
}

// nodeWithID returns the node whose id is id, or nil.
func (c *testCluster) nodeWithID(id string) *mnNode {
	for _, n := range append([]*mnNode{c.head}, c.nodes...) {
		if n.id == id {
			return n
		}
	}
	return nil
}

func mustNodeID(t *testing.T, hex string) sdk.NodeID {
	t.Helper()
	id, err := sdk.ParseNodeID(hex)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// waitNodeGone waits until the cluster reports node id DEAD.
// waitSegmentGone waits until the shm segment of a node killed with
// SIGKILL is gone: the live nodes on the machine remove it when the GCS
// reports the node dead.
func waitSegmentGone(t *testing.T, n *mnNode) {
	t.Helper()
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if segs, _ := filepath.Glob(fmt.Sprintf("/dev/shm/goray-%d-*", n.cmd.Process.Pid)); len(segs) > 0 {
			return errorf("the killed node's segment is still there: %v", segs)
		}
		return nil
	})
}

func waitNodeGone(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	checkFor(t, 4*nodeTimeout+10*time.Second, 50*time.Millisecond, func() error {
		st, err := sdk.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if n.ID.String() == id && n.Alive {
				return errorf("node %s is still alive", id[:8])
			}
		}
		return nil
	})
}
