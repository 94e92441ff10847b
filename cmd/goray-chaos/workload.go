package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goray/goray/sdk"
)

// tally counts one kind of work: every submitted task or call ends as
// exactly one of correct, wrong, failed or hung.
type tally struct {
	submitted, correct, wrong, failed, hung atomic.Int64
}

// faultLog keeps the distinct failure messages, grouped with numbers and
// ids masked so that the same fault on different pids counts once.
type faultLog struct {
	mu      sync.Mutex
	byKey   map[string]*fault
	ordinal int
	// start is the run's start: faults are dated from it, to be matched
	// with the node's kill at a third of the run and the head's at two
	// thirds.
	start time.Time
}

type fault struct {
	kind       string
	example    string
	count      int
	first      int
	at, lastAt time.Duration
}

var idPattern = regexp.MustCompile(`[0-9a-f]{8,}|[0-9]+`)

func (f *faultLog) add(kind, msg string) {
	key := kind + "\x00" + idPattern.ReplaceAllString(msg, "N")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byKey == nil {
		f.byKey = map[string]*fault{}
	}
	at := time.Since(f.start)
	e := f.byKey[key]
	if e == nil {
		f.ordinal++
		e = &fault{kind: kind, example: msg, first: f.ordinal, at: at}
		f.byKey[key] = e
	}
	e.count++
	e.lastAt = at
}

// summary lists the most frequent distinct faults first.
func (f *faultLog) summary(max int) (lines []string, distinct int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	all := make([]*fault, 0, len(f.byKey))
	for _, e := range f.byKey {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].count != all[j].count {
			return all[i].count > all[j].count
		}
		return all[i].first < all[j].first
	})
	for i, e := range all {
		if i == max {
			break
		}
		when := fmt.Sprintf("at %+.1fs", e.at.Seconds())
		if e.count > 1 {
			when = fmt.Sprintf("%+.1fs to %+.1fs", e.at.Seconds(), e.lastAt.Seconds())
		}
		lines = append(lines, fmt.Sprintf("%dx %s (%s into the run): %s", e.count, e.kind, when, e.example))
	}
	return lines, len(all)
}

type workload struct {
	runEnd time.Time
	// hangDeadline is when work not yet done counts as hung.
	hangDeadline time.Time
	tasks, calls tally
	faults       faultLog
	// restarts counts actor incarnations seen beyond each actor's first.
	restarts atomic.Int64
}

var (
	step     = stepFn.Options(sdk.MaxRetries(-1))
	makeBlob = makeBlobFn.Options(sdk.MaxRetries(-1))
	blobStep = blobStepFn.Options(sdk.MaxRetries(-1))
	combine  = combineFn.Options(sdk.MaxRetries(-1))
)

// get waits for ref until the hang deadline and sorts the outcome into t:
// check returns "" for a right value, or what is wrong with it.
func get[T any](ctx context.Context, w *workload, t *tally, kind string, what string, ref sdk.Ref[T], check func(T) string) (T, bool) {
	gctx, cancel := context.WithDeadline(ctx, w.hangDeadline)
	defer cancel()
	v, err := ref.Get(gctx)
	switch {
	case err != nil && gctx.Err() != nil && ctx.Err() == nil:
		t.hung.Add(1)
		w.faults.add(kind+" hung", fmt.Sprintf("%s not done %v after the run ended", what, w.hangDeadline.Sub(w.runEnd)))
		return v, false
	case err != nil:
		t.failed.Add(1)
		w.faults.add(kind+" failed", fmt.Sprintf("%s: %v", what, err))
		return v, false
	}
	if msg := check(v); msg != "" {
		t.wrong.Add(1)
		w.faults.add(kind+" wrong", fmt.Sprintf("%s: %s", what, msg))
		return v, false
	}
	t.correct.Add(1)
	return v, true
}

