package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

func TestActorBasics(t *testing.T) {
	ctx := startCluster(t)
	c, err := CounterActor.Remote(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Calls from one caller run in submission order.
	refs := make([]sdk.Ref[int], 100)
	for i := range refs {
		refs[i] = CounterInc.Remote(ctx, c, 1)
	}
	vals, err := sdk.GetAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if v != 11+i {
			t.Fatalf("call %d returned %d, want %d (out of order?)", i, v, 11+i)
		}
	}
	// A handle passed to a task works there; state is shared.
	if v, err := UseCounter.Remote(ctx, c, 5).Get(ctx); err != nil || v != 115 {
		t.Fatalf("UseCounter = %v, %v", v, err)
	}
	// A failing method fails that call only.
	if _, err := CounterFail.Remote(ctx, c, "error").Get(ctx); !errors.Is(err, ErrTeapot) {
		t.Fatalf("method error: %v", err)
	}
	if _, err := CounterFail.Remote(ctx, c, "panic").Get(ctx); err == nil || !strings.Contains(err.Error(), "counter panic") {
		t.Fatalf("method panic: %v", err)
	}
	if v, err := CounterGet.Remote(ctx, c).Get(ctx); err != nil || v != 115 {
		t.Fatalf("after failures Get = %v, %v", v, err)
	}
	// The actor runs in a worker process.
	if pid, err := CounterPid.Remote(ctx, c).Get(ctx); err != nil || pid == 0 {
		t.Fatalf("Pid = %v, %v", pid, err)
	}
}

func TestActorConstructorFailure(t *testing.T) {
	ctx := startCluster(t)
	c, err := CounterActor.Remote(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, err := CounterGet.Remote(ctx, c).Get(ctx, sdk.Timeout(30*time.Second))
		if !errors.Is(err, sdk.ErrActorDied) || !strings.Contains(err.Error(), "negative start") {
			t.Fatalf("call on an actor whose constructor failed: %v", err)
		}
	}
}

func TestNamedActors(t *testing.T) {
	ctx := startCluster(t)
	c, err := CounterActor.Options(sdk.Name("counter")).Remote(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CounterActor.Options(sdk.Name("counter")).Remote(ctx, 2); err == nil || !strings.Contains(err.Error(), "counter") {
		t.Fatalf("duplicate name: %v", err)
	}
	same, err := CounterActor.Options(sdk.Name("counter"), sdk.GetIfExists()).Remote(ctx, 3)
	if err != nil || same.ID() != c.ID() {
		t.Fatalf("GetIfExists: %v, %v (want %v)", same, err, c)
	}
	found, err := sdk.GetActor[Counter](ctx, "counter", "")
	if err != nil || found.ID() != c.ID() {
		t.Fatalf("GetActor: %v, %v", found, err)
	}
	if v, err := CounterInc.Remote(ctx, found, 1).Get(ctx); err != nil || v != 2 {
		t.Fatalf("call through the found handle: %v, %v", v, err)
	}
	if _, err := sdk.GetActor[Counter](ctx, "nobody", ""); err == nil {
		t.Fatal("GetActor of an unknown name succeeded")
	}
	// Killing frees the name.
	if err := sdk.Kill(ctx, c, true); err != nil {
		t.Fatal(err)
	}
	if _, err := CounterGet.Remote(ctx, c).Get(ctx, sdk.Timeout(30*time.Second)); !errors.Is(err, sdk.ErrActorDied) {
		t.Fatalf("call after Kill: %v", err)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		_, err := CounterActor.Options(sdk.Name("counter")).Remote(ctx, 5)
		return err
	})
}

