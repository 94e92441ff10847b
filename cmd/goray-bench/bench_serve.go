package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/goray/goray/serve"
)

// goray Serve's benchmarks (issue 16): a no-op HTTP deployment of 2
// replicas behind one proxy, loaded by vegeta from this process, against
// a plain net/http handler in this process measured in the same run; and
// handle calls between the driver and a deployment.

// benchServeNoop answers "ok".
type benchServeNoop struct{}

func (benchServeNoop) ServeHTTP(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }

func (benchServeNoop) Noop(ctx context.Context, x int) (int, error) { return x, nil }

var (
	benchServeDep = serve.Register("bench-noop", func(ctx context.Context, _ struct{}) (*benchServeNoop, error) {
		return &benchServeNoop{}, nil
	}, serve.NumReplicas(2), serve.MaxOngoingRequests(1000))
	benchServeCall = serve.NewMethod(benchServeDep, "Noop", (*benchServeNoop).Noop)
)

const (
	serveLoadWorkers = 64              // vegeta's connections at saturation
	serveModerateQPS = 1000            // the fixed rate of the latency figures
	serveWarmup      = 2 * time.Second // before each measured attack
	serveHandleBatch = 1000            // handle calls in flight per round
	serveAttackMin   = 3 * time.Second // each attack lasts at least this
)

func benchServe(ctx context.Context, h *harness) ([]result, error) {
	if _, err := serve.Run(ctx, benchServeDep.Bind(struct{}{}), serve.AppName("bench"), serve.RoutePrefix("/"), serve.HTTPPort(0)); err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := serve.Shutdown(sctx); err != nil {
			log.Printf("serve.Shutdown: %v", err)
		}
	}()
	st, err := serve.GetStatus(ctx)
	if err != nil || len(st.Proxies) == 0 {
		return nil, fmt.Errorf("serve status: %v %v", st, err)
	}
	serveURL := "http://" + st.Proxies[0].Addr + "/"

	// The floor: a plain net/http handler, here.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	plain := &http.Server{Handler: benchServeNoop{}}
	go func() { _ = plain.Serve(ln) }()
	defer plain.Close()
	plainURL := "http://" + ln.Addr().String() + "/"

	d := max(h.cfg.duration, serveAttackMin)
	attack := func(url string, rate vegeta.Rate, du time.Duration) (*vegeta.Metrics, error) {
		a := vegeta.NewAttacker(vegeta.Workers(serveLoadWorkers), vegeta.MaxWorkers(serveLoadWorkers), vegeta.KeepAlive(true),
			vegeta.Connections(serveLoadWorkers), vegeta.MaxConnections(serveLoadWorkers))
		tr := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url})
		var m vegeta.Metrics
		for r := range a.Attack(tr, rate, du, url) {
			m.Add(r)
		}
		m.Close()
		if m.Success < 1 {
			return &m, fmt.Errorf("%s: %.2f%% of %d requests succeeded (%v)", url, 100*m.Success, m.Requests, m.Errors)
		}
		return &m, nil
	}
	saturate := func(url string) (*vegeta.Metrics, error) {
		if _, err := attack(url, vegeta.Rate{}, serveWarmup); err != nil {
			return nil, err
		}
		return attack(url, vegeta.Rate{}, d)
	}
	plainMax, err := saturate(plainURL)
	if err != nil {
		return nil, err
	}
	serveMax, err := saturate(serveURL)
	if err != nil {
		return nil, err
	}
	moderate := vegeta.Rate{Freq: serveModerateQPS, Per: time.Second}
	plainLat, err := attack(plainURL, moderate, d)
	if err != nil {
		return nil, err
	}
	serveLat, err := attack(serveURL, moderate, d)
	if err != nil {
		return nil, err
	}
	log.Printf("serve: at saturation (%d connections) net/http %.0f/s, serve %.0f/s; at %d/s p50 net/http %v serve %v, p99 net/http %v serve %v",
		serveLoadWorkers, plainMax.Throughput, serveMax.Throughput, serveModerateQPS, plainLat.Latencies.P50, serveLat.Latencies.P50,
		plainLat.Latencies.P99, serveLat.Latencies.P99)

	// Handle calls from the driver: batches in flight.
	hnd := serve.Handle[benchServeNoop]{App: "bench", Deployment: "bench-noop"}
	calls := func() error {
		rs := make([]serve.Response[int], serveHandleBatch)
		for i := range rs {
			rs[i] = benchServeCall.Remote(ctx, hnd, i)
		}
		for i, r := range rs {
			v, err := r.Get(ctx)
			if err != nil {
				return err
			}
			if v != i {
				return errors.New("a handle call answered another call's value")
			}
		}
		return nil
	}
	handle, err := h.rate(ctx, "serve_handle_calls_per_s", serveHandleBatch, "per_s", calls)
	if err != nil {
		return nil, err
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return append([]result{
		{Name: "serve_http_noop_qps", Value: serveMax.Throughput, Unit: "per_s"},
		{Name: "serve_http_noop_qps_vs_net_http", Value: serveMax.Throughput / plainMax.Throughput, Unit: "ratio"},
		{Name: "net_http_noop_qps", Value: plainMax.Throughput, Unit: "per_s"},
		{Name: "serve_http_p50_ms", Value: ms(serveLat.Latencies.P50), Unit: "ms"},
		{Name: "serve_http_p99_ms", Value: ms(serveLat.Latencies.P99), Unit: "ms"},
		{Name: "serve_http_p50_added_ms", Value: ms(serveLat.Latencies.P50 - plainLat.Latencies.P50), Unit: "ms"},
	}, handle...), nil
}
