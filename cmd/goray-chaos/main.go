// Command goray-chaos tests goray's fault tolerance under fire. It starts
// a cluster of its own on this machine (a head and one node, each a `goray
// start --block` process), joins it as a driver and, for -duration, runs a
// workload while a monkey kills its processes:
//
//   - units of dependent tasks (chains passing refs, 150 KiB blobs in shared
//     memory passed as refs to other tasks), all with MaxRetries(-1);
//   - an actor with MaxRestarts(-1) and MaxTaskRetries(-1), and a detached,
//     named service actor with the same options, each called continuously
//     (a counter whose resets on restart are accounted for);
//   - a random worker process SIGKILLed every -kill-interval; the node
//     SIGKILLed at a third of the run and a new one started; the head
//     SIGKILLed at two thirds and started again on the same session
//     directory and port.
//
// Every task's and call's result is checked against the value it must have.
// Work not done -grace after the run counts as hung. The figures go to
// stdout as JSON lines in goray-bench's format:
//
//	{"name":"chaos_tasks_wrong","value":0,"unit":"count"}
//
// chaos_tasks_* and chaos_calls_* count the tasks and actor calls
// submitted and how each ended (correct, wrong, failed: an error returned,
// hung); chaos_workers_killed and chaos_nodes_killed (the non-head node)
// the kills; chaos_actor_restarts the incarnations the callers saw
// replaced; chaos_head_up_s the time from the head's restart to its ready
// line, chaos_head_recover_s to the first success of both a new task and a
// call of the detached service found again by name (-1: none);
// chaos_leftovers what a clean stop left behind (processes, segments).
//
// The exit status is 1 if any task or call was wrong, failed or hung, the
// head did not recover or the stop left something behind (the distinct
// errors are summarised on stderr, the most frequent first), and 2 if the
// cluster or the workload could not be set up.
//
//	make chaos                                # the full run, 60 s
//	goray-chaos -goray bin/goray -duration 15s
//
// goray's workers re-run this binary, so main hands over to the worker loop
// (sdk.WorkerMain) before anything else.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goray/goray/sdk"
)

const (
	serviceName      = "chaos-service"
	serviceNamespace = "chaos"
)

type config struct {
	goray        string
	duration     time.Duration
	grace        time.Duration
	killInterval time.Duration
	taskLoops    int
	seed         uint64
	dir          string
	keep         bool
	// killNode and restartHead turn the node's and the head's failure off,
	// to tell which failure a fault follows.
	killNode, restartHead bool
}

func main() {
	// A worker process runs the worker loop here and never returns.
	sdk.WorkerMain()

	var cfg config
	flag.StringVar(&cfg.goray, "goray", "", "the goray command that starts the nodes (default: goray next to this binary, then on $PATH)")
	flag.DurationVar(&cfg.duration, "duration", 60*time.Second, "how long the workload runs under chaos")
	flag.DurationVar(&cfg.grace, "grace", 60*time.Second, "how long after the run the work in flight may take before it counts as hung")
	flag.DurationVar(&cfg.killInterval, "kill-interval", 200*time.Millisecond, "how often a random worker process is SIGKILLed")
	flag.IntVar(&cfg.taskLoops, "task-loops", 4, "units of tasks in flight at once")
	flag.Uint64Var(&cfg.seed, "seed", 0, "seed of the workload's values and of the monkey's choices (0: a random one, printed)")
	flag.StringVar(&cfg.dir, "dir", "", "directory for the cluster's session directories and logs, kept (default: a new temporary one, removed after a run that passed)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory even when the run passed")
	flag.BoolVar(&cfg.killNode, "kill-node", true, "SIGKILL the node at a third of the run and start a new one")
	flag.BoolVar(&cfg.restartHead, "restart-head", true, "SIGKILL the head at two thirds of the run and start it again")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("goray-chaos: ")
	log.SetOutput(os.Stderr)
	if cfg.seed == 0 {
		cfg.seed = rand.Uint64()
	}
	os.Exit(run(cfg))
}

type metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

func findGoray(flagValue string) (string, error) {
	if flagValue != "" {
		return filepath.Abs(flagValue)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "goray")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("goray")
	if err != nil {
		return "", errors.New("no goray command next to this binary or on $PATH: build it (make build) and pass -goray bin/goray")
	}
	return filepath.Abs(p)
}