func TestActorRestarts(t *testing.T) {
	ctx := startCluster(t)
	// No restarts: a crash kills the actor for good.
	c, err := CounterActor.Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CounterInc.Remote(ctx, c, 1).Get(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := CounterCrash.Remote(ctx, c).Get(ctx); !errors.Is(err, sdk.ErrActorDied) {
		t.Fatalf("crashing call: %v", err)
	}
	if _, err := CounterGet.Remote(ctx, c).Get(ctx, sdk.Timeout(30*time.Second)); !errors.Is(err, sdk.ErrActorDied) {
		t.Fatalf("call on a dead actor: %v", err)
	}

	// With restarts: re-created with fresh state, and it knows it.
	r, err := CounterActor.Options(sdk.MaxRestarts(2)).Remote(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := CounterInc.Remote(ctx, r, 1).Get(ctx); err != nil || v != 101 {
		t.Fatalf("Inc = %v, %v", v, err)
	}
	if was, err := CounterRestarted.Remote(ctx, r).Get(ctx); err != nil || was {
		t.Fatalf("WasRestarted before a crash = %v, %v", was, err)
	}
	if _, err := CounterCrash.Remote(ctx, r).Get(ctx); !errors.Is(err, sdk.ErrActorDied) {
		t.Fatalf("crash without task retries: %v", err)
	}
	// Calls made while it restarts fail at once (MaxTaskRetries 0); once
	// it is back they run on fresh state.
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		v, err := CounterGet.Remote(ctx, r).Get(ctx, sdk.Timeout(30*time.Second))
		switch {
		case errors.Is(err, sdk.ErrActorUnavailable):
			return err
		case err != nil || v != 100:
			t.Fatalf("after restart Get = %v, %v (state should be reset)", v, err)
		}
		return nil
	})
	if was, err := CounterRestarted.Remote(ctx, r).Get(ctx); err != nil || !was {
		t.Fatalf("WasRestarted after a crash = %v, %v", was, err)
	}
	// Kill without noRestart restarts it too. Calls sent before this
	// process hears of the kill may still reach the old process: wait for
	// the new one.
	killed, err := CounterPid.Remote(ctx, r).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sdk.Kill(ctx, r, false); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		pid, err := CounterPid.Remote(ctx, r).Get(ctx, sdk.Timeout(10*time.Second))
		if err != nil || pid == killed {
			return errorf("after Kill(restart) Pid = %v, %v (the killed process was %d)", pid, err, killed)
		}
		return nil
	})
	if v, err := CounterInc.Remote(ctx, r, 0).Get(ctx); err != nil || v != 100 {
		t.Fatalf("after Kill(restart) Inc(0) = %v, %v (state should be reset)", v, err)
	}
	// Restarts exhausted: dead.
	if _, err := CounterCrash.Remote(ctx, r).Get(ctx); !errors.Is(err, sdk.ErrActorDied) {
		t.Fatalf("third crash: %v", err)
	}
	if _, err := CounterGet.Remote(ctx, r).Get(ctx, sdk.Timeout(30*time.Second)); !errors.Is(err, sdk.ErrActorDied) {
		t.Fatalf("after restarts ran out: %v", err)
	}
}

func TestActorExitAndConcurrency(t *testing.T) {
	ctx := startCluster(t)
	c, err := CounterActor.Options(sdk.MaxRestarts(-1)).Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CounterExit.Remote(ctx, c).Get(ctx); !errors.Is(err, sdk.ErrActorDied) {
		t.Fatalf("exiting call: %v", err)
	}
	if _, err := CounterGet.Remote(ctx, c).Get(ctx, sdk.Timeout(30*time.Second)); !errors.Is(err, sdk.ErrActorDied) {
		t.Fatalf("an actor that exited itself is not restarted: %v", err)
	}

	// One at a time by default; up to MaxConcurrency with the option.
	serial, err := CounterActor.Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	par, err := CounterActor.Options(sdk.MaxConcurrency(4)).Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		a    sdk.Actor[Counter]
		want int
	}{{serial, 1}, {par, 4}} {
		refs := make([]sdk.Ref[int], 8)
		for i := range refs {
			refs[i] = CounterSlow.Remote(ctx, tc.a, 100*time.Millisecond)
		}
		vals, err := sdk.GetAll(ctx, refs)
		if err != nil {
			t.Fatal(err)
		}
		if got := vals[len(vals)-1]; got != tc.want {
			t.Fatalf("max overlapping calls = %d, want %d", got, tc.want)
		}
	}

	// MaxPendingCalls: past it a call fails at once.
	lim, err := CounterActor.Options(sdk.MaxPendingCalls(2)).Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := CounterSlow.Remote(ctx, lim, 300*time.Millisecond)
	b := CounterSlow.Remote(ctx, lim, 300*time.Millisecond)
	_, err = CounterSlow.Remote(ctx, lim, 0).Get(ctx)
	if !errors.Is(err, sdk.ErrPendingCallsExceeded) {
		t.Fatalf("third pending call: %v", err)
	}
	if _, err := sdk.GetAll(ctx, []sdk.Ref[int]{a, b}); err != nil {
		t.Fatal(err)
	}
	if _, err := CounterGet.Remote(ctx, lim).Get(ctx); err != nil {
		t.Fatalf("after the queue drained: %v", err)
	}
}

