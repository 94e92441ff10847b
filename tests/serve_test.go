package tests

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/serve"
)

// TestServeComposedApp: on 2 nodes, an application of two deployments
// composed by a handle answers over HTTP through the proxy of each node,
// and through a handle from the driver.
func TestServeComposedApp(t *testing.T) {
	ctx, _ := startMultiNode(t, nil, nodeSpec{"--num-cpus", "2"})
	t.Cleanup(func() {
		if err := serve.Shutdown(ctx); err != nil {
			t.Errorf("serve.Shutdown: %v", err)
		}
	})
	app := FrontDep.Bind(FrontArgs{Doubler: serve.HandleOf(DoublerDep.Bind(3))})
	if _, err := serve.Run(ctx, app, serve.AppName("calc"), serve.RoutePrefix("/calc"), serve.HTTPPort(0)); err != nil {
		t.Fatal(err)
	}
	st, err := serve.GetStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Proxies) != 2 || len(st.Apps) != 1 || len(st.Apps[0].Deployments) != 2 {
		t.Fatalf("status: %+v", st)
	}
	for _, d := range st.Apps[0].Deployments {
		if d.State != "RUNNING" || len(d.Replicas) != 2 {
			t.Fatalf("deployment %s: %+v", d.Name, d)
		}
	}
	pids := map[string]bool{}
	for _, p := range st.Proxies {
		for i := range 20 {
			rep, err := http.Get(fmt.Sprintf("http://%s/calc?x=%d", p.Addr, i))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(rep.Body)
			rep.Body.Close()
			want := fmt.Sprintf("%d from pid ", 3*i)
			if rep.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), want) {
				t.Fatalf("GET /calc?x=%d via %s: %d %q, want %q...", i, p.Addr, rep.StatusCode, body, want)
			}
			pids[strings.TrimPrefix(string(body), want)] = true
		}
		// A path no application serves, and a bad request, say so.
		rep, err := http.Get("http://" + p.Addr + "/nothing")
		if err != nil {
			t.Fatal(err)
		}
		rep.Body.Close()
		if rep.StatusCode != http.StatusNotFound {
			t.Fatalf("GET /nothing: %d", rep.StatusCode)
		}
	}
	if len(pids) != 2 {
		t.Errorf("the requests reached %d Front replicas, want both: %v", len(pids), pids)
	}
	// A handle call from the driver, to the inner deployment.
	h := serve.Handle[Doubler]{App: "calc", Deployment: "tests-doubler"}
	if v, err := DoublerDouble.Remote(ctx, h, 5).Get(ctx); err != nil || v != 15 {
		t.Fatalf("handle call: %v %v", v, err)
	}
	// Deleting the application stops its replicas and its route.
	if err := serve.Delete(ctx, "calc"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		rep, err := http.Get("http://" + st.Proxies[0].Addr + "/calc?x=1")
		if err != nil {
			return err
		}
		rep.Body.Close()
		if rep.StatusCode != http.StatusNotFound {
			return fmt.Errorf("GET /calc after Delete: %d", rep.StatusCode)
		}
		return nil
	})
}