func wantUint(want uint64) func(uint64) string {
	return func(got uint64) string {
		if got != want {
			return fmt.Sprintf("got %#x, want %#x", got, want)
		}
		return ""
	}
}

func wantBytes(want []byte) func([]byte) string {
	return func(got []byte) string {
		if !bytes.Equal(got, want) {
			return fmt.Sprintf("got %d bytes (checksum %#x), want %d bytes (checksum %#x)", len(got), checksum(got), len(want), checksum(want))
		}
		return ""
	}
}

// taskLoop runs units of dependent tasks until the run ends. A unit is a
// chain of small tasks, each taking the previous one's ref, and three
// tasks on 150 KiB blobs in shared memory: one makes a blob, one
// transforms it with the chain's last value, and one takes both blobs.
// Every task's result is fetched and compared with the value computed
// here.
func (w *workload) taskLoop(ctx context.Context, id int, seed uint64) {
	for n := uint64(0); time.Now().Before(w.runEnd) && ctx.Err() == nil; n++ {
		w.unit(ctx, mix(seed^uint64(id)<<40^n))
	}
}

func (w *workload) unit(ctx context.Context, seed uint64) {
	chain := make([]sdk.Ref[uint64], chainLen)
	want := make([]uint64, chainLen)
	chain[0] = step.Remote(ctx, seed, 0)
	want[0] = stepValue(seed, 0)
	for k := 1; k < chainLen; k++ {
		chain[k] = step.RemoteArgs(ctx, chain[k-1], sdk.Val(uint64(k)))
		want[k] = stepValue(want[k-1], uint64(k))
	}
	b1 := makeBlob.Remote(ctx, seed, blobSize)
	b2 := blobStep.RemoteArgs(ctx, b1, chain[chainLen-1])
	sum := combine.RemoteArgs(ctx, b1, b2)
	w.tasks.submitted.Add(chainLen + 3)

	wantB1 := blobBytes(seed, blobSize)
	wantB2 := blobStepBytes(wantB1, want[chainLen-1])
	for k, r := range chain {
		get(ctx, w, &w.tasks, "task", fmt.Sprintf("Step %d of chain %#x", k, seed), r, wantUint(want[k]))
	}
	get(ctx, w, &w.tasks, "task", fmt.Sprintf("MakeBlob %#x", seed), b1, wantBytes(wantB1))
	get(ctx, w, &w.tasks, "task", fmt.Sprintf("BlobStep of blob %#x", seed), b2, wantBytes(wantB2))
	get(ctx, w, &w.tasks, "task", fmt.Sprintf("Combine of blobs %#x", seed), sum, wantUint(checksum(wantB1, wantB2)))
}

// counterCheck follows one caller's Inc replies in call order. In one
// incarnation the count goes up by one per call; a restart starts a new
// incarnation whose first reply counts 1, since the calls in flight are
// re-sent to it in order. After a call failed the count may have moved by
// more than one (the failed call may have run), so the next reply is only
// checked for going up.
type counterCheck struct {
	incarnation string
	count       int64
	seen        map[string]bool
	lost        bool
}

// next checks r, the reply to Inc(seq), and returns what is wrong with it.
func (c *counterCheck) next(r IncReply, seq int64) string {
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	lost := c.lost
	c.lost = false
	switch {
	case r.Seq != seq:
		c.lost = true
		return fmt.Sprintf("Inc(%d) answered for Inc(%d)", seq, r.Seq)
	case r.Incarnation == c.incarnation:
		prev := c.count
		c.count = r.Count
		switch {
		case lost && r.Count <= prev:
			return fmt.Sprintf("Inc(%d) counted %d in incarnation %s after %d: the count went back", seq, r.Count, r.Incarnation, prev)
		case !lost && r.Count != prev+1:
			return fmt.Sprintf("Inc(%d) counted %d in incarnation %s after %d: a call was lost or ran twice", seq, r.Count, r.Incarnation, prev)
		}
		return ""
	case c.seen[r.Incarnation]:
		return fmt.Sprintf("Inc(%d) answered by incarnation %s, which had been replaced by %s", seq, r.Incarnation, c.incarnation)
	}
	c.seen[r.Incarnation] = true
	c.incarnation, c.count = r.Incarnation, r.Count
	if r.Count != 1 && !(lost && r.Count > 1) {
		return fmt.Sprintf("Inc(%d) was the first reply of incarnation %s but counted %d: a call was lost or ran twice", seq, r.Incarnation, r.Count)
	}
	return ""
}