// TestActorSIGKILLMidStream kills an actor's process with SIGKILL while a
// stream of calls is in flight, under each restart/retry setting.
func TestActorSIGKILLMidStream(t *testing.T) {
	ctx := startCluster(t)
	for _, tc := range []struct {
		name              string
		restarts, retries int
	}{
		{"no restarts", 0, 0},
		{"restarts, no task retries", 2, 0},
		{"restarts and task retries", 2, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := CounterActor.Options(sdk.MaxRestarts(tc.restarts), sdk.MaxTaskRetries(tc.retries)).Remote(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			pid, err := CounterPid.Remote(ctx, c).Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			refs := make([]sdk.Ref[int], 200)
			for i := range refs {
				refs[i] = CounterSlow.Remote(ctx, c, time.Millisecond)
				if i == 100 {
					if _, err := refs[50].Get(ctx); err != nil {
						t.Fatal(err)
					}
					if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
			}
			var ok, died int
			for i, r := range refs {
				_, err := r.Get(ctx, sdk.Timeout(60*time.Second))
				switch {
				case err == nil:
					ok++
				case errors.Is(err, sdk.ErrActorDied):
					died++
				case errors.Is(err, sdk.ErrActorUnavailable) && i > 100 && tc.restarts > 0 && tc.retries == 0:
					// Made while the actor restarted, which calls without
					// task retries do not wait for.
				default:
					t.Fatalf("call %d: %v", i, err)
				}
			}
			// Calls that finished before the kill succeeded; the others
			// were in flight: retried with task retries, failed without.
			if ok < 51 || (tc.retries != 0 && died != 0) || (tc.retries == 0 && died == 0) {
				t.Fatalf("ok %d died %d", ok, died)
			}
			if tc.restarts > 0 {
				// Once the actor is back, calls run on fresh state (the
				// calls made before that fail without task retries).
				checkFor(t, 60*time.Second, 20*time.Millisecond, func() error {
					v, err := CounterGet.Remote(ctx, c).Get(ctx, sdk.Timeout(60*time.Second))
					switch {
					case errors.Is(err, sdk.ErrActorUnavailable) && tc.retries == 0:
						return err
					case err != nil || v != 0:
						t.Fatalf("first call on the restarted actor: %v, %v (state starts fresh)", v, err)
					}
					return nil
				})
			}
			// Calls made after the death run on the restarted actor, or
			// fail when it has no restarts.
			after := make([]sdk.Ref[int], 50)
			for i := range after {
				after[i] = CounterInc.Remote(ctx, c, 1)
			}
			vals, err := sdk.GetAll(ctx, after, sdk.Timeout(60*time.Second))
			if tc.restarts == 0 {
				if !errors.Is(err, sdk.ErrActorDied) {
					t.Fatalf("calls after the death of an actor without restarts: %v", err)
				}
				return
			}
			if err != nil || vals[49] != 50 {
				t.Fatalf("calls on the restarted actor: %v (last %v; state starts fresh)", err, vals)
			}
			if tc.restarts > 0 {
				if was, err := CounterRestarted.Remote(ctx, c).Get(ctx); err != nil || !was {
					t.Fatalf("restarted = %v, %v", was, err)
				}
			}
		})
	}
}

func TestActorConcurrencyGroups(t *testing.T) {
	ctx := startCluster(t)
	c, err := CounterActor.Options(sdk.ConcurrencyGroup("slow", 3, "Slow")).Remote(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CounterGet.Remote(ctx, c).Get(ctx); err != nil {
		t.Fatal(err)
	}
	refs := make([]sdk.Ref[int], 6)
	for i := range refs {
		refs[i] = CounterSlow.Remote(ctx, c, 300*time.Millisecond)
	}
	// A call outside the group is not held up by the slow ones.
	done := make(chan error, 1)
	go func() {
		_, err := CounterGet.Remote(ctx, c).Get(ctx)
		done <- err
	}()
	vals, err := sdk.GetAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	if got := vals[len(vals)-1]; got != 3 {
		t.Fatalf("calls of the group overlapped %d at most, want 3", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("the default group's call waited for the slow group")
	}
}

func TestActorHandlesAreValues(t *testing.T) {
	ctx := startCluster(t)
	// Returned from a task that created the actor.
	c, err := MakeCounter.Remote(ctx, 40).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := CounterInc.Remote(ctx, c, 2).Get(ctx); err != nil || v != 42 {
		t.Fatalf("call through a returned handle: %v, %v", v, err)
	}
	// Stored in an object and read back, used from many goroutines.
	ref, err := sdk.Put(ctx, map[string]sdk.Actor[Counter]{"c": c})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ref.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			_, err := CounterInc.Remote(ctx, m["c"], 1).Get(ctx)
			errs <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if v, err := CounterGet.Remote(ctx, c).Get(ctx); err != nil || v != 50 {
		t.Fatalf("after 8 concurrent calls Get = %v, %v", v, err)
	}
}

// TestActorResources: by default an actor needs a CPU to be placed and
// holds none while it runs (Ray's num_cpus), so more actors than CPUs run;
// ActorCPUs holds CPUs for the actor's life.
func TestActorResources(t *testing.T) {
	ctx := startCluster(t, sdk.NodeCPUs(2))
	var all []sdk.Actor[Counter]
	for i := 0; i < 4; i++ {
		c, err := CounterActor.Remote(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, c)
	}
	for i, c := range all {
		if v, err := CounterGet.Remote(ctx, c).Get(ctx, sdk.Timeout(60*time.Second)); err != nil || v != i {
			t.Fatalf("actor %d: %v, %v", i, v, err)
		}
	}
	cpuAvailable := func() float64 {
		st, err := sdk.ClusterStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Nodes[0].Available["CPU"]
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if got := cpuAvailable(); got != 2 {
			return errorf("%v CPUs available with 4 default actors alive, want 2", got)
		}
		return nil
	})
	holder, err := CounterActor.Options(sdk.NumCPUs(1.5)).Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CounterGet.Remote(ctx, holder).Get(ctx); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if got := cpuAvailable(); got != 0.5 {
			return errorf("%v CPUs available with an actor holding 1.5, want 0.5", got)
		}
		return nil
	})
	// An actor whose placement can never be met stays pending.
	big, err := CounterActor.Options(sdk.Resources(map[string]float64{"TPU": 1})).Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CounterGet.Remote(ctx, big).Get(ctx, sdk.Timeout(300*time.Millisecond)); !errors.Is(err, sdk.ErrGetTimeout) {
		t.Fatalf("infeasible actor: %v", err)
	}
}

