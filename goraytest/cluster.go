package goraytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/cluster"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/sdk"
)

// NodeSpec describes a node of a Cluster.
type NodeSpec struct {
	// CPUs of the node; 0 means 1 (a node without CPUs sets
	// Resources["CPU"] to 0).
	CPUs float64
	// GPUs of the node.
	GPUs float64
	// Resources are custom resources; an entry for "CPU" or "GPU"
	// overrides CPUs and GPUs.
	Resources map[string]float64
	// Labels are the node's labels, for sdk.Labels selectors.
	Labels map[string]string
	// ObjectStoreMemory in bytes; 0 means DefaultObjectStoreMemory.
	ObjectStoreMemory uint64
}

func (s NodeSpec) resources() map[string]float64 {
	res := map[string]float64{"CPU": 1}
	if s.CPUs > 0 {
		res["CPU"] = s.CPUs
	}
	if s.GPUs > 0 {
		res["GPU"] = s.GPUs
	}
	maps.Copy(res, s.Resources)
	return res
}

func (s NodeSpec) storeMemory() uint64 {
	if s.ObjectStoreMemory == 0 {
		return DefaultObjectStoreMemory
	}
	return s.ObjectStoreMemory
}

// Option configures a Cluster.
type Option func(*options)

type options struct {
	nodeTimeout  time.Duration
	startTimeout time.Duration
	stopTimeout  time.Duration
}

// DefaultNodeTimeout is how long a node of a test cluster may go silent
// before the GCS declares it dead: short, so that tests of node failure
// are quick, and long enough for a node on a busy test machine.
const DefaultNodeTimeout = 2 * time.Second

// NodeTimeout sets how long a node may go silent (killed, or hung) before
// the cluster declares it dead (default DefaultNodeTimeout).
func NodeTimeout(d time.Duration) Option { return func(o *options) { o.nodeTimeout = d } }

// StartTimeout bounds how long a node process may take to come up
// (default one minute).
func StartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// StopTimeout is how long a node process may take to stop after SIGTERM
// (Node.Remove, and the test's cleanup) before it is killed (default 30s).
func StopTimeout(d time.Duration) Option { return func(o *options) { o.stopTimeout = d } }

// Cluster is a multi-node goray cluster on this machine whose nodes are
// processes of their own: the test binary run again as a node daemon (see
// Main). The test's cleanup stops it.
type Cluster struct {
	t    testing.TB
	opts options
	root string
	addr string
	// tokenFile is the head's token, what drivers and nodes join with;
	// authNone says the head runs without authentication (GORAY_AUTH=none).
	tokenFile string
	authNone  bool
	// observer reads the node table for WaitForNodes and WaitNodeDead,
	// with the read-only operator's rights.
	observer  *gcs.Client
	head      *Node
	connected bool

	mu    sync.Mutex
	nodes []*Node // every node started, head first
	seq   int
}

