package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goray/goray/sdk"
)

// Actor benchmarks, as ray_perf's. Its Actor class is declared with
// num_cpus=0. goray's default actor (as Ray's: 1 CPU to be placed, none held
// while running) also lets 32 of them, and the creation benchmark's
// hundreds, run on a 2-CPU node: they are placed two at a time, each
// giving its CPU back once started. So the harness uses the default, and
// -actor-cpus N (N >= 0) gives them ActorCPUs(N) instead. (At the time of
// writing any resource option passed to Options panics inside the SDK, the
// class's running-resources map being nil after its clone; actorClass
// turns that into the benchmark's error.)

// actorClass is the benchmark actor's class with the harness's options. A
// panic in the SDK's option code comes back as an error.
func (h *harness) actorClass(opts ...sdk.ActorOption) (class *sdk.ActorClass0[benchActor], err error) {
	if h.cfg.actorCPUs >= 0 {
		opts = append([]sdk.ActorOption{sdk.NumCPUs(h.cfg.actorCPUs)}, opts...)
	}
	if len(opts) == 0 {
		return benchActorClass, nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("actor class options (-actor-cpus %g): panic: %v", h.cfg.actorCPUs, r)
		}
	}()
	return benchActorClass.Options(opts...), nil
}

// actorSet is a group of benchmark actors and the processes they run in.
type actorSet struct {
	actors []sdk.Actor[benchActor]
	pids   []int
}

// startActors creates n actors of class, then calls each once (Pid), so
// every one is alive and connected before anything is measured. It
// returns the actors created so far even when it fails, for kill.
func startActors(ctx context.Context, class *sdk.ActorClass0[benchActor], n int) (*actorSet, time.Duration, time.Duration, error) {
	s := &actorSet{}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		a, err := class.Remote(ctx)
		if err != nil {
			return s, 0, 0, fmt.Errorf("create actor %d of %d: %w", i+1, n, err)
		}
		s.actors = append(s.actors, a)
	}
	registered := time.Since(t0)
	refs := make([]sdk.Ref[int], n)
	for i, a := range s.actors {
		refs[i] = actorPid.Remote(ctx, a)
	}
	pids, err := sdk.GetAll(ctx, refs)
	if err != nil {
		return s, registered, time.Since(t0), fmt.Errorf("first call on %d new actors: %w", n, err)
	}
	alive := time.Since(t0)
	s.pids = pids
	distinct := map[int]bool{}
	for _, p := range pids {
		distinct[p] = true
	}
	if len(distinct) != n {
		return s, registered, alive, fmt.Errorf("%d actors run in %d processes, want one process each", n, len(distinct))
	}
	return s, registered, alive, nil
}

// kill kills every actor for good and waits until their processes are gone
// (exited and reaped by the raylet), so the next benchmark starts on a
// quiet machine. It is given its own deadline: it must run even when the
// benchmark's context has expired.
func (s *actorSet) kill(name string) error {
	if s == nil || len(s.actors) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	var errs []error
	for _, a := range s.actors {
		if err := sdk.Kill(ctx, a, true); err != nil {
			errs = append(errs, fmt.Errorf("kill %v: %w", a, err))
		}
	}
	killed := time.Since(t0)
	left := s.pids
	for len(left) > 0 && ctx.Err() == nil {
		left = liveProcesses(left)
		if len(left) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if len(left) > 0 {
		zombies := 0
		for _, p := range left {
			if procState(p) == "Z" {
				zombies++
			}
		}
		errs = append(errs, fmt.Errorf("%d of %d actor processes still there %v after the kill (%d zombies), e.g. pid %d",
			len(left), len(s.pids), time.Since(t0).Round(time.Millisecond), zombies, left[0]))
	}
	log.Printf("%s: killed %d actors in %v, their processes gone after %v", name, len(s.actors), killed.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	s.actors = nil
	return errors.Join(errs...)
}

// liveProcesses returns the pids that still have a process, zombies
// included (exited but not yet reaped).
func liveProcesses(pids []int) []int {
	var out []int
	for _, p := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(p)); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// procState is the state letter of /proc/PID/stat ("" if gone).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

// memOf sums the resident memory (RSS) and the proportional set size (PSS:
// shared pages, such as the binary's text and the object store mapping,
// divided among the processes sharing them) of the processes.
func memOf(pids []int) (rss, pss uint64) {
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			switch f[0] {
			case "Rss:":
				rss += kb << 10
			case "Pss:":
				pss += kb << 10
			}
		}
	}
	return rss, pss
}

// cpuTimes returns the user+system CPU time of this process and of its
// reaped children.
func cpuTimes() (self, children time.Duration) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) == nil {
		children = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return self, children
}