func TestActorCallCancelAndNamespaces(t *testing.T) {
	ctx := startCluster(t, sdk.Namespace("team"))
	c, err := CounterActor.Options(sdk.Name("busy")).Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	slow := CounterSlow.Remote(ctx, c, 500*time.Millisecond)
	queued := CounterInc.Remote(ctx, c, 1)
	if err := sdk.Cancel(ctx, queued); err != nil {
		t.Fatal(err)
	}
	if _, err := queued.Get(ctx, sdk.Timeout(30*time.Second)); !errors.Is(err, sdk.ErrTaskCancelled) {
		t.Fatalf("cancelled actor call: %v", err)
	}
	if _, err := slow.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := CounterGet.Remote(ctx, c).Get(ctx); err != nil || v != 0 {
		t.Fatalf("the cancelled Inc ran: Get = %v, %v", v, err)
	}
	// The job's namespace reaches its workers: a task finds the actor by
	// name without naming the namespace.
	if v, err := IncByName.Remote(ctx, "busy").Get(ctx); err != nil || v != 1 {
		t.Fatalf("IncByName in a worker: %v, %v", v, err)
	}
	if _, err := sdk.GetActor[Counter](ctx, "busy", "default"); err == nil {
		t.Fatal("found the actor in another namespace")
	}
}

