package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/goray/goray/serve"
)

// Serve's test deployments: Front (HTTP) calls Doubler (a typed method)
// through a handle it got in its argument.

type Doubler struct{ factor int }

func (d *Doubler) Double(ctx context.Context, x int) (int, error) { return x * d.factor, nil }

type Front struct{ doubler serve.Handle[Doubler] }

// FrontArgs is Front's argument: the handle of its Doubler.
type FrontArgs struct{ Doubler serve.Handle[Doubler] }

func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x, err := strconv.Atoi(r.URL.Query().Get("x"))
	if err != nil {
		http.Error(w, "x: "+err.Error(), http.StatusBadRequest)
		return
	}
	v, err := DoublerDouble.Remote(r.Context(), f.doubler, x).Get(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "%d from pid %d", v, os.Getpid())
}

var (
	DoublerDep = serve.Register("tests-doubler", func(ctx context.Context, factor int) (*Doubler, error) {
		return &Doubler{factor: factor}, nil
	}, serve.NumReplicas(2))
	DoublerDouble = serve.NewMethod(DoublerDep, "Double", (*Doubler).Double)
	FrontDep      = serve.Register("tests-front", func(ctx context.Context, a FrontArgs) (*Front, error) {
		return &Front{doubler: a.Doubler}, nil
	}, serve.NumReplicas(2))
)

// Sleeper is an autoscaled deployment whose calls take a while.
type Sleeper struct{}

func (*Sleeper) Sleep(ctx context.Context, d time.Duration) (int, error) {
	time.Sleep(d)
	return os.Getpid(), nil
}

var (
	SleeperDep = serve.Register("tests-sleeper", func(ctx context.Context, _ struct{}) (*Sleeper, error) { return &Sleeper{}, nil },
		serve.Autoscaling(serve.AutoscalingConfig{MinReplicas: 1, MaxReplicas: 3, TargetOngoingRequests: 2,
			UpscaleDelay: 300 * time.Millisecond, DownscaleDelay: time.Second}))
	SleeperSleep = serve.NewMethod(SleeperDep, "Sleep", (*Sleeper).Sleep)
)
