package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/goray/goray/sdk"
)

// Counter is an ordinary Go struct used as an actor.
type Counter struct {
	n        int
	inFlight atomic.Int32
	maxSeen  atomic.Int32
}

func (c *Counter) Inc(ctx context.Context, by int) (int, error) {
	c.n += by
	return c.n, nil
}

func (c *Counter) Get(ctx context.Context) (int, error) { return c.n, nil }

func (c *Counter) Pid(ctx context.Context) (int, error) { return os.Getpid(), nil }

// Say writes msg to the worker's stdout (its log).
func (c *Counter) Say(ctx context.Context, msg string) (string, error) {
	fmt.Println("counter says:", msg)
	return msg, nil
}

func (c *Counter) Restarted(ctx context.Context) (bool, error) {
	return sdk.GetRuntimeContext(ctx).WasRestarted, nil
}

func (c *Counter) Fail(ctx context.Context, how string) (int, error) {
	if how == "panic" {
		panic("counter panic")
	}
	return 0, ErrTeapot
}

// Slow sleeps, counting how many calls overlap.
func (c *Counter) Slow(ctx context.Context, d time.Duration) (int, error) {
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for {
		m := c.maxSeen.Load()
		if n <= m || c.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(d)
	return int(c.maxSeen.Load()), nil
}

func (c *Counter) Crash(ctx context.Context) (int, error) {
	os.Exit(7)
	return 0, nil
}

func (c *Counter) Exit(ctx context.Context) (int, error) {
	return 0, sdk.ExitActor("done counting")
}

// IncUntil counts its calls, taking d for each, and ends the actor with
// the call that reaches limit.
func (c *Counter) IncUntil(ctx context.Context, limit int, d time.Duration) (int, error) {
	c.n++
	time.Sleep(d)
	if c.n >= limit {
		return 0, sdk.ExitActor("reached the limit")
	}
	return c.n, nil
}

var (
	CounterActor = sdk.RegisterActor1("tests.Counter", func(ctx context.Context, start int) (*Counter, error) {
		if start < 0 {
			return nil, errors.New("negative start")
		}
		return &Counter{n: start}, nil
	})
	CounterInc       = sdk.NewMethod1(CounterActor, "Inc", (*Counter).Inc)
	CounterGet       = sdk.NewMethod0(CounterActor, "Get", (*Counter).Get)
	CounterPid       = sdk.NewMethod0(CounterActor, "Pid", (*Counter).Pid)
	CounterRestarted = sdk.NewMethod0(CounterActor, "Restarted", (*Counter).Restarted)
	CounterFail      = sdk.NewMethod1(CounterActor, "Fail", (*Counter).Fail)
	CounterSlow      = sdk.NewMethod1(CounterActor, "Slow", (*Counter).Slow)
	CounterCrash     = sdk.NewMethod0(CounterActor, "Crash", (*Counter).Crash)
	CounterExit      = sdk.NewMethod0(CounterActor, "Exit", (*Counter).Exit)
	CounterIncUntil  = sdk.NewMethod2(CounterActor, "IncUntil", (*Counter).IncUntil)
	CounterSay       = sdk.NewMethod1(CounterActor, "Say", (*Counter).Say)

	// UseCounter receives an actor handle as an argument and calls it.
	UseCounter = sdk.Register2("tests.UseCounter", func(ctx context.Context, c sdk.Actor[Counter], by int) (int, error) {
		return CounterInc.Remote(ctx, c, by).Get(ctx)
	})
)

// Gated counts its calls. Restarted, its constructor waits for the file
// gate to exist, so a test holds it in RESTARTING as long as it needs; a
// test that ended (its directory gone) lets it go.
type Gated struct{ n int }

var (
	GatedActor = sdk.RegisterActor1("tests.Gated", func(ctx context.Context, gate string) (*Gated, error) {
		if sdk.GetRuntimeContext(ctx).WasRestarted {
			for {
				_, err := os.Stat(gate)
				_, dirErr := os.Stat(filepath.Dir(gate))
				if err == nil || dirErr != nil {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		return &Gated{}, nil
	})
	GatedInc = sdk.NewMethod0(GatedActor, "Inc", func(g *Gated, ctx context.Context) (int, error) {
		g.n++
		return g.n, nil
	})
	GatedPid   = sdk.NewMethod0(GatedActor, "Pid", func(g *Gated, ctx context.Context) (int, error) { return os.Getpid(), nil })
	GatedCrash = sdk.NewMethod0(GatedActor, "Crash", func(g *Gated, ctx context.Context) (int, error) {
		os.Exit(7)
		return 0, nil
	})
)

// MakeCounter creates an actor inside a task and returns its handle.
var MakeCounter = sdk.Register1("tests.MakeCounter", func(ctx context.Context, start int) (sdk.Actor[Counter], error) {
	return CounterActor.Remote(ctx, start)
})

// IncByName finds a counter by name in the job's namespace.
var IncByName = sdk.Register1("tests.IncByName", func(ctx context.Context, name string) (int, error) {
	c, err := sdk.GetActor[Counter](ctx, name, "")
	if err != nil {
		return 0, err
	}
	return CounterInc.Remote(ctx, c, 1).Get(ctx)
})