// TestActorExitDeliversFinishedCalls: an actor that exits itself (Ray's
// exit_actor) with calls pipelined behind the exiting one still delivers
// the replies of every call it finished before it; the calls queued after
// it fail with ErrActorDied instead of hanging. Several actors exit at
// once, so the driver has replies to read while it hears of the deaths.
func TestActorExitDeliversFinishedCalls(t *testing.T) {
	ctx := startCluster(t)
	for _, tc := range []struct {
		name    string
		d       time.Duration
		retries int
	}{
		{"instant calls", 0, 0},
		{"2ms calls", 2 * time.Millisecond, 0},
		{"instant calls with task retries", 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const actors = 4
			errs := make(chan error, actors)
			for range actors {
				c, err := CounterActor.Options(sdk.MaxRestarts(-1), sdk.MaxTaskRetries(tc.retries)).Remote(ctx, 0)
				if err != nil {
					t.Fatal(err)
				}
				go func() { errs <- exitAfterCalls(ctx, c, tc.d) }()
			}
			for range actors {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// exitAfterCalls makes 120 calls to c whose 100th ends the actor, and
// checks what each call got.
func exitAfterCalls(ctx context.Context, c sdk.Actor[Counter], d time.Duration) error {
	const limit, total = 100, 120
	refs := make([]sdk.Ref[int], total)
	for i := range refs {
		refs[i] = CounterIncUntil.Remote(ctx, c, limit, d)
	}
	var delivered int
	var problems []string
	for i, r := range refs {
		v, err := r.Get(ctx, sdk.Timeout(60*time.Second))
		switch {
		case i < limit-1 && err == nil && v == i+1:
			delivered++
		case i < limit-1:
			if len(problems) < 3 {
				problems = append(problems, fmt.Sprintf("finished call %d got %v, %v", i, v, err))
			}
		case i == limit-1 && !(errors.Is(err, sdk.ErrActorDied) && strings.Contains(err.Error(), "reached the limit")):
			problems = append(problems, fmt.Sprintf("the exiting call got %v, %v", v, err))
		case i >= limit && !errors.Is(err, sdk.ErrActorDied):
			problems = append(problems, fmt.Sprintf("call %d, queued after the exiting call, got %v, %v (want ErrActorDied)", i, v, err))
		}
	}
	if _, err := CounterGet.Remote(ctx, c).Get(ctx, sdk.Timeout(30*time.Second)); !errors.Is(err, sdk.ErrActorDied) {
		problems = append(problems, fmt.Sprintf("a call after the exit got %v (the actor must not restart)", err))
	}
	if delivered != limit-1 || len(problems) > 0 {
		return fmt.Errorf("%d of the %d replies of finished calls arrived; %s", delivered, limit-1, strings.Join(problems, "; "))
	}
	return nil
}

// TestActorCallsWhileRestarting: with MaxTaskRetries 0 (the default) a
// call made while the actor restarts fails at once with
// ErrActorUnavailable (Ray's ActorUnavailableError) and a call in flight
// when the process died with ErrActorDied; with task retries such calls
// wait and run on the restarted actor. The restarted constructor waits
// for a gate file, so a call that waited for the restart could not
// return before the test opens it.
func TestActorCallsWhileRestarting(t *testing.T) {
	ctx := startCluster(t)
	unavailable := func(err error) error {
		if !errors.Is(err, sdk.ErrActorUnavailable) || !strings.Contains(err.Error(), "restarting") {
			return fmt.Errorf("a call while the actor restarts: %v (want ErrActorUnavailable saying it is restarting)", err)
		}
		return nil
	}
	openGate := func(t *testing.T, gate string) {
		if err := os.WriteFile(gate, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// newGated starts an actor whose restart waits for the gate, which
	// opens when the subtest ends at the latest (its directory goes): a
	// restart left waiting would hold its CPU from the next subtests'
	// actors.
	newGated := func(t *testing.T, opts ...sdk.ActorOption) (sdk.Actor[Gated], string) {
		gate := filepath.Join(t.TempDir(), "gate")
		g, err := GatedActor.Options(opts...).Remote(ctx, gate)
		if err != nil {
			t.Fatal(err)
		}
		return g, gate
	}
	// backAfterRestart waits for the first call to succeed after the gate
	// opened: calls made before the restart completes fail.
	backAfterRestart := func(t *testing.T, g sdk.Actor[Gated]) {
		checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			v, err := GatedInc.Remote(ctx, g).Get(ctx, sdk.Timeout(30*time.Second))
			if err != nil {
				if uerr := unavailable(err); uerr != nil {
					t.Fatal(uerr)
				}
				return err
			}
			if v != 1 {
				t.Fatalf("first call on the restarted actor = %d, want 1 (fresh state)", v)
			}
			return nil
		})
		for want := 2; want <= 4; want++ {
			if v, err := GatedInc.Remote(ctx, g).Get(ctx, sdk.Timeout(30*time.Second)); err != nil || v != want {
				t.Fatalf("call after the restart = %v, %v, want %d", v, err, want)
			}
		}
	}

	t.Run("no task retries, after a crash mid-call", func(t *testing.T) {
		g, gate := newGated(t, sdk.MaxRestarts(1))
		if v, err := GatedInc.Remote(ctx, g).Get(ctx); err != nil || v != 1 {
			t.Fatalf("Inc = %v, %v", v, err)
		}
		if _, err := GatedCrash.Remote(ctx, g).Get(ctx, sdk.Timeout(30*time.Second)); !errors.Is(err, sdk.ErrActorDied) {
			t.Fatalf("the call running when the process died: %v (want ErrActorDied)", err)
		}
		for range 3 {
			_, err := GatedInc.Remote(ctx, g).Get(ctx, sdk.Timeout(30*time.Second))
			if uerr := unavailable(err); uerr != nil {
				t.Fatal(uerr)
			}
		}
		openGate(t, gate)
		backAfterRestart(t, g)
	})

	t.Run("no task retries, after SIGKILL while idle", func(t *testing.T) {
		g, gate := newGated(t, sdk.MaxRestarts(1))
		pid, err := GatedPid.Remote(ctx, g).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// A call sent before this process noticed the death is in flight
		// when the connection breaks (ErrActorDied); the calls after it
		// are not sent at all.
		checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			_, err := GatedInc.Remote(ctx, g).Get(ctx, sdk.Timeout(30*time.Second))
			if errors.Is(err, sdk.ErrActorDied) {
				return err
			}
			if uerr := unavailable(err); uerr != nil {
				t.Fatal(uerr)
			}
			return nil
		})
		openGate(t, gate)
		backAfterRestart(t, g)
	})

	t.Run("task retries wait for the restart", func(t *testing.T) {
		g, gate := newGated(t, sdk.MaxRestarts(1), sdk.MaxTaskRetries(-1))
		pid, err := GatedPid.Remote(ctx, g).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			if processAlive(pid) {
				return errorf("process %d still alive", pid)
			}
			return nil
		})
		// Made after the process died, answered only by the restarted
		// actor, which cannot start before the gate opens.
		refs := make([]sdk.Ref[int], 5)
		for i := range refs {
			refs[i] = GatedInc.Remote(ctx, g)
		}
		openGate(t, gate)
		vals, err := sdk.GetAll(ctx, refs, sdk.Timeout(60*time.Second))
		if err != nil {
			t.Fatalf("calls made during the restart with MaxTaskRetries(-1): %v", err)
		}
		for i, v := range vals {
			if v != i+1 {
				t.Fatalf("call %d = %d on the restarted actor, want %d", i, v, i+1)
			}
		}
		if p, err := GatedPid.Remote(ctx, g).Get(ctx); err != nil || p == pid {
			t.Fatalf("Pid after the restart = %v, %v (was %d)", p, err, pid)
		}
	})
}