// memAvailable is MemAvailable of /proc/meminfo in bytes (0 if unknown).
func memAvailable() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// withActors runs body with n fresh actors (with opts) and kills them
// afterwards, whatever body returned.
func (h *harness) withActors(ctx context.Context, name string, n int, opts []sdk.ActorOption, body func(s *actorSet) ([]result, error)) (res []result, err error) {
	class, err := h.actorClass(opts...)
	if err != nil {
		return nil, err
	}
	s, registered, alive, err := startActors(ctx, class, n)
	defer func() {
		if kerr := s.kill(name); kerr != nil {
			err = errors.Join(err, kerr)
		}
	}()
	if err != nil {
		return nil, err
	}
	log.Printf("%s: %d actors registered in %v, all alive after %v", name, n, registered.Round(time.Millisecond), alive.Round(time.Millisecond))
	return body(s)
}

// callBatch submits n calls spread round-robin over actors, then gets them
// all.
func callBatch(ctx context.Context, actors []sdk.Actor[benchActor], n int) error {
	refs := make([]sdk.Ref[int], n)
	for i := range refs {
		refs[i] = actorSmallValue.Remote(ctx, actors[i%len(actors)])
	}
	_, err := checkAll(ctx, refs)
	return err
}

// 1_1_actor_calls_sync: one actor, ray.get(a.small_value.remote()) one at
// a time.
func bench11ActorSync(ctx context.Context, h *harness) ([]result, error) {
	const name = "1_1_actor_calls_sync"
	return h.withActors(ctx, name, 1, nil, func(s *actorSet) ([]result, error) {
		a := s.actors[0]
		return h.rate(ctx, name, 1, "per_s", func() error {
			_, err := actorSmallValue.Remote(ctx, a).Get(ctx)
			return err
		})
	})
}

// 1_1_actor_calls_async: one actor, 1,000 calls, then a get of them all;
// calls per second.
func bench11ActorAsync(ctx context.Context, h *harness) ([]result, error) {
	const name = "1_1_actor_calls_async"
	return h.withActors(ctx, name, 1, nil, func(s *actorSet) ([]result, error) {
		return h.rate(ctx, name, 1000, "per_s", func() error { return callBatch(ctx, s.actors, 1000) })
	})
}

// 1_1_actor_calls_concurrent: the same on an actor with max_concurrency=16.
func bench11ActorConcurrent(ctx context.Context, h *harness) ([]result, error) {
	const name = "1_1_actor_calls_concurrent"
	return h.withActors(ctx, name, 1, []sdk.ActorOption{sdk.MaxConcurrency(16)}, func(s *actorSet) ([]result, error) {
		return h.rate(ctx, name, 1000, "per_s", func() error { return callBatch(ctx, s.actors, 1000) })
	})
}

// 1_n_actor_calls_async: the driver, 1,000 calls spread round-robin over
// -actors actors (32, Ray's cpu_count // 2 on its 64-vCPU machine), then a
// get of them all. (Ray's caller is a Client actor submitting 5,000 calls to
// each server in turn: see docs/benchmarks.md.)
func bench1NActorAsync(ctx context.Context, h *harness) ([]result, error) {
	const name = "1_n_actor_calls_async"
	return h.withActors(ctx, name, h.cfg.nActors, nil, func(s *actorSet) ([]result, error) {
		return h.rate(ctx, name, 1000, "per_s", func() error { return callBatch(ctx, s.actors, 1000) })
	})
}

// Calls per caller task in the n:n benchmarks (Ray's n = 5000).
const nnCallsPerClient = 5000

// nnClients is ray_perf's m: caller tasks of the n:n benchmarks.
const nnClients = 4

// n_n_actor_calls_async: 4 caller tasks (ray_perf's work(actors), with
// -client-cpus CPUs as multi_client_tasks_async's clients), each making
// 5,000 calls spread round-robin over the -actors actors and getting them;
// total calls per second.
func benchNNActorAsync(ctx context.Context, h *harness) ([]result, error) {
	const name = "n_n_actor_calls_async"
	return h.nnActorCalls(ctx, name, actorClient)
}

// n_n_actor_calls_with_arg_async: the same, but each caller puts a tiny
// value once and passes its ref to every call (ray_perf's
// small_value_batch_arg).
func benchNNActorWithArgAsync(ctx context.Context, h *harness) ([]result, error) {
	const name = "n_n_actor_calls_with_arg_async"
	return h.nnActorCalls(ctx, name, actorClientArg)
}