func run(cfg config) int {
	bin, err := findGoray(cfg.goray)
	if err != nil {
		log.Print(err)
		return 2
	}
	root := cfg.dir
	if root == "" {
		// Short: the nodes' unix sockets live under it, and their paths
		// may not exceed 107 bytes.
		if root, err = os.MkdirTemp("", "goray-chaos-"); err != nil {
			log.Print(err)
			return 2
		}
	} else if err := os.MkdirAll(root, 0o755); err != nil {
		log.Print(err)
		return 2
	}
	if root, err = filepath.Abs(root); err != nil {
		log.Print(err)
		return 2
	}
	log.Printf("seed %d; cluster, logs and session directories in %s", cfg.seed, root)

	// Ctrl-C or SIGTERM ends the run early; the cluster is still stopped
	// and its processes and segments removed.
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	c := &cluster{bin: bin, root: root, env: nodeEnv(root)}
	r := &runner{cfg: cfg, c: c}
	code := r.run(ctx)
	sdk.Shutdown()
	leftovers := c.stop()
	for _, l := range leftovers {
		r.w.faults.add("left behind", l)
	}
	r.print(len(leftovers))
	lines, distinct := r.w.faults.summary(10)
	if len(lines) > 0 {
		log.Printf("%d distinct faults; the most frequent:", distinct)
		for _, l := range lines {
			fmt.Fprintf(os.Stderr, "  %s\n", l)
		}
	}
	if code == 0 && (distinct > 0 || r.recoverErr != nil) {
		code = 1
	}
	if r.recoverErr != nil {
		log.Print(r.recoverErr)
	}
	if code == 0 && !cfg.keep && cfg.dir == "" {
		_ = os.RemoveAll(root)
	} else {
		log.Printf("logs kept in %s (driver.log, head*.log, node*.log; worker logs under each session's logs/)", root)
	}
	if code == 0 {
		log.Print("passed: no task or call was wrong, failed or hung")
	}
	return code
}

type runner struct {
	cfg config
	c   *cluster
	w   workload

	workersKilled atomic.Int64
	nodesKilled   int
	headUp        time.Duration
	rec           recovery
	recovered     bool
	recoverErr    error
	// setupErr is a failure to start the cluster or the workload: no
	// figure of the run means anything then.
	setupErr error
}

func (r *runner) run(ctx context.Context) int {
	c := r.c
	if err := c.startHead(); err != nil {
		log.Printf("head: %v", err)
		return 2
	}
	if err := c.addNode(); err != nil {
		log.Printf("node: %v", err)
		return 2
	}
	log.Printf("cluster up: head at %s, one node", c.addr)

	logf, err := os.Create(filepath.Join(c.root, "driver.log"))
	if err != nil {
		log.Print(err)
		return 2
	}
	defer logf.Close()
	ictx, cancel := context.WithTimeout(ctx, time.Minute)
	err = sdk.Init(ictx, sdk.Address(c.addr), sdk.AuthTokenFile(c.tokenFile()), sdk.LogToDriver(false),
		sdk.Logger(slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	cancel()
	if err != nil {
		log.Printf("sdk.Init: %v", err)
		return 2
	}

	// The actors and one unit of tasks answer once before the clock starts,
	// so that a cluster that cannot run the workload at all is told apart
	// from one that fails under chaos.
	w := &r.w
	w.faults.start = time.Now()
	w.runEnd = time.Now().Add(time.Hour)
	w.hangDeadline = time.Now().Add(2 * time.Minute)
	actor, err := counterClass.Options(sdk.MaxRestarts(-1), sdk.MaxTaskRetries(-1)).Remote(ctx)
	if err != nil {
		log.Printf("create the actor: %v", err)
		return 2
	}
	service, err := counterClass.Options(sdk.Name(serviceName), sdk.Namespace(serviceNamespace), sdk.Detached(),
		sdk.MaxRestarts(-1), sdk.MaxTaskRetries(-1)).Remote(ctx)
	if err != nil {
		log.Printf("create the detached service: %v", err)
		return 2
	}
	var actorChk, serviceChk counterCheck
	for _, a := range []struct {
		h   sdk.Actor[counter]
		chk *counterCheck
	}{{actor, &actorChk}, {service, &serviceChk}} {
		rep, err := incMethod.Remote(ctx, a.h, 0).Get(ctx, sdk.Timeout(time.Minute))
		if err == nil {
			if msg := a.chk.next(rep, 0); msg != "" {
				err = errors.New(msg)
			}
		}
		if err != nil {
			log.Printf("first call of an actor: %v", err)
			return 2
		}
	}
	w.unit(ctx, r.cfg.seed)
	if n := w.tasks.correct.Load(); n != chainLen+3 {
		lines, _ := w.faults.summary(3)
		log.Printf("the first unit of tasks, before any chaos, did not succeed: %v", lines)
		return 2
	}
	w.tasks = tally{}

	start := time.Now()
	w.faults.start = start
	w.runEnd = start.Add(r.cfg.duration)
	w.hangDeadline = w.runEnd.Add(r.cfg.grace)
	log.Printf("workload running for %v under chaos", r.cfg.duration)
	var wg sync.WaitGroup
	for i := 0; i < r.cfg.taskLoops; i++ {
		wg.Go(func() { w.taskLoop(ctx, i, r.cfg.seed) })
	}
	wg.Go(func() { w.callLoop(ctx, "actor", actor, &actorChk) })
	wg.Go(func() { w.callLoop(ctx, "service", service, &serviceChk) })
	wg.Go(func() { r.monkey(ctx) })
	wg.Go(func() { r.schedule(ctx, start) })
	wg.Wait()
	log.Printf("run over after %v", time.Since(start).Round(time.Millisecond))

	kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := sdk.Kill(kctx, service, true); err != nil {
		log.Printf("kill the detached service: %v", err)
	}
	cancel()
	if r.setupErr != nil {
		log.Print(r.setupErr)
		return 2
	}
	return 0
}

// monkey SIGKILLs a random worker process of the cluster every
// kill-interval until the run ends.
func (r *runner) monkey(ctx context.Context) {
	rng := rand.New(rand.NewPCG(r.cfg.seed, 1))
	t := time.NewTicker(r.cfg.killInterval)
	defer t.Stop()
	end := time.NewTimer(time.Until(r.w.runEnd))
	defer end.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			return
		case <-t.C:
		}
		if r.c.killRandomWorker(rng) {
			r.workersKilled.Add(1)
		}
	}
}

