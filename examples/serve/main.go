// A scoring service on goray Serve: an HTTP ingress that validates JSON
// requests and composes a "model" deployment, whose replicas batch the
// single requests they get into one scoring call (serve.Batcher).
//
//	go run ./examples/serve            # deploys, sends a few requests, stops
//	go run ./examples/serve -serve     # deploys and serves on 127.0.0.1:8000 until Ctrl-C
//	curl -s -XPOST 127.0.0.1:8000/score -d '{"features":[0.5,1.2,-0.3,2.0]}'
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/goray/goray/sdk"
	"github.com/goray/goray/serve"
)

// Model scores feature vectors with a logistic regression: its weights
// come with the deployment's argument, and it scores a batch at a time.
type Model struct {
	weights []float64
	bias    float64
	batch   *serve.Batcher[[]float64, float64]
	batches int // batch calls, for the demo's report
	mu      sync.Mutex
}

// ModelConfig is the model deployment's argument.
type ModelConfig struct {
	Weights []float64
	Bias    float64
}

func newModel(ctx context.Context, cfg ModelConfig) (*Model, error) {
	if len(cfg.Weights) == 0 {
		return nil, errors.New("model: no weights")
	}
	m := &Model{weights: cfg.Weights, bias: cfg.Bias}
	m.batch = serve.NewBatcher(32, 5*time.Millisecond, m.scoreBatch)
	return m, nil
}

// Score scores one vector; concurrent calls are scored together.
func (m *Model) Score(ctx context.Context, features []float64) (float64, error) {
	if len(features) != len(m.weights) {
		return 0, fmt.Errorf("model: %d features, want %d", len(features), len(m.weights))
	}
	return m.batch.Do(ctx, features)
}

func (m *Model) scoreBatch(ctx context.Context, xs [][]float64) ([]float64, error) {
	m.mu.Lock()
	m.batches++
	m.mu.Unlock()
	out := make([]float64, len(xs))
	for i, x := range xs {
		z := m.bias
		for j, w := range m.weights {
			z += w * x[j]
		}
		out[i] = 1 / (1 + math.Exp(-z))
	}
	return out, nil
}

// Batches reports how many batch calls the replica made.
func (m *Model) Batches(ctx context.Context, _ struct{}) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.batches, nil
}

// API is the HTTP ingress: POST /score {"features": [...]}, GET /healthz.
type API struct {
	model serve.Handle[Model]
	mux   *http.ServeMux
}

// APIConfig is the ingress's argument: the model's handle.
type APIConfig struct{ Model serve.Handle[Model] }

func newAPI(ctx context.Context, cfg APIConfig) (*API, error) {
	a := &API{model: cfg.Model, mux: http.NewServeMux()}
	a.mux.HandleFunc("POST /score", a.score)
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	return a, nil
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *API) score(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Features []float64 `json:"features"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "want {\"features\": [numbers]}: "+err.Error(), http.StatusBadRequest)
		return
	}
	s, err := ModelScore.Remote(r.Context(), a.model, req.Features).Get(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]float64{"score": s})
}

var (
	ModelDep     = serve.Register("model", newModel, serve.NumReplicas(2), serve.MaxOngoingRequests(256))
	ModelScore   = serve.NewMethod(ModelDep, "Score", (*Model).Score)
	ModelBatches = serve.NewMethod(ModelDep, "Batches", (*Model).Batches)
	APIDep       = serve.Register("api", newAPI, serve.NumReplicas(2), serve.MaxOngoingRequests(256))
)

func main() {
	keep := flag.Bool("serve", false, "keep serving until interrupted")
	port := flag.Int("port", 8000, "the HTTP proxy's port (0: a free one)")
	flag.Parse()
	ctx := context.Background()
	// No address: an embedded cluster in this process. Worker processes
	// run the worker loop here and never return.
	if err := sdk.Init(ctx); err != nil {
		log.Fatal(err)
	}
	defer sdk.Shutdown()

	app := APIDep.Bind(APIConfig{Model: serve.HandleOf(ModelDep.Bind(ModelConfig{Weights: []float64{0.8, -0.4, 1.5, 0.3}, Bias: -0.2}))})
	if _, err := serve.Run(ctx, app, serve.AppName("scoring"), serve.RoutePrefix("/"), serve.HTTPPort(*port)); err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := serve.Shutdown(context.Background()); err != nil {
			log.Print(err)
		}
	}()
	st, err := serve.GetStatus(ctx)
	if err != nil {
		log.Fatal(err)
	}
	url := "http://" + st.Proxies[0].Addr
	fmt.Printf("scoring service up at %s (2 api and 2 model replicas)\n", url)

	// 200 concurrent requests: the model's replicas score them in batches.
	var wg sync.WaitGroup
	scores := make([]float64, 200)
	for i := range scores {
		wg.Go(func() {
			body, _ := json.Marshal(map[string][]float64{"features": {float64(i) / 100, 1, -0.5, 2}})
			rep, err := http.Post(url+"/score", "application/json", bytes.NewReader(body))
			if err != nil {
				log.Fatal(err)
			}
			defer rep.Body.Close()
			var out struct{ Score float64 }
			if err := json.NewDecoder(rep.Body).Decode(&out); err != nil || rep.StatusCode != http.StatusOK {
				log.Fatalf("POST /score: %d %v", rep.StatusCode, err)
			}
			scores[i] = out.Score
		})
	}
	wg.Wait()
	batches := 0
	for range 2 { // each replica, by the power of two choices, usually
		n, err := ModelBatches.Remote(ctx, serve.Handle[Model]{App: "scoring", Deployment: "model"}, struct{}{}).Get(ctx)
		if err != nil {
			log.Fatal(err)
		}
		batches = max(batches, n)
	}
	fmt.Printf("scored 200 requests: score(x=0) = %.3f, score(x=1.99) = %.3f; a model replica ran %d batch calls\n", scores[0], scores[199], batches)
	rep, err := http.Post(url+"/score", "application/json", bytes.NewReader([]byte(`{"features":[1,2]}`)))
	if err == nil {
		var msg bytes.Buffer
		_, _ = msg.ReadFrom(rep.Body)
		rep.Body.Close()
		fmt.Printf("a request with 2 features: HTTP %d: %s", rep.StatusCode, msg.String())
	}
	if *keep {
		fmt.Printf("serving on %s; Ctrl-C stops\n", url)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		<-sig
	}
}
