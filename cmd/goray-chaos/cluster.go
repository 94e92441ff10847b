package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A cluster of `goray start --block` processes on this machine, started
// and killed the way an operator's machines fail: each node is a process
// of its own with its own session directory and shm segment.

// nodeTimeout is how fast the GCS declares a silent node dead: short, so
// that the killed node's work moves on within the run.
const nodeTimeout = 2 * time.Second

// nodeStoreMemory leaves room for the blobs in flight plus what spilling
// has not yet freed.
const nodeStoreMemory = "512MiB"

type proc struct {
	name string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	// killed processes leave their shm segment behind; cleanup removes it.
	killed bool
}

type cluster struct {
	bin  string
	root string
	env  []string
	addr string
	port string

	mu   sync.Mutex
	head *proc
	// node is the current non-head node.
	node *proc
	// all is every process ever started, so that cleanup misses none.
	all   []*proc
	nodes int
}

// nodeEnv is this process's environment without goray settings (TLS
// settings pass: `make test-tls` runs this with them), with TMPDIR in the
// run's directory so that the head's current-cluster record is the run's
// own and not that of a cluster the user runs on this machine.
func nodeEnv(root string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if (strings.HasPrefix(kv, "GORAY_") && !strings.HasPrefix(kv, "GORAY_TLS_")) || strings.HasPrefix(kv, "TMPDIR=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "TMPDIR="+root)
}

func (c *cluster) headArgs(port string) []string {
	return []string{"start", "--head", "--block", "--port", port, "--node-timeout", nodeTimeout.String(),
		"--num-cpus", "1", "--object-store-memory", nodeStoreMemory}
}

func (c *cluster) tokenFile() string { return filepath.Join(c.root, "head", "auth_token") }

// startHead starts the head on a free port (--port 0) and learns its
// address; a restart passes the same port so that nodes and the driver
// find it again.
func (c *cluster) startHead() error {
	p, line, err := c.spawn("head", c.headArgs("0"), "goray head node running at ")
	if err != nil {
		return err
	}
	c.addr = strings.Fields(line)[0]
	c.port = c.addr[strings.LastIndex(c.addr, ":")+1:]
	c.mu.Lock()
	c.head = p
	c.mu.Unlock()
	return nil
}

// addNode starts a non-head node with two CPUs.
func (c *cluster) addNode() error {
	c.mu.Lock()
	c.nodes++
	name := fmt.Sprintf("node%d", c.nodes)
	c.mu.Unlock()
	p, _, err := c.spawn(name, []string{"start", "--address", c.addr, "--block", "--num-cpus", "2",
		"--object-store-memory", nodeStoreMemory, "--auth-token-file", c.tokenFile()}, "goray node ")
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.node = p
	c.mu.Unlock()
	return nil
}

// killNode SIGKILLs the non-head node, as its machine failing.
func (c *cluster) killNode() *proc {
	c.mu.Lock()
	p := c.node
	c.node = nil
	c.mu.Unlock()
	if p != nil {
		kill(p)
	}
	return p
}

// restartHead SIGKILLs the head and starts it again on the same session
// directory and port, as a supervisor such as systemd would. started is
// called when the new process has been started, before it is up.
func (c *cluster) restartHead(started func()) error {
	c.mu.Lock()
	old := c.head
	c.mu.Unlock()
	kill(old)
	p, _, err := c.spawnNotify("head", c.headArgs(c.port), "goray head node running at ", started)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.head = p
	c.mu.Unlock()
	return nil
}

func kill(p *proc) {
	p.killed = true
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (c *cluster) spawn(name string, args []string, ready string) (*proc, string, error) {
	return c.spawnNotify(name, args, ready, nil)
}

// spawnNotify runs goray with args in the session directory root/name and
// waits for the stdout line starting with ready; it returns the rest of
// that line. The process's output goes to a log file of its own in root
// (name.log, then name-2.log, ... for restarts).
func (c *cluster) spawnNotify(name string, args []string, ready string, started func()) (*proc, string, error) {
	dir := filepath.Join(c.root, name)
	logPath := filepath.Join(c.root, name+".log")
	for i := 2; ; i++ {
		if _, err := os.Stat(logPath); errors.Is(err, os.ErrNotExist) {
			break
		}
		logPath = filepath.Join(c.root, fmt.Sprintf("%s-%d.log", name, i))
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	p := &proc{name: name, dir: dir, done: make(chan struct{}), log: logPath}
	p.cmd = exec.Command(c.bin, append(args, "--session-dir", dir)...)
	p.cmd.Env = c.env
	// A process group of its own keeps a terminal's Ctrl-C from reaching
	// the nodes before this program has stopped its workload; Pdeathsig
	// takes them down with this program if it dies without cleaning up.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, "", err
	}
	p.cmd.Stderr = logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	c.mu.Lock()
	c.all = append(c.all, p)
	c.mu.Unlock()
	if started != nil {
		started()
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			l := sc.Text()
			fmt.Fprintln(logf, l)
			if !sent && strings.HasPrefix(l, ready) {
				line <- strings.TrimPrefix(l, ready)
				sent = true
			}
		}
		_, _ = io.Copy(logf, stdout)
		_ = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	select {
	case l := <-line:
		return p, l, nil
	case <-p.done:
		return nil, "", fmt.Errorf("%s exited before it was up (%v):\n%s", name, p.cmd.ProcessState, tail(logPath))
	case <-time.After(time.Minute):
		kill(p)
		return nil, "", fmt.Errorf("%s not up after a minute:\n%s", name, tail(logPath))
	}
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// workerPIDs lists the live worker processes of this cluster's nodes:
// raylets start workers with GORAY_WORKER=1 and their node's session
// directory in the environment.
func (c *cluster) workerPIDs() []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	prefix := "GORAY_SESSION_DIR=" + c.root + string(filepath.Separator)
	for _, path := range procs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		worker, ours := false, false
		for _, kv := range bytes.Split(b, []byte{0}) {
			switch {
			case string(kv) == "GORAY_WORKER=1":
				worker = true
			case bytes.HasPrefix(kv, []byte(prefix)):
				ours = true
			}
		}
		if !worker || !ours {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err == nil && pid != os.Getpid() && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive is false for a zombie: a worker SIGKILLed a moment ago that its
// raylet has not reaped yet is not worth killing again.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// killRandomWorker SIGKILLs one worker process of the cluster, if there
// is one; it reports whether it killed one.
func (c *cluster) killRandomWorker(rng *rand.Rand) bool {
	pids := c.workerPIDs()
	if len(pids) == 0 {
		return false
	}
	return syscall.Kill(pids[rng.IntN(len(pids))], syscall.SIGKILL) == nil
}

// stop ends every process of the cluster, the non-head nodes first (they
// leave cleanly on SIGTERM) and the head last, and removes what killed
// processes left. It returns what was left behind by processes that were
// not killed, which is a fault of goray's shutdown.
func (c *cluster) stop() (leftovers []string) {
	c.mu.Lock()
	all := append([]*proc(nil), c.all...)
	head := c.head
	c.mu.Unlock()
	stopOne := func(p *proc) {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			leftovers = append(leftovers, fmt.Sprintf("%s (pid %d) did not stop within 30s of SIGTERM", p.name, p.cmd.Process.Pid))
			kill(p)
		}
	}
	for _, p := range all {
		if p != head {
			stopOne(p)
		}
	}
	if head != nil {
		stopOne(head)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := c.workerPIDs()
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			leftovers = append(leftovers, fmt.Sprintf("worker processes %v still running 10s after their nodes stopped", pids))
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range all {
		segs, _ := filepath.Glob(fmt.Sprintf("/dev/shm/goray-%d-*", p.cmd.Process.Pid))
		if len(segs) > 0 && !p.killed {
			leftovers = append(leftovers, fmt.Sprintf("%s (pid %d) stopped cleanly but left shm segments %v", p.name, p.cmd.Process.Pid, segs))
		}
		for _, s := range segs {
			_ = os.Remove(s)
		}
	}
	return leftovers
}
