package tests

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
	"github.com/goray/goray/serve"
)

// TestServeComposedApp: on 2 nodes, an application of two deployments
// composed by a handle answers over HTTP through the proxy of each node,
// and through a handle from the driver.
func TestServeComposedApp(t *testing.T) {
	ctx, c := startMultiNode(t, nil, nodeSpec{"--num-cpus", "2"})
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
	// goray serve status, through the real binary.
	out, err := runGoray(c.bin, c.env, "serve", "status", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir))
	if err != nil || !strings.Contains(out, "APPLICATION calc") || strings.Count(out, "PROXY") != 2 ||
		!regexp.MustCompile(`tests-front +RUNNING +target 2 replicas +2 RUNNING`).MatchString(out) {
		t.Fatalf("goray serve status: %v\n%s", err, out)
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
	// goray serve shutdown returns once every Serve actor is gone.
	if out, err := runGoray(c.bin, c.env, "serve", "shutdown", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir)); err != nil || !strings.Contains(out, "Serve stopped.") {
		t.Fatalf("goray serve shutdown: %v\n%s", err, out)
	}
	alive, err := sdk.ListActors(ctx, sdk.StateFilter("state=ALIVE"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alive {
		if strings.HasPrefix(a.ClassName, "serve.") {
			t.Errorf("after serve.Shutdown, %s %s is alive", a.ClassName, a.Name)
		}
	}
}

// TestServeSurvives: under constant HTTP load, a rolling update of the
// inner deployment, a SIGKILLed front replica and a SIGKILLed controller
// fail no request; the update completes, the replica is back, and the
// restarted controller finds the same replicas.
func TestServeSurvives(t *testing.T) {
	ctx, _ := startMultiNode(t, nil, nodeSpec{"--num-cpus", "2"})
	t.Cleanup(func() {
		if err := serve.Shutdown(ctx); err != nil {
			t.Errorf("serve.Shutdown: %v", err)
		}
	})
	run := func(factor int) {
		t.Helper()
		app := FrontDep.Bind(FrontArgs{Doubler: serve.HandleOf(DoublerDep.Bind(factor))})
		if _, err := serve.Run(ctx, app, serve.AppName("robust"), serve.RoutePrefix("/robust"), serve.HTTPPort(0)); err != nil {
			t.Fatal(err)
		}
	}
	run(3)
	st, err := serve.GetStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addr := st.Proxies[0].Addr

	// The load: GETs one after another, each answer checked.
	type answer struct {
		factor int
		pid    string
	}
	var mu sync.Mutex
	var failures []string
	answers := map[int]int{} // factor -> answers seen
	pids := map[string]bool{}
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		client := &http.Client{Timeout: 30 * time.Second}
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rep, err := client.Get(fmt.Sprintf("http://%s/robust?x=%d", addr, i))
			var body []byte
			if err == nil {
				body, _ = io.ReadAll(rep.Body)
				rep.Body.Close()
			}
			var v int
			var pid string
			ok := err == nil && rep.StatusCode == http.StatusOK
			if ok {
				_, serr := fmt.Sscanf(string(body), "%d from pid %s", &v, &pid)
				ok = serr == nil && v%i == 0
			}
			mu.Lock()
			if !ok {
				failures = append(failures, fmt.Sprintf("x=%d: %v %q", i, err, body))
			} else {
				answers[v/i]++
				pids[pid] = true
			}
			mu.Unlock()
		}
	}()
	seen := func(factor, n int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if answers[factor] < n {
				return fmt.Errorf("%d answers doubled by %d, want %d (failures: %d)", answers[factor], factor, n, len(failures))
			}
			return nil
		}
	}
	checkFor(t, 30*time.Second, 10*time.Millisecond, seen(3, 20))

	// A rolling update: the inner deployment's new version replaces the
	// old once ready.
	run(4)
	checkFor(t, 60*time.Second, 10*time.Millisecond, seen(4, 20))
	checkFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		st, err := serve.GetStatus(ctx)
		if err != nil {
			return err
		}
		for _, d := range st.Apps[0].Deployments {
			if d.State != "RUNNING" || len(d.Replicas) != 2 {
				return fmt.Errorf("deployment %s: %+v", d.Name, d)
			}
		}
		return nil
	})

	// A front replica SIGKILLed: goray restarts it; GETs in flight go to
	// the other.
	mu.Lock()
	var victim string
	for p := range pids {
		victim = p
	}
	mu.Unlock()
	pid, err := strconv.Atoi(victim)
	if err != nil {
		t.Fatal(err)
	}
	before := func() int { mu.Lock(); defer mu.Unlock(); return answers[4] }()
	known := func() map[string]bool { mu.Lock(); defer mu.Unlock(); return maps.Clone(pids) }()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 60*time.Second, 10*time.Millisecond, seen(4, before+50))
	// Its replacement (a new process) answers too.
	checkFor(t, 60*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		for p := range pids {
			if !known[p] {
				return nil
			}
		}
		return fmt.Errorf("no answer yet from a new front process (known: %v)", known)
	})

	// The controller SIGKILLed: traffic goes on; the restarted controller
	// reads its targets back and finds the same replicas.
	names := func() []string {
		st, err := serve.GetStatus(ctx)
		if err != nil {
			return nil
		}
		var out []string
		for _, a := range st.Apps {
			for _, d := range a.Deployments {
				for _, r := range d.Replicas {
					if r.State == "RUNNING" {
						out = append(out, r.Name)
					}
				}
			}
		}
		slices.Sort(out)
		return out
	}
	want := names()
	actors, err := sdk.ListActors(ctx, sdk.StateFilter("name=serve-controller"))
	if err != nil || len(actors) != 1 || actors[0].PID == 0 {
		t.Fatalf("the controller: %v %v", actors, err)
	}
	if err := syscall.Kill(actors[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	before = func() int { mu.Lock(); defer mu.Unlock(); return answers[4] }()
	checkFor(t, 60*time.Second, 10*time.Millisecond, seen(4, before+50))
	checkFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if got := names(); !slices.Equal(got, want) {
			return fmt.Errorf("replicas after the controller's restart: %v, want %v", got, want)
		}
		return nil
	})
	close(stop)
	<-loadDone
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed, the first: %v", len(failures), failures[:min(len(failures), 5)])
	}
	t.Logf("answers: %v from %d front processes", answers, len(pids))
}

