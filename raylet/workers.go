package raylet

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Environment of a worker process. A process started with EnvWorker set
// runs the worker loop in sdk.Init instead of the program's main work.
const (
	EnvWorker     = "GORAY_WORKER"
	EnvRaylet     = "GORAY_RAYLET"
	EnvJobID      = "GORAY_JOB_ID"
	EnvWorkerID   = "GORAY_WORKER_ID"
	EnvNodeID     = "GORAY_NODE_ID"
	EnvSessionDir = "GORAY_SESSION_DIR"
	EnvStorePath  = "GORAY_STORE_PATH"
	EnvLogLevel   = "GORAY_LOG_LEVEL"
	// EnvGCSAddress is the cluster's NATS URL, for workers that create or
	// call actors; drivers put it in their job's environment.
	EnvGCSAddress = "GORAY_GCS_ADDRESS"
	// EnvNamespace is the job's namespace, where a worker's named actors
	// live unless they name another.
	EnvNamespace = "GORAY_NAMESPACE"
	// EnvNodeIP is the address the worker listens on for processes on
	// other nodes.
	EnvNodeIP = "GORAY_NODE_IP"
	// EnvRuntimeEnv is the runtime env a worker started with when it is
	// not its job's (a base64 protos.RuntimeEnv): the tasks and actors it
	// submits inherit it, as Ray's children inherit their parent's.
	EnvRuntimeEnv = "GORAY_RUNTIME_ENV"
	// EnvTaskEvents set to 0 turns task events off in a job's processes
	// (its driver's setting reaches its workers).
	EnvTaskEvents = "GORAY_TASK_EVENTS"
	// EnvJobPackage is set by the job server for a driver submitted with
	// a working directory: "<package digest>:<content bytes>".
	EnvJobPackage = "GORAY_JOB_PACKAGE"
)

// LogMarker starts a line a worker writes before running a different
// function; the lines after it are attributed to that function.
const LogMarker = "\x1egoray:task:"

type workerProc struct {
	id         protos.WorkerID
	job        *jobState
	cmd        *exec.Cmd
	pid        int
	endpoint   string
	conn       *wire.Conn
	registered bool
	dead       bool
	killed     bool
	// signalled: the raylet's kill sent SIGKILL to a live process (killed
	// is also set when the process had died already).
	signalled bool
	// dedicated workers host an actor: never leased again, killed when
	// the actor's lease ends.
	dedicated bool
	// detached workers host a detached actor (dedicated too): they
	// outlive the job's driver.
	detached bool
	// reserved workers were started for an actor waiting for a process:
	// tasks do not get them while actors of the job wait.
	reserved bool
	// env is the runtime env the worker started with: it serves only
	// leases asking for the same one.
	env    *runtimeEnv
	leases map[protos.LeaseID]*leaseState
	// tcpEndpoint is where processes on other nodes reach the worker.
	tcpEndpoint string
	// active counts leases whose task is not blocked in Get.
	active    int
	startedAt time.Time
	logs      *workerLogs
	exited    chan struct{}
}

