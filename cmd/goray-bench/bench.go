package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/goray/goray/sdk"
)

type harness struct {
	cfg config
}

// measure is ray_perf's timeit: round runs for the warm-up (at least
// once), then repeatedly until the duration has passed; it returns the
// rounds and the time they took. Like timeit it reads the clock once per
// step of rounds, sized from the warm-up to take about 100 us, so that for
// sub-microsecond calls the clock is not what is measured. The rate of each
// quarter of the measured time goes to stderr, as a noise indicator.
func (h *harness) measure(ctx context.Context, name string, round func() error) (rounds int, elapsed time.Duration, err error) {
	warmStart := time.Now()
	warmEnd := warmStart.Add(h.cfg.warmup)
	warmN := 0
	for warmN == 0 || time.Now().Before(warmEnd) {
		if err := ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("warm-up: %w", err)
		}
		if err := round(); err != nil {
			return 0, 0, fmt.Errorf("warm-up: %w", err)
		}
		warmN++
	}
	step := max(1, int(float64(warmN)*float64(100*time.Microsecond)/float64(time.Since(warmStart))))
	d := h.cfg.duration
	const windows = 4
	var marks [windows]struct {
		n int
		t time.Duration
	}
	w := 0
	start := time.Now()
	for rounds == 0 || elapsed < d {
		if err := ctx.Err(); err != nil {
			return rounds, elapsed, err
		}
		for range step {
			if err := round(); err != nil {
				return rounds, time.Since(start), err
			}
		}
		rounds += step
		elapsed = time.Since(start)
		for w < windows && elapsed >= d*time.Duration(w+1)/windows {
			marks[w].n, marks[w].t = rounds, elapsed
			w++
		}
	}
	var parts []string
	prevN, prevT := 0, time.Duration(0)
	for i := 0; i < w; i++ {
		if marks[i].n > prevN {
			parts = append(parts, fmt.Sprintf("%.4g", float64(marks[i].n-prevN)/(marks[i].t-prevT).Seconds()))
		}
		prevN, prevT = marks[i].n, marks[i].t
	}
	log.Printf("%s: %d rounds in %v (%d per clock read); rounds/s per quarter: %s", name, rounds, elapsed.Round(time.Millisecond), step, strings.Join(parts, " "))
	return rounds, elapsed, nil
}

// rate runs measure and reports perRound units per second.
func (h *harness) rate(ctx context.Context, name string, perRound float64, unit string, round func() error) ([]result, error) {
	n, el, err := h.measure(ctx, name, round)
	if err != nil {
		return nil, err
	}
	return []result{{Name: name, Value: float64(n) * perRound / el.Seconds(), Unit: unit}}, nil
}

// single_client_tasks_sync: ray.get(small_value.remote()), one at a time.
func benchTasksSync(ctx context.Context, h *harness) ([]result, error) {
	return h.rate(ctx, "single_client_tasks_sync", 1, "per_s", func() error {
		_, err := noop.Remote(ctx).Get(ctx)
		return err
	})
}

func submitNoops(ctx context.Context, n int) []sdk.Ref[int] {
	refs := make([]sdk.Ref[int], n)
	for i := range refs {
		refs[i] = noop.Remote(ctx)
	}
	return refs
}

func getBatch(ctx context.Context, n int) error {
	vals, err := sdk.GetAll(ctx, submitNoops(ctx, n))
	if err == nil && len(vals) != n {
		err = fmt.Errorf("GetAll returned %d values for %d refs", len(vals), n)
	}
	return err
}

// single_client_tasks_async: submit 1,000 no-op tasks, then get them all;
// tasks per second.
func benchTasksAsync(ctx context.Context, h *harness) ([]result, error) {
	return h.rate(ctx, "single_client_tasks_async", 1000, "per_s", func() error { return getBatch(ctx, 1000) })
}

// single_client_tasks_and_get_batch: the same, counted in batches per
// second.
func benchTasksAndGetBatch(ctx context.Context, h *harness) ([]result, error) {
	return h.rate(ctx, "single_client_tasks_and_get_batch", 1, "per_s", func() error { return getBatch(ctx, 1000) })
}

// single_client_wait_1k_refs: 1,000 tasks, then Wait(refs, 1) on the
// remaining ones until none is left; rounds per second.
func benchWait1kRefs(ctx context.Context, h *harness) ([]result, error) {
	return h.rate(ctx, "single_client_wait_1k_refs", 1, "per_s", func() error {
		typed := submitNoops(ctx, 1000)
		notReady := make([]sdk.ObjectRef, len(typed))
		for i, r := range typed {
			notReady[i] = r.ObjectRef
		}
		for len(notReady) > 0 {
			ready, rest, err := sdk.Wait(ctx, notReady, 1)
			if err != nil {
				return err
			}
			if len(ready) != 1 {
				return fmt.Errorf("Wait(%d refs, 1) returned %d ready", len(notReady), len(ready))
			}
			notReady = rest
		}
		return nil
	})
}