// TestServeAutoscaling: load adds replicas up to the maximum, and they go
// once the load does.
func TestServeAutoscaling(t *testing.T) {
	ctx, _ := startMultiNode(t, nil, nodeSpec{"--num-cpus", "2"})
	t.Cleanup(func() {
		if err := serve.Shutdown(ctx); err != nil {
			t.Errorf("serve.Shutdown: %v", err)
		}
	})
	h, err := serve.Run(ctx, SleeperDep.Bind(struct{}{}), serve.AppName("scaled"), serve.NoRoute())
	if err != nil {
		t.Fatal(err)
	}
	deployment := func() (serve.DeploymentStatus, error) {
		st, err := serve.GetStatus(ctx)
		if err != nil {
			return serve.DeploymentStatus{}, err
		}
		for _, a := range st.Apps {
			if a.Name == "scaled" {
				return a.Deployments[0], nil
			}
		}
		return serve.DeploymentStatus{}, fmt.Errorf("no application scaled in %+v", st)
	}
	running := func(d serve.DeploymentStatus) int {
		n := 0
		for _, r := range d.Replicas {
			if r.State == "RUNNING" {
				n++
			}
		}
		return n
	}
	if d, err := deployment(); err != nil || d.Target != 1 || running(d) != 1 {
		t.Fatalf("before the load: %+v %v", d, err)
	}
	// 12 callers, each call 100 ms: about 12 in flight, 2 wanted per
	// replica: the maximum of 3.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	pids := sync.Map{}
	for range 12 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				pid, err := SleeperSleep.Remote(ctx, h, 100*time.Millisecond).Get(ctx)
				if err != nil {
					t.Errorf("call under load: %v", err)
					return
				}
				pids.Store(pid, true)
			}
		})
	}
	checkFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		d, err := deployment()
		if err != nil {
			return err
		}
		if d.Target != 3 || running(d) != 3 {
			return fmt.Errorf("under load: target %d, %d running", d.Target, running(d))
		}
		return nil
	})
	// The new replicas get calls (the callers refresh their replicas).
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		n := 0
		pids.Range(func(_, _ any) bool { n++; return true })
		if n < 3 {
			return fmt.Errorf("calls reached %d replicas", n)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	checkFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		d, err := deployment()
		if err != nil {
			return err
		}
		if d.Target != 1 || len(d.Replicas) != 1 {
			return fmt.Errorf("after the load: target %d, replicas %+v", d.Target, d.Replicas)
		}
		if len(d.Decisions) < 2 {
			return fmt.Errorf("decisions: %v", d.Decisions)
		}
		return nil
	})
}