// NewCluster starts a cluster's head node (NATS, the GCS and a raylet) in
// a process of its own, and registers its shutdown with t.Cleanup. The
// test process is not its driver until Connect. The test fails at once if
// the head does not come up.
func NewCluster(t testing.TB, head NodeSpec, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: options{nodeTimeout: DefaultNodeTimeout, startTimeout: time.Minute, stopTimeout: 30 * time.Second}}
	for _, o := range opts {
		o(&c.opts)
	}
	c.root = shortTempDir(t)
	// Registered after shortTempDir's removal of root, so it runs before
	// it: the nodes stop before their directories go.
	t.Cleanup(c.shutdown)
	n, msg := c.spawn("head", daemonConfig{
		Head:              true,
		Resources:         head.resources(),
		Labels:            head.Labels,
		ObjectStoreMemory: head.storeMemory(),
		NodeTimeout:       c.opts.nodeTimeout,
	})
	c.head, c.addr, c.authNone = n, msg.Address, msg.AuthNone
	if !c.authNone {
		c.tokenFile = cluster.TokenFile(n.dir)
	}
	creds, err := c.credentials()
	if err != nil {
		t.Fatalf("goraytest: %v", err)
	}
	natsOpts, err := creds.NATSOptions(auth.RoleOps)
	if err != nil {
		t.Fatalf("goraytest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.startTimeout)
	defer cancel()
	if c.observer, err = gcs.Dial(ctx, c.addr, zerolog.Nop(), natsOpts...); err != nil {
		t.Fatalf("goraytest: connect to the head at %s: %v", c.addr, err)
	}
	return c
}

// credentials are what this process joins the cluster with.
func (c *Cluster) credentials() (*auth.Credentials, error) {
	src := auth.Source{Mode: auth.ModeToken, TokenFile: c.tokenFile}
	if c.authNone {
		src = auth.Source{Mode: auth.ModeNone}
	}
	creds, _, err := auth.Resolve(src)
	if err != nil {
		return nil, fmt.Errorf("credentials of the cluster at %s: %w", c.addr, err)
	}
	return creds, nil
}

// Connect makes the test process the cluster's driver: sdk.Init with the
// head's address and token, worker output not streamed (pass
// sdk.LogToDriver(true) to see it); opts add to or override these. The
// driver's node is the head. The test's cleanup calls sdk.Shutdown. As
// Start's, the context returned ends with the test, or a little before its
// deadline.
func (c *Cluster) Connect(opts ...sdk.InitOption) context.Context {
	c.t.Helper()
	ctx := testContext(c.t)
	all := []sdk.InitOption{sdk.Address(c.addr), sdk.LogToDriver(false)}
	if c.authNone {
		all = append(all, sdk.AuthNone())
	} else {
		all = append(all, sdk.AuthTokenFile(c.tokenFile))
	}
	if err := sdk.Init(ctx, append(all, opts...)...); err != nil {
		c.t.Fatalf("goraytest: connect to the cluster at %s: %v", c.addr, err)
	}
	c.connected = true
	c.t.Cleanup(sdk.Shutdown)
	return ctx
}

// Address is the head's NATS URL, what sdk.Address takes.
func (c *Cluster) Address() string { return c.addr }

// Head returns the head node.
func (c *Cluster) Head() *Node { return c.head }

// Nodes returns the nodes started and not yet killed or removed, the head
// first.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var up []*Node
	for _, n := range c.nodes {
		if !n.isGone() {
			up = append(up, n)
		}
	}
	return up
}

// AddNode starts a node that joins the cluster, in a process of its own,
// and returns once it has joined. The test fails at once if it does not
// come up.
func (c *Cluster) AddNode(spec NodeSpec) *Node {
	c.t.Helper()
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("node%d", c.seq)
	c.mu.Unlock()
	n, _ := c.spawn(name, daemonConfig{
		Address:           c.addr,
		TokenFile:         c.tokenFile,
		AuthNone:          c.authNone,
		Resources:         spec.resources(),
		Labels:            spec.Labels,
		ObjectStoreMemory: spec.storeMemory(),
	})
	return n
}

// WaitForNodes waits until exactly n nodes of the cluster are alive: after
// AddNode, until the GCS lists the new ones; after Kill or Remove, until it
// has declared the node dead.
func (c *Cluster) WaitForNodes(ctx context.Context, n int) error {
	var last string
	err := c.poll(ctx, func(nodes []*protos.NodeInfo) bool {
		var alive []string
		for _, info := range nodes {
			if info.GetState() == protos.NodeInfo_ALIVE {
				alive = append(alive, nodeIDOf(info).String()[:8])
			}
		}
		last = fmt.Sprintf("%d alive %v", len(alive), alive)
		return len(alive) == n
	})
	if err != nil {
		return fmt.Errorf("goraytest: waiting for %d alive nodes (%s): %w", n, last, err)
	}
	return nil
}