// multi_client_tasks_async: 4 clients x 10k tasks. Ray's clients are
// driver-created actors; here they are tasks on workers, each submitting
// 10k no-op tasks (nested: the worker owns them) and getting them all.
func benchMultiClientTasksAsync(ctx context.Context, h *harness) ([]result, error) {
	const clients, perClient = 4, 10000
	client := clientBatch.Options(sdk.NumCPUs(h.cfg.clientCPUs))
	log.Printf("multi_client_tasks_async: %d client tasks with %g CPU each", clients, h.cfg.clientCPUs)
	return h.rate(ctx, "multi_client_tasks_async", clients*perClient, "per_s", func() error {
		refs := make([]sdk.Ref[int], clients)
		for i := range refs {
			refs[i] = client.Remote(ctx, perClient)
		}
		vals, err := sdk.GetAll(ctx, refs)
		if err != nil {
			return err
		}
		for _, v := range vals {
			if v != perClient {
				return fmt.Errorf("a client reported %d tasks, want %d", v, perClient)
			}
		}
		return nil
	})
}

// single_client_put_calls_Plasma_Store: ray.put(0).
func benchPutCalls(ctx context.Context, h *harness) ([]result, error) {
	return h.rate(ctx, "single_client_put_calls_Plasma_Store", 1, "per_s", func() error {
		_, err := sdk.Put(ctx, 0)
		return err
	})
}

// single_client_get_calls_Plasma_Store: ray.get of one small put value.
func benchGetCalls(ctx context.Context, h *harness) ([]result, error) {
	ref, err := sdk.Put(ctx, 0)
	if err != nil {
		return nil, err
	}
	res, err := h.rate(ctx, "single_client_get_calls_Plasma_Store", 1, "per_s", func() error {
		_, err := ref.Get(ctx)
		return err
	})
	runtime.KeepAlive(ref)
	return res, err
}