// startWorker starts a worker process for j; reserved keeps it for an
// actor (see workerProc.reserved). It returns nil if the process could not
// start (the job is then failed).
func (s *state) startWorker(j *jobState, e *runtimeEnv, reserved bool) *workerProc {
	id := protos.NewUniqueID()
	w := &workerProc{id: id, job: j, env: e, leases: map[protos.LeaseID]*leaseState{}, startedAt: time.Now(), exited: make(chan struct{})}
	creds, err := s.r.cfg.Credentials.ForWorker()
	if err != nil {
		s.failJob(j, "worker_start_failed", err)
		return nil
	}
	credFile, err := auth.WriteWorkerCredentials(creds)
	if err != nil {
		s.failJob(j, "worker_start_failed", err)
		return nil
	}
	defer credFile.Close()
	// The binary is the cache's copy, checked against the job's digest
	// when it was put there.
	cmd := exec.Command(j.binPath)
	cmd.Dir = s.workingDir(j, e)
	env := workerEnv(os.Environ(), append(slices.Clip(j.env), e.proto.GetEnvVars()...))
	if e.encoded != "" {
		env = append(env, EnvRuntimeEnv+"="+e.encoded)
	}
	env = append(env,
		EnvWorker+"=1",
		EnvRaylet+"="+s.r.endpoint,
		EnvJobID+"="+j.id.String(),
		EnvWorkerID+"="+id.String(),
		EnvNodeID+"="+s.r.cfg.NodeID.String(),
		EnvSessionDir+"="+s.r.cfg.SessionDir,
		EnvStorePath+"="+s.r.seg.Path(),
		EnvNodeIP+"="+s.r.cfg.NodeIP,
		auth.EnvCredentialsFD+"=3",
	)
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{credFile}
	// Workers die with the raylet even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	logs, err := newWorkerLogs(s.r, j.id, id)
	if err != nil {
		s.failJob(j, "worker_start_failed", err)
		return nil
	}
	stdout, err1 := cmd.StdoutPipe()
	stderr, err2 := cmd.StderrPipe()
	if err := firstErr(err1, err2); err != nil {
		logs.close()
		s.failJob(j, "worker_start_failed", err)
		return nil
	}
	if err := cmd.Start(); err != nil {
		logs.close()
		s.failJob(j, "worker_start_failed", fmt.Errorf("start worker %s (job binary %s): %w", j.binPath, j.executable, err))
		return nil
	}
	w.cmd, w.pid, w.logs = cmd, cmd.Process.Pid, logs
	logs.pid = w.pid
	s.workers[id] = w
	j.workers[id] = w
	j.starting++
	if reserved {
		w.reserved = true
		j.reserved++
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); logs.pump(stdout, false) }()
	go func() { defer wg.Done(); logs.pump(stderr, true) }()
	oomBase := s.r.mem.oomKills()
	go func() {
		wg.Wait()
		err := cmd.Wait()
		logs.close()
		// SIGKILL while the kernel's OOM kill counters grew: the kernel's
		// OOM killer (the raylet's own kills are told apart by the actor).
		kernelOOM := false
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			kernelOOM = s.r.mem.oomKills().grew(oomBase)
		}
		close(w.exited)
		s.r.system.Root.Send(s.r.pid, workerExited{w: w, err: err, kernelOOM: kernelOOM})
	}()
	return w
}

func (w *workerProc) unreserve() {
	if w.reserved {
		w.reserved = false
		w.job.reserved--
	}
}

func (w *workerProc) kill() {
	if w.killed {
		return
	}
	w.killed = true
	// A process that already died (its owner, which saw its connection
	// close, gives its lease back with disconnect, which kills) was not
	// killed by the raylet: its death has another cause (the kernel's
	// OOM killer, a crash).
	w.signalled = !(w.conn != nil && isClosed(w.conn)) && !processExited(w.pid)
	if w.cmd != nil && w.cmd.Process != nil {
		_ = w.cmd.Process.Signal(syscall.SIGKILL)
	}
}

// killGone kills a worker its owner believes dead already: the kill is
// not the cause of its death (see signalled).
func (w *workerProc) killGone() {
	if w.killed {
		return
	}
	w.kill()
	w.signalled = false
}

// processExited tells whether process pid is gone or a zombie.
func processExited(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	st := b[i+2]
	return st == 'Z' || st == 'X'
}

func (w *workerProc) waitExit(d time.Duration) {
	select {
	case <-w.exited:
	case <-time.After(d):
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// workerLogs copies a worker's stdout and stderr to its log files and
// publishes the lines for the driver, tagged with the function that was
// running when they were written.
type workerLogs struct {
	r       *Raylet
	job     protos.JobID
	worker  protos.WorkerID
	pid     int
	outPath string
	errPath string
	// out and err rotate: past Config.LogRotateBytes a file is renamed
	// with its time and a new one begun; Config.LogRotateBackups old ones
	// are kept.
	out, err *lumberjack.Logger
}

func newWorkerLogs(r *Raylet, job protos.JobID, worker protos.WorkerID) (*workerLogs, error) {
	dir := filepath.Join(r.cfg.SessionDir, "logs")
	l := &workerLogs{r: r, job: job, worker: worker,
		outPath: filepath.Join(dir, fmt.Sprintf("worker-%s.out", worker.Short())),
		errPath: filepath.Join(dir, fmt.Sprintf("worker-%s.err", worker.Short()))}
	rotating := func(path string) (*lumberjack.Logger, error) {
		// Created now, so a worker that writes nothing still has its
		// (empty) files where goray logs and its errors point.
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("worker log: %w", err)
		}
		f.Close()
		return &lumberjack.Logger{Filename: path, MaxSize: r.cfg.logRotateMB(), MaxBackups: r.cfg.LogRotateBackups}, nil
	}
	var err error
	if l.out, err = rotating(l.outPath); err != nil {
		return nil, err
	}
	if l.err, err = rotating(l.errPath); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *workerLogs) pump(rd io.Reader, isErr bool) {
	f := l.out
	if isErr {
		f = l.err
	}
	br := bufio.NewReaderSize(rd, 64<<10)
	function := ""
	var batch []string
	flush := func() {
		if len(batch) > 0 && l.r.cfg.PublishLogs != nil {
			l.r.cfg.PublishLogs(&protos.LogBatch{JobId: l.job.Bytes(), WorkerId: l.worker.Bytes(), Pid: int32(l.pid), Function: function, Stderr: isErr, Lines: batch})
		}
		batch = nil
	}
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			text := strings.TrimRight(line, "\n")
			if name, ok := strings.CutPrefix(text, LogMarker); ok {
				flush()
				function = name
			} else {
				_, _ = io.WriteString(f, line)
				batch = append(batch, text)
			}
		}
		// Publish when the pipe has nothing more buffered, so lines reach
		// the driver promptly but bursts go out together.
		if err != nil || br.Buffered() == 0 || len(batch) >= 256 {
			flush()
		}
		if err != nil {
			return
		}
	}
}