// WaitNodeDead waits until the cluster has declared node id dead.
func (c *Cluster) WaitNodeDead(ctx context.Context, id sdk.NodeID) error {
	state := "not listed"
	err := c.poll(ctx, func(nodes []*protos.NodeInfo) bool {
		for _, info := range nodes {
			if nodeIDOf(info) == id {
				state = info.GetState().String()
				return info.GetState() == protos.NodeInfo_DEAD
			}
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("goraytest: waiting for node %s to be dead (it is %s): %w", id, state, err)
	}
	return nil
}

// poll asks the GCS for the node table until done accepts it.
func (c *Cluster) poll(ctx context.Context, done func([]*protos.NodeInfo) bool) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		nodes, err := c.observer.ListNodes(ctx)
		if err == nil && done(nodes) {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

func nodeIDOf(info *protos.NodeInfo) sdk.NodeID {
	id, _ := protos.UniqueIDFromBytes(info.GetNodeId())
	return sdk.NodeID(id)
}

// Node is a node process of a Cluster.
type Node struct {
	c    *Cluster
	name string
	id   sdk.NodeID
	dir  string
	cmd  *exec.Cmd
	pid  int
	out  *output
	// exited closes when the process has exited; waitErr is then its
	// exit status.
	exited  chan struct{}
	waitErr error

	mu sync.Mutex
	// gone: Kill or Remove was called; killed: the process was SIGKILLed,
	// so nobody removed its shm segment and sockets; reported: the test
	// has already shown its output.
	gone, killed, reported bool
}

// ID returns the node's id.
func (n *Node) ID() sdk.NodeID { return n.id }

// PID returns the node's process id.
func (n *Node) PID() int { return n.pid }

// String names the node in test output: its name, pid and id.
func (n *Node) String() string {
	return fmt.Sprintf("%s (pid %d, id %.8s)", n.name, n.pid, n.id.String())
}

func (n *Node) isGone() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gone
}

// Kill SIGKILLs the node's process, as a machine failing: it leaves the
// cluster without a word, and the GCS declares it dead once the node
// timeout passes (WaitNodeDead). Its workers die with it. Kill removes the
// shm segment the process leaves behind.
func (n *Node) Kill() {
	n.mu.Lock()
	if n.gone {
		n.mu.Unlock()
		return
	}
	n.gone, n.killed = true, true
	n.mu.Unlock()
	_ = n.cmd.Process.Kill()
	<-n.exited
	removeSegments(n.pid)
}

// Remove stops the node cleanly (SIGTERM): it leaves the cluster, which
// marks it dead at once, and stops its workers. The test fails if the
// node does not stop within the stop timeout or exits with an error.
func (n *Node) Remove() {
	n.c.t.Helper()
	if err := n.stop(); err != nil {
		n.c.t.Errorf("goraytest: %v", err)
	}
}

// stop SIGTERMs the node's process and waits for it, SIGKILLing it if it
// takes longer than the stop timeout.
func (n *Node) stop() error {
	n.mu.Lock()
	if n.gone {
		n.mu.Unlock()
		return nil
	}
	n.gone = true
	n.mu.Unlock()
	select {
	case <-n.exited:
		return n.exitError("exited before it was stopped")
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
		return n.exitError("failed to stop")
	case <-time.After(n.c.opts.stopTimeout):
		n.mu.Lock()
		n.killed = true
		n.mu.Unlock()
		_ = n.cmd.Process.Kill()
		<-n.exited
		return fmt.Errorf("node %s did not stop within %v of SIGTERM; killed it", n, n.c.opts.stopTimeout)
	}
}

func (n *Node) exitError(what string) error {
	if n.waitErr == nil {
		return nil
	}
	return fmt.Errorf("node %s %s: %w", n, what, n.waitErr)
}

// spawn starts the test binary as a node daemon with cfg (in a session
// directory named name) and waits until it reports that its node is up.
func (c *Cluster) spawn(name string, cfg daemonConfig) (*Node, readyMsg) {
	c.t.Helper()
	var msg readyMsg
	cfg.SessionDir = filepath.Join(c.root, name)
	cfg.StartTimeout = c.opts.startTimeout
	cfg.ReadyFD = 3 // the first of ExtraFiles
	raw, err := json.Marshal(cfg)
	if err != nil {
		c.t.Fatalf("goraytest: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		c.t.Fatalf("goraytest: the test binary: %v", err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		c.t.Fatalf("goraytest: %v", err)
	}
	defer readyR.Close()
	// The daemon stops when this pipe closes: when the test process dies
	// without its cleanup (a panic, go test's timeout), the nodes go too.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		c.t.Fatalf("goraytest: %v", err)
	}
	n := &Node{c: c, name: name, dir: cfg.SessionDir, out: &output{}, exited: make(chan struct{})}
	// -test.run=^$: a test binary whose TestMain forgot goraytest.Main
	// runs no test instead of all of them again.
	n.cmd = exec.Command(exe, "-test.run=^$")
	n.cmd.Env = append(os.Environ(), envNode+"="+string(raw))
	n.cmd.Stdin, n.cmd.Stdout, n.cmd.Stderr = stdinR, n.out, n.out
	n.cmd.ExtraFiles = []*os.File{readyW}
	n.cmd.WaitDelay = 5 * time.Second
	err = n.cmd.Start()
	stdinR.Close()
	readyW.Close()
	if err != nil {
		stdinW.Close()
		c.t.Fatalf("goraytest: start node %s: %v", name, err)
	}
	n.pid = n.cmd.Process.Pid
	go func() {
		n.waitErr = n.cmd.Wait()
		stdinW.Close()
		close(n.exited)
	}()
	c.mu.Lock()
	c.nodes = append(c.nodes, n) // from here on the cleanup stops it
	c.mu.Unlock()

	readyc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(readyR) // end of file once reported, or when the process dies
		readyc <- b
	}()
	// fail ends the node and the test with what the node said: the
	// cleanup has nothing more to report about it.
	fail := func(format string, args ...any) {
		c.t.Helper()
		n.mu.Lock()
		n.gone, n.killed, n.reported = true, true, true
		n.mu.Unlock()
		_ = n.cmd.Process.Kill()
		<-n.exited
		c.t.Fatalf("goraytest: node %s (pid %d) %s; its output:\n%s", name, n.pid, fmt.Sprintf(format, args...), n.out)
	}
	timeout := time.NewTimer(c.opts.startTimeout + 5*time.Second)
	defer timeout.Stop()
	select {
	case b := <-readyc:
		if len(b) > 0 {
			if err := json.Unmarshal(b, &msg); err != nil {
				fail("reported %q: %v", b, err)
			}
			break
		}
		select {
		case <-n.exited:
		case <-timeout.C:
			fail("closed its ready pipe without a word")
		}
		if n.waitErr == nil {
			// m.Run ran, and no test, as -test.run=^$ asks.
			fail("exited before it was up; does the test binary's TestMain call goraytest.Main?")
		}
		fail("exited before it was up (%v)", n.waitErr)
	case <-timeout.C:
		fail("did not come up within %v", c.opts.startTimeout)
	}
	id, err := sdk.ParseNodeID(msg.NodeID)
	if err != nil {
		fail("reported node id %q: %v", msg.NodeID, err)
	}
	n.id = id
	return n, msg
}

// shutdown is the cluster's cleanup: the driver goes, then the nodes (the
// head last, so the others can leave the cluster cleanly), and nothing of
// them may remain.
func (c *Cluster) shutdown() {
	if c.connected {
		sdk.Shutdown()
	}
	if c.observer != nil {
		c.observer.Close()
	}
	c.mu.Lock()
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	var errs []error
	var mu sync.Mutex
	stopAll := func(nodes []*Node) {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() {
				if err := n.stop(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	var workers []*Node
	for _, n := range nodes {
		if n != c.head {
			workers = append(workers, n)
		}
	}
	stopAll(workers)
	if c.head != nil {
		stopAll([]*Node{c.head})
	}
	for _, n := range nodes {
		n.mu.Lock()
		killed := n.killed
		n.mu.Unlock()
		// A killed node's segment is Kill's to remove; a stopped one
		// removes its own.
		if segs := removeSegments(n.pid); len(segs) > 0 && !killed {
			errs = append(errs, fmt.Errorf("node %s left shm segments behind (removed them): %v", n, segs))
		}
		if err := waitNoWorkers(n.dir, workerGrace); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n, err))
		}
	}
	for _, err := range errs {
		c.t.Errorf("goraytest: %v", err)
	}
	if c.t.Failed() {
		for _, n := range nodes {
			n.mu.Lock()
			reported := n.reported
			n.mu.Unlock()
			if reported {
				continue
			}
			c.t.Logf("goraytest: output of node %s:\n%s", n, n.out)
		}
	}
}

// output collects a node process's stdout and stderr, keeping the last
// maxOutput bytes, for the test's log when something fails.
type output struct {
	mu sync.Mutex
	b  []byte
}

const maxOutput = 256 << 10

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b = append(o.b, p...)
	if len(o.b) > 2*maxOutput {
		o.b = append([]byte(nil), o.b[len(o.b)-maxOutput:]...)
	}
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.b) == 0 {
		return "  (none)"
	}
	return "  " + strings.ReplaceAll(strings.TrimRight(string(o.b), "\n"), "\n", "\n  ")
}