// TestActorsRegisterInBackground: Remote of an unnamed actor returns before
// the GCS has the actor (Ray's asynchronous registration). A handle handed
// to a task at once, while hundreds of registrations are still queued,
// finds its actor there; a Kill right after Remote reaches the GCS after
// the registration, so the actor ends dead for good rather than unknown.
func TestActorsRegisterInBackground(t *testing.T) {
	ctx := startCluster(t)
	const n = 300
	refs := make([]sdk.Ref[int], n)
	for i := range refs {
		c, err := CounterActor.Options(sdk.Packed()).Remote(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		refs[i] = UseCounter.Remote(ctx, c, 1)
	}
	vals, err := sdk.GetAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if v != i+1 {
			t.Fatalf("actor %d answered %d in another process, want %d", i, v, i+1)
		}
	}

	killed := make([]sdk.Actor[Counter], 20)
	for i := range killed {
		c, err := CounterActor.Options(sdk.Packed()).Remote(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := sdk.Kill(ctx, c, true); err != nil {
			t.Fatalf("Kill right after Remote: %v", err)
		}
		killed[i] = c
	}
	for _, c := range killed {
		if _, err := CounterGet.Remote(ctx, c).Get(ctx); !errors.Is(err, sdk.ErrActorDied) {
			t.Fatalf("call after Kill: %v, want ErrActorDied", err)
		}
	}
	actors, err := sdk.ListActors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, a := range actors {
		states[a.ActorID] = a.State
	}
	for _, c := range killed {
		if st := states[c.ID().String()]; st != "DEAD" {
			t.Errorf("killed actor %s is %q in the GCS, want DEAD", c.ID(), st)
		}
	}
}