// single_client_put_gigabytes, with its floor: a one-thread memcpy of the
// same size. The two alternate round by round (a put, then a copy), so both
// see the same machine: on a shared host memory bandwidth drifts by tens of
// percent within seconds, and the ratio is the figure to trust.
func benchPutGigabytes(ctx context.Context, h *harness) ([]result, error) {
	size := h.cfg.putSize
	gb := float64(size) / 1e9
	src := make([]byte, size)
	// Real bytes: untouched pages would all map the zero page and read
	// faster than memory.
	for i := range min(size, 4093) {
		src[i] = byte(i*7 + 1)
	}
	for n := min(size, 4093); n < size; n *= 2 {
		copy(src[n:], src[:n])
	}
	dst := make([]byte, size)
	copy(dst, src) // fault dst in
	var out []result

	// Touch the store first: puts that land on segment pages never
	// written before pay the kernel's page allocation (first touch), and
	// whether a put lands there depends on how soon the previous ref's
	// cleanup ran. Holding puts until most of the store is used, then
	// dropping them, makes the measured rounds steady; the held puts give
	// the first-touch figure.
	slots := max(1, int(h.cfg.storeMemory/uint64(size))-1)
	held := make([]sdk.Ref[[]byte], 0, slots)
	t0 := time.Now()
	for range slots {
		ref, err := sdk.Put(ctx, src)
		if err != nil {
			return out, fmt.Errorf("first-touch put of %d bytes (%d held): %w", size, len(held), err)
		}
		held = append(held, ref)
	}
	cold := time.Since(t0)
	log.Printf("single_client_put_gigabytes: %d first-touch puts of %d bytes in %v", slots, size, cold.Round(time.Millisecond))
	runtime.KeepAlive(held)
	held = nil
	runtime.GC()
	time.Sleep(50 * time.Millisecond) // let the refs' cleanups run

	var putTimes, gcTimes, copyTimes []time.Duration
	n, _, err := h.measure(ctx, "single_client_put_gigabytes+memcpy", func() error {
		t0 := time.Now()
		ref, err := sdk.Put(ctx, src)
		if err != nil {
			return err
		}
		t1 := time.Now()
		_ = ref
		// The ref is gone: let its cleanup free the stored copy, as
		// Python's refcount does when ray.put's result is dropped.
		runtime.GC()
		t2 := time.Now()
		copy(dst, src)
		t3 := time.Now()
		putTimes = append(putTimes, t1.Sub(t0))
		gcTimes = append(gcTimes, t2.Sub(t1))
		copyTimes = append(copyTimes, t3.Sub(t2))
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("put of %d bytes: %w", size, err)
	}
	// The slices include the warm-up rounds, which came first.
	w := len(putTimes) - n
	log.Printf("single_client_put_gigabytes: Put calls took %v; runtime.GC after each (counted in the put rate) %v", roundAll(putTimes[w:]), roundAll(gcTimes[w:]))
	log.Printf("memcpy_GB_per_s_1thread: copies took %v", roundAll(copyTimes[w:]))
	putTime := sum(putTimes[w:]) + sum(gcTimes[w:])
	copyTime := sum(copyTimes[w:])
	memcpy := float64(n) * gb / copyTime.Seconds()
	put := float64(n) * gb / putTime.Seconds()
	out = append(out,
		result{Name: "memcpy_GB_per_s_1thread", Value: memcpy, Unit: "GB_per_s"},
		result{Name: "single_client_put_gigabytes", Value: put, Unit: "GB_per_s"},
		result{Name: "single_client_put_gigabytes_vs_memcpy", Value: put / memcpy, Unit: "ratio"},
		result{Name: "single_client_put_gigabytes_first_touch", Value: float64(slots) * gb / cold.Seconds(), Unit: "GB_per_s"},
	)
	runtime.KeepAlive(src)
	runtime.KeepAlive(dst)
	src, dst = nil, nil

	// The store must not fill up: after the refs are gone its usage falls
	// back. The raylet reports its state about once a second.
	runtime.GC()
	time.Sleep(1500 * time.Millisecond)
	if st, err := sdk.ClusterStatus(ctx); err == nil && len(st.Nodes) > 0 {
		n := st.Nodes[0]
		log.Printf("object store after the puts: %d bytes used in %d objects of %d", n.StoreUsed, n.StoreObjects, n.StoreCapacity)
		out = append(out, result{Name: "object_store_used_after_put_gigabytes", Value: float64(n.StoreUsed), Unit: "bytes"})
	} else {
		log.Printf("ClusterStatus: %v", err)
	}
	return out, nil
}

// single_client_get_object_containing_10k_refs: get of one object holding
// 10,000 refs to put values. (Ray builds it in a task; here the driver puts
// it, so the outer object and the refs are all owned by the driver.)
func benchGet10kRefs(ctx context.Context, h *harness) ([]result, error) {
	inner := make([]sdk.Ref[int], 10000)
	for i := range inner {
		r, err := sdk.Put(ctx, 1)
		if err != nil {
			return nil, err
		}
		inner[i] = r
	}
	outer, err := sdk.Put(ctx, inner)
	if err != nil {
		return nil, err
	}
	res, err := h.rate(ctx, "single_client_get_object_containing_10k_refs", 1, "per_s", func() error {
		refs, err := outer.Get(ctx)
		if err == nil && len(refs) != len(inner) {
			err = fmt.Errorf("got %d refs, want %d", len(refs), len(inner))
		}
		return err
	})
	runtime.KeepAlive(inner)
	runtime.KeepAlive(outer)
	return res, err
}

// init_to_first_result_s: fresh drivers (this binary re-run with
// -init-child), each timing sdk.Init to the first task result; the median.
func benchInitToFirstResult(ctx context.Context, h *harness) ([]result, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var figures []float64
	for i := 0; i < h.cfg.initRuns; i++ {
		var stdout bytes.Buffer
		cmd := exec.CommandContext(ctx, exe, "-init-child", filepath.Join(h.cfg.sessions, fmt.Sprintf("init-%d", i)))
		cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("init child %d: %w (stdout %q)", i, err, stdout.String())
		}
		var r result
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil || r.Name != "init_to_first_result_s" {
			return nil, fmt.Errorf("init child %d: unexpected output %q (%v)", i, stdout.String(), err)
		}
		figures = append(figures, r.Value)
	}
	log.Printf("init_to_first_result_s: runs %v", figures)
	slices.Sort(figures)
	return []result{{Name: "init_to_first_result_s", Value: figures[len(figures)/2], Unit: "s"}}, nil
}

// runInitChild is the fresh driver of init_to_first_result_s; sessionDir
// "" lets goray pick one. It starts its cluster with the defaults but for
// the CPUs, as a user's first sdk.Init would.
func runInitChild(sessionDir string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := []sdk.InitOption{sdk.NodeCPUs(float64(runtime.NumCPU())), sdk.LogWriter(os.Stderr)}
	if sessionDir != "" {
		opts = append(opts, sdk.SessionDir(sessionDir))
	}
	t0 := time.Now()
	if err := sdk.Init(ctx, opts...); err != nil {
		log.Printf("init child: sdk.Init: %v", err)
		return 1
	}
	initDone := time.Since(t0)
	_, err := noop.Remote(ctx).Get(ctx)
	total := time.Since(t0)
	if err != nil {
		log.Printf("init child: first task: %v", err)
		sdk.Shutdown()
		return 1
	}
	log.Printf("init child: sdk.Init %v, first result %v after it", initDone.Round(time.Millisecond), (total - initDone).Round(time.Millisecond))
	b, _ := json.Marshal(result{Name: "init_to_first_result_s", Value: total.Seconds(), Unit: "s"})
	fmt.Printf("%s\n", b)
	t1 := time.Now()
	sdk.Shutdown()
	log.Printf("init child: sdk.Shutdown %v", time.Since(t1).Round(time.Millisecond))
	return 0
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}