// schedule kills the node at a third of the run and the head at two
// thirds, then measures the head's recovery.
func (r *runner) schedule(ctx context.Context, start time.Time) {
	wait := func(at time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Until(start.Add(at))):
			return true
		}
	}
	if !wait(r.cfg.duration / 3) {
		return
	}
	if r.cfg.killNode {
		if p := r.c.killNode(); p != nil {
			r.nodesKilled++
			log.Printf("killed %s (pid %d)", p.name, p.cmd.Process.Pid)
		}
		if err := r.c.addNode(); err != nil {
			r.setupErr = fmt.Errorf("the replacement node: %w", err)
			return
		}
		log.Print("a replacement node joined")
	}
	if !r.cfg.restartHead || !wait(2*r.cfg.duration/3) {
		return
	}
	var restarted time.Time
	probed := make(chan recovery, 1)
	err := r.c.restartHead(func() {
		restarted = time.Now()
		go func() { probed <- r.w.probeRecovery(ctx, restarted, serviceName, serviceNamespace) }()
	})
	if err != nil {
		r.setupErr = fmt.Errorf("the head's restart: %w", err)
	} else {
		r.headUp = time.Since(restarted)
		log.Printf("the head was killed and is up again after %v", r.headUp.Round(time.Millisecond))
	}
	if restarted.IsZero() {
		return
	}
	r.rec = <-probed
	if r.rec.taskOK == 0 || r.rec.callOK == 0 {
		r.recoverErr = errNotRecovered
		return
	}
	r.recovered = true
	log.Printf("after the head's restart: a new task succeeded after %v, a call of the detached service after %v",
		r.rec.taskOK.Round(time.Millisecond), r.rec.callOK.Round(time.Millisecond))
}

func (r *runner) print(leftovers int) {
	w := &r.w
	var out []metric
	add := func(name string, v float64, unit string) { out = append(out, metric{name, v, unit}) }
	for _, k := range []struct {
		prefix string
		t      *tally
	}{{"chaos_tasks", &w.tasks}, {"chaos_calls", &w.calls}} {
		add(k.prefix+"_submitted", float64(k.t.submitted.Load()), "count")
		add(k.prefix+"_correct", float64(k.t.correct.Load()), "count")
		add(k.prefix+"_wrong", float64(k.t.wrong.Load()), "count")
		add(k.prefix+"_failed", float64(k.t.failed.Load()), "count")
		add(k.prefix+"_hung", float64(k.t.hung.Load()), "count")
	}
	add("chaos_workers_killed", float64(r.workersKilled.Load()), "count")
	add("chaos_nodes_killed", float64(r.nodesKilled), "count")
	add("chaos_actor_restarts", float64(w.restarts.Load()), "count")
	if r.headUp > 0 {
		add("chaos_head_up_s", r.headUp.Seconds(), "s")
	}
	if r.cfg.restartHead {
		recover := -1.0
		if r.recovered {
			recover = max(r.rec.taskOK, r.rec.callOK).Seconds()
		}
		add("chaos_head_recover_s", recover, "s")
	}
	add("chaos_leftovers", float64(leftovers), "count")
	for _, m := range out {
		b, _ := json.Marshal(m)
		fmt.Printf("%s\n", b)
	}
}
