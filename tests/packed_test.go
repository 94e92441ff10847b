package tests

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// TestPackedActors places many packed actors in one shared worker process
// and checks that they live and die individually, and together with it.
func TestPackedActors(t *testing.T) {
	ctx := startCluster(t)
	const n = 200
	actors := make([]sdk.Actor[Counter], n)
	for i := range actors {
		opts := []sdk.ActorOption{sdk.Packed()}
		if i%2 == 0 {
			opts = append(opts, sdk.MaxRestarts(1))
		}
		a, err := CounterActor.Options(opts...).Remote(ctx, i)
		if err != nil {
			t.Fatalf("create packed actor %d: %v", i, err)
		}
		actors[i] = a
	}
	incs := make([]sdk.Ref[int], n)
	pids := make([]sdk.Ref[int], n)
	for i, a := range actors {
		incs[i] = CounterInc.Remote(ctx, a, 1)
		pids[i] = CounterPid.Remote(ctx, a)
	}
	vals, err := sdk.GetAll(ctx, incs, sdk.Timeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if v != i+1 {
			t.Fatalf("actor %d: Inc = %d, want %d", i, v, i+1)
		}
	}
	ps, err := sdk.GetAll(ctx, pids)
	if err != nil {
		t.Fatal(err)
	}
	host := ps[0]
	for i, p := range ps {
		if p != host {
			t.Fatalf("actor %d runs in pid %d, actor 0 in %d: want one shared process", i, p, host)
		}
	}
	if host == os.Getpid() || host == 0 {
		t.Fatalf("packed actors run in pid %d (the driver is %d)", host, os.Getpid())
	}

	// Killing one leaves the others (and their process) running.
	if err := sdk.Kill(ctx, actors[1], true); err != nil {
		t.Fatal(err)
	}
	if _, err := CounterGet.Remote(ctx, actors[1]).Get(ctx, sdk.Timeout(30*time.Second)); !errors.Is(err, sdk.ErrActorDied) {
		t.Fatalf("call on the killed actor: %v", err)
	}
	for i, a := range actors {
		if i == 1 {
			continue
		}
		pids[i] = CounterPid.Remote(ctx, a)
	}
	for i := range actors {
		if i == 1 {
			continue
		}
		if p, err := pids[i].Get(ctx, sdk.Timeout(30*time.Second)); err != nil || p != host {
			t.Fatalf("actor %d after another was killed: pid %d, %v", i, p, err)
		}
	}

	// The shared process dies: actors with a restart come back fresh in a
	// new process, the others are dead.
	if err := syscall.Kill(host, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Calls in flight when it died fail; later ones reach the restarted
	// actors, or fail for good on the others.
	for i, a := range actors {
		if i%2 == 1 {
			checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
				if _, err := CounterGet.Remote(ctx, a).Get(ctx, sdk.Timeout(30*time.Second)); !errors.Is(err, sdk.ErrActorDied) {
					return errorf("actor %d without restarts after its process died: %v", i, err)
				}
				return nil
			})
			continue
		}
		checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
			v, err := CounterGet.Remote(ctx, a).Get(ctx, sdk.Timeout(30*time.Second))
			if err != nil || v != i {
				return errorf("restartable actor %d after its process died: Get = %d, %v (want %d: fresh state)", i, v, err, i)
			}
			return nil
		})
	}
	var newHost int
	for i := 0; i < n; i += 2 {
		p, err := CounterPid.Remote(ctx, actors[i]).Get(ctx, sdk.Timeout(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			newHost = p
		}
		if p == host || p != newHost {
			t.Fatalf("restarted actor %d runs in pid %d (old host %d, others %d)", i, p, host, newHost)
		}
		if was, err := CounterRestarted.Remote(ctx, actors[i]).Get(ctx); err != nil || !was {
			t.Fatalf("restarted actor %d: WasRestarted = %v, %v", i, was, err)
		}
	}
}