func (l *workerLogs) close() {
	_ = l.out.Close()
	_ = l.err.Close()
}

// workerEnv is a worker's environment before goray's own variables: the
// node's environment (as Ray's workers inherit the raylet's), then the
// job's variables (what its driver named: sdk.RuntimeEnv's EnvVars and
// goray's settings), which win. No GORAY_ variable of the node's passes
// (its token or TLS settings among them: a worker gets its credentials
// through a pipe), and of the job's only the settings workers read.
func workerEnv(node, job []string) []string {
	env := make([]string, 0, len(node)+len(job)+10)
	seen := map[string]int{}
	add := func(kv string) {
		name, _, _ := strings.Cut(kv, "=")
		if i, ok := seen[name]; ok {
			env[i] = kv
			return
		}
		seen[name] = len(env)
		env = append(env, kv)
	}
	for _, kv := range node {
		if !strings.HasPrefix(kv, "GORAY_") {
			add(kv)
		}
	}
	for _, kv := range job {
		if !strings.HasPrefix(kv, "GORAY_") || strings.HasPrefix(kv, EnvLogLevel+"=") || strings.HasPrefix(kv, EnvGCSAddress+"=") || strings.HasPrefix(kv, EnvNamespace+"=") || strings.HasPrefix(kv, EnvTaskEvents+"=") {
			add(kv)
		}
	}
	// A worker runs one task at a time unless its tasks block, so it starts
	// with one P: spare Ps only add scheduler hand-offs to every call. The
	// worker raises it when a task is granted more CPUs; a job that sets
	// GOMAXPROCS itself keeps its setting.
	if _, ok := seen["GOMAXPROCS"]; !ok {
		add("GOMAXPROCS=1")
	}
	return env
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

// listWorkers describes the node's worker processes, oldest first.
func (s *state) listWorkers() *protos.ListWorkersReply {
	rep := &protos.ListWorkersReply{NodeId: s.r.cfg.NodeID.Bytes()}
	add := func(w *workerProc, dying bool) {
		ws := &protos.WorkerState{WorkerId: w.id.Bytes(), JobId: w.job.id.Bytes(), Pid: int32(w.pid), Leases: int32(len(w.leases)),
			Detached: w.detached, StartTimeUnixMs: w.startedAt.UnixMilli()}
		switch {
		case dying || w.killed:
			ws.State = "STOPPING"
		case !w.registered:
			ws.State = "STARTING"
		case w.dedicated:
			ws.State = "ACTOR"
		case len(w.leases) > 0:
			ws.State = "LEASED"
		default:
			ws.State = "IDLE"
		}
		if e := w.env; e != nil && e.key != "" {
			for _, kv := range e.proto.GetEnvVars() {
				k, _, _ := strings.Cut(kv, "=")
				ws.RuntimeEnvVars = append(ws.RuntimeEnvVars, k)
			}
			ws.RuntimeEnvPackage = e.proto.GetPackageDigest()
		}
		if w.logs != nil {
			ws.StdoutPath, ws.StderrPath = w.logs.outPath, w.logs.errPath
		}
		rep.Workers = append(rep.Workers, ws)
	}
	for _, w := range s.workers {
		add(w, false)
	}
	for _, w := range s.dying {
		add(w, true)
	}
	slices.SortFunc(rep.Workers, func(a, b *protos.WorkerState) int { return cmp.Compare(a.GetStartTimeUnixMs(), b.GetStartTimeUnixMs()) })
	return rep
}