func (h *harness) nnActorCalls(ctx context.Context, name string, client *sdk.Func2[[]sdk.Actor[benchActor], int, int]) ([]result, error) {
	c := client.Options(sdk.NumCPUs(h.cfg.clientCPUs))
	log.Printf("%s: %d caller tasks with %g CPU each, %d calls each over %d actors", name, nnClients, h.cfg.clientCPUs, nnCallsPerClient, h.cfg.nActors)
	return h.withActors(ctx, name, h.cfg.nActors, nil, func(s *actorSet) ([]result, error) {
		return h.rate(ctx, name, nnClients*nnCallsPerClient, "per_s", func() error {
			refs := make([]sdk.Ref[int], nnClients)
			for i := range refs {
				refs[i] = c.Remote(ctx, s.actors, nnCallsPerClient)
			}
			vals, err := sdk.GetAll(ctx, refs)
			if err != nil {
				return err
			}
			for _, v := range vals {
				if v != nnCallsPerClient {
					return fmt.Errorf("a caller reported %d calls, want %d", v, nnCallsPerClient)
				}
			}
			return nil
		})
	})
}

// actor_creation_per_s: create -actor-creation-count actors, each on a
// worker process of its own, then call each once to confirm it is alive;
// actors per second over the whole (one pass, no warm-up: a second pass
// would measure the same thing). actor_creation_s is that pass's time.
// The actors are killed afterwards and their processes waited for.
func benchActorCreation(ctx context.Context, h *harness) ([]result, error) {
	const name = "actor_creation_per_s"
	n := h.cfg.actorCreationCount
	class, err := h.actorClass()
	if err != nil {
		return nil, err
	}
	memBefore := memAvailable()
	selfBefore, childrenBefore := cpuTimes()
	s, registered, alive, err := startActors(ctx, class, n)
	selfAlive, _ := cpuTimes()
	if s != nil && len(s.pids) > 0 {
		rss, pss := memOf(s.pids)
		memAfter := memAvailable()
		log.Printf("%s: %d actor processes: RSS %d MB in all, PSS %d MB in all (%.1f MB each); MemAvailable %d MB before, %d MB with them up",
			name, len(s.pids), rss>>20, pss>>20, float64(pss)/float64(len(s.pids))/(1<<20), memBefore>>20, memAfter>>20)
	}
	if kerr := s.kill(name); kerr != nil {
		err = errors.Join(err, kerr)
	}
	if err != nil {
		return nil, err
	}
	// The actors' processes are children of this one (the embedded
	// raylet starts them) and have been reaped: their CPU time is in
	// RUSAGE_CHILDREN now.
	_, childrenAfter := cpuTimes()
	log.Printf("%s: %d actors registered (Remote returned) in %v, all answered a call after %v; CPU: this process (driver, raylet, GCS) %v until then, the actors' processes %v in all (%v each, start to kill)",
		name, n, registered.Round(time.Millisecond), alive.Round(time.Millisecond), (selfAlive - selfBefore).Round(time.Millisecond),
		(childrenAfter - childrenBefore).Round(time.Millisecond), ((childrenAfter - childrenBefore) / time.Duration(n)).Round(10*time.Microsecond))
	return []result{
		{Name: name, Value: float64(n) / alive.Seconds(), Unit: "per_s"},
		{Name: "actor_creation_s", Value: alive.Seconds(), Unit: "s"},
	}, nil
}

// benchPackedActorCreation creates 10,000 packed actors (sdk.Packed():
// they share a worker process per job and node, each its own Proto.Actor
// actor), confirms each with one call, and kills them: Ray's "10k actors"
// scalability figure, here on one 2-core node.
func benchPackedActorCreation(ctx context.Context, h *harness) ([]result, error) {
	const n = 10000
	class := benchActorClass.Options(sdk.Packed())
	t0 := time.Now()
	actors := make([]sdk.Actor[benchActor], n)
	for i := range actors {
		a, err := class.Remote(ctx)
		if err != nil {
			return nil, fmt.Errorf("create packed actor %d of %d: %w", i+1, n, err)
		}
		actors[i] = a
	}
	registered := time.Since(t0)
	refs := make([]sdk.Ref[int], n)
	for i, a := range actors {
		refs[i] = actorPid.Remote(ctx, a)
	}
	pids, err := sdk.GetAll(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("first call on %d packed actors: %w", n, err)
	}
	alive := time.Since(t0)
	distinct := map[int]bool{}
	for _, p := range pids {
		distinct[p] = true
	}
	log.Printf("packed_actor_creation_per_s: %d actors registered in %v, all answered after %v, in %d process(es)",
		n, registered.Round(time.Millisecond), alive.Round(time.Millisecond), len(distinct))
	kctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, a := range actors {
		if err := sdk.Kill(kctx, a, true); err != nil {
			return nil, fmt.Errorf("kill packed actor: %w", err)
		}
	}
	return []result{
		{Name: "packed_actor_creation_per_s", Value: float64(n) / alive.Seconds(), Unit: "per_s"},
		{Name: "packed_actor_creation_s", Value: alive.Seconds(), Unit: "s"},
	}, nil
}