// callBatch is how many Inc calls each caller keeps in flight, so that a
// restart finds calls queued behind the one that was running.
const callBatch = 4

// callLoop calls Inc on a continuously until the run ends and checks each
// reply with a counterCheck. The actor's first incarnation has answered
// before the run, so every later incarnation is a restart.
func (w *workload) callLoop(ctx context.Context, name string, a sdk.Actor[counter], chk *counterCheck) {
	seq := int64(1 << 20)
	for time.Now().Before(w.runEnd) && ctx.Err() == nil {
		refs := make([]sdk.Ref[IncReply], callBatch)
		for i := range refs {
			refs[i] = incMethod.Remote(ctx, a, seq+int64(i))
		}
		w.calls.submitted.Add(callBatch)
		for i, r := range refs {
			s := seq + int64(i)
			before := len(chk.seen)
			checked := false
			get(ctx, w, &w.calls, "call", fmt.Sprintf("%s.Inc(%d)", name, s), r, func(rep IncReply) string {
				checked = true
				return chk.next(rep, s)
			})
			if !checked {
				chk.lost = true
			}
			if len(chk.seen) > before {
				w.restarts.Add(int64(len(chk.seen) - before))
			}
		}
		seq += callBatch
	}
}

// recovery measures how long after the head's restart a new task and a
// call to the detached service (found again by name) first succeed. Each
// attempt counts as a task or a call; a failed one is tried again.
type recovery struct {
	taskOK, callOK time.Duration
}

func (w *workload) probeRecovery(ctx context.Context, since time.Time, serviceName, namespace string) recovery {
	var rec recovery
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := uint64(0); ctx.Err() == nil && time.Now().Before(w.hangDeadline); i++ {
			w.tasks.submitted.Add(1)
			r := step.Remote(ctx, 42, i)
			if _, ok := get(ctx, w, &w.tasks, "task", "Step submitted after the head's restart", r, wantUint(stepValue(42, i))); ok {
				rec.taskOK = time.Since(since)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for i := int64(0); ctx.Err() == nil && time.Now().Before(w.hangDeadline); i++ {
			w.calls.submitted.Add(1)
			gctx, cancel := context.WithDeadline(ctx, w.hangDeadline)
			h, err := sdk.GetActor[counter](gctx, serviceName, namespace)
			cancel()
			if err != nil {
				if time.Now().After(w.hangDeadline) {
					w.calls.hung.Add(1)
					w.faults.add("call hung", "GetActor of the detached service after the head's restart")
				} else {
					w.calls.failed.Add(1)
					w.faults.add("call failed", fmt.Sprintf("GetActor of the detached service after the head's restart: %v", err))
				}
				time.Sleep(100 * time.Millisecond)
				continue
			}
			r := pingMethod.Remote(ctx, h, i)
			if _, ok := get(ctx, w, &w.calls, "call", "Ping of the detached service after the head's restart", r, func(v int64) string {
				if v != i+1 {
					return fmt.Sprintf("got %d, want %d", v, i+1)
				}
				return ""
			}); ok {
				rec.callOK = time.Since(since)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	wg.Wait()
	return rec
}

// errNotRecovered marks a head restart after which the probes never
// succeeded.
var errNotRecovered = errors.New("no new task or no call of the detached service succeeded after the head's restart")
