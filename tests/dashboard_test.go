package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/goray/goray/sdk"
)

// chromiumPath is Debian's chromium, which `make test` installs.
const chromiumPath = "/usr/bin/chromium"

// dashboardURL waits for the head's "Dashboard at URL" line.
func (c *testCluster) dashboardURL() string {
	c.t.Helper()
	re := regexp.MustCompile(`Dashboard at (\S+)`)
	var url string
	checkFor(c.t, 30*time.Second, 20*time.Millisecond, func() error {
		c.head.mu.Lock()
		m := re.FindStringSubmatch(c.head.log.String())
		c.head.mu.Unlock()
		if m == nil {
			return errors.New("the head printed no dashboard URL")
		}
		url = m[1]
		return nil
	})
	return url
}

// browser starts a headless chromium (as a person's, with a fresh
// profile) for one test.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("no chromium at %s (make test installs Debian's chromium): %v", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 1000),
	)
	if os.Getenv("GORAY_TLS_CA") != "" {
		// The suite's TLS run: the dashboard's certificate comes from
		// a CA of the run's own, which this fresh profile does not
		// know (the API test checks the certificate against it).
		opts = append(opts, chromedp.Flag("ignore-certificate-errors", true))
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshot saves the page as dir/name.png.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// textOf reads an element's text, "" if it is not there (yet).
func textOf(ctx context.Context, sel string) string {
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		return ""
	}
	return out
}

// waitText waits until the element's text satisfies ok.
func waitText(t *testing.T, ctx context.Context, sel, what string, ok func(string) bool) string {
	t.Helper()
	var got string
	checkFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		got = textOf(ctx, sel)
		if !ok(got) {
			return fmt.Errorf("%s: %s is %q", what, sel, got)
		}
		return nil
	})
	return got
}

// TestDashboard drives the dashboard in a real headless chromium on a
// 2-node cluster, as a person would: logs in with the token (after a
// wrong one), sees both nodes, watches a submitted job go RUNNING ->
// SUCCEEDED with its output appearing, watches a named actor restart
// after its process is killed, and reads a failed task's error. The
// pages update themselves: the test never reloads. Screenshots of each
// page go to $GORAY_DASHBOARD_SCREENSHOTS, or a temporary directory.
func TestDashboard(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--dashboard-port", "-1"}, nodeSpec{"--num-cpus", "2"})
	url := c.dashboardURL()
	shots := os.Getenv("GORAY_DASHBOARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	token, err := os.ReadFile(tokenFile(c.head.dir))
	if err != nil {
		t.Fatal(err)
	}
	b := browser(t)
	run := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		rctx, cancel := context.WithTimeout(b, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(rctx, steps...); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing without the token: the page asks for it, a wrong one is
	// refused.
	run(chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("#token")))
	loc, err := chromedp.Run(b, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(loc, "/login") {
		t.Fatalf("without a session the dashboard is at %s, want the login page", loc)
	}
	run(chromedp.SendKeys(chromedp.ID("#token"), strings.Repeat("ab", 32)), chromedp.Click(chromedp.ID("#login")),
		chromedp.WaitVisible(chromedp.ID("#login-error")))
	if msg := textOf(b, "#login-error"); !strings.Contains(msg, "not this cluster's token") {
		t.Fatalf("wrong token: %q", msg)
	}
	screenshot(t, b, shots, "login-refused")

	// The right token: the overview, live, with both nodes.
	run(chromedp.SendKeys(chromedp.ID("#token"), strings.TrimSpace(string(token))),
		chromedp.Click(chromedp.ID("#login")), chromedp.WaitVisible(chromedp.ID("#cards")))
	waitText(t, b, "#nodes-alive", "alive nodes", func(s string) bool { return s == "2" })
	screenshot(t, b, shots, "overview")
	run(chromedp.Click(chromedp.CSS(`a[data-view="nodes"]`)))
	waitText(t, b, "#nodes", "node table", func(s string) bool {
		return strings.Contains(s, c.head.id[:8]) && strings.Contains(s, c.nodes[0].id[:8]) && strings.Count(s, "ALIVE") == 2
	})
	screenshot(t, b, shots, "cluster")

	// A job submitted from the CLI: RUNNING, then SUCCEEDED, and its
	// output appears on its page, without a reload.
	run(chromedp.Click(chromedp.CSS(`a[data-view="jobs"]`)))
	gate := filepath.Join(t.TempDir(), "go")
	out, err := runGoray(c.bin, c.env, "job", "submit", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir),
		"--submission-id", "dash-job", "--no-wait", "--", "sh", "-c",
		fmt.Sprintf("echo hello from the dashboard job; while [ ! -e %s ]; do sleep 0.05; done; echo done", gate))
	if err != nil {
		t.Fatalf("job submit: %v\n%s", err, out)
	}
	waitText(t, b, `.job-status[data-id="dash-job"]`, "job status", func(s string) bool { return s == "RUNNING" })
	screenshot(t, b, shots, "jobs-running")
	run(chromedp.Click(chromedp.CSS(`a[href="#/jobs/dash-job"]`)))
	waitText(t, b, "#log", "job output", func(s string) bool { return strings.Contains(s, "hello from the dashboard job") })
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitText(t, b, "#job-status", "job status", func(s string) bool { return s == "SUCCEEDED" })
	waitText(t, b, "#log", "job output", func(s string) bool { return strings.Contains(s, "done") })
	waitText(t, b, "#exit-code", "exit code", func(s string) bool { return s == "0" })
	screenshot(t, b, shots, "job")

	// A job that would run for minutes, stopped with its Stop button.
	out, err = runGoray(c.bin, c.env, "job", "submit", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir),
		"--submission-id", "dash-long", "--no-wait", "--", "sleep", "300")
	if err != nil {
		t.Fatalf("job submit: %v\n%s", err, out)
	}
	run(chromedp.Click(chromedp.CSS(`a[data-view="jobs"]`)))
	waitText(t, b, `.job-status[data-id="dash-long"]`, "job status", func(s string) bool { return s == "RUNNING" })
	run(chromedp.Click(chromedp.CSS(`button[data-stop="dash-long"]`)))
	waitText(t, b, `.job-status[data-id="dash-long"]`, "stopped job's status", func(s string) bool { return s == "STOPPED" })

	// A named actor appears; killing its process restarts it.
	a, err := CounterActor.Options(sdk.Name("dash-counter"), sdk.MaxRestarts(1)).Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := CounterPid.Remote(ctx, a).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	run(chromedp.Click(chromedp.CSS(`a[data-view="actors"]`)))
	waitText(t, b, `.actor-state[data-name="dash-counter"]`, "actor state", func(s string) bool { return s == "ALIVE" })
	// The filter box: the name matches, more letters match nothing; the
	// filter goes (the view is opened again) before the restart below.
	run(chromedp.SendKeys(chromedp.ID("q"), "dash-count"))
	waitText(t, b, "#actors", "filtered actors", func(s string) bool { return strings.Contains(s, "default/dash-counter") })
	screenshot(t, b, shots, "actors")
	run(chromedp.SendKeys(chromedp.ID("q"), "-no-such"))
	waitText(t, b, "#actors", "filtered actors", func(s string) bool { return strings.Contains(s, "No actor matches") })
	run(chromedp.Click(chromedp.CSS(`a[data-view="jobs"]`)), chromedp.Click(chromedp.CSS(`a[data-view="actors"]`)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitText(t, b, `.restarts[data-name="dash-counter"]`, "restarts", func(s string) bool { return s == "1" })
	waitText(t, b, `.actor-state[data-name="dash-counter"]`, "actor state", func(s string) bool { return s == "ALIVE" })
	screenshot(t, b, shots, "actor-restarted")
	// Its page shows what its (new) worker wrote, and its calls.
	if _, err := CounterSay.Remote(ctx, a, "hello from the restarted actor").Get(ctx); err != nil {
		t.Fatal(err)
	}
	run(chromedp.Click(chromedp.CSS(`a[href="#/actors/` + a.ID().String() + `"]`)))
	waitText(t, b, "#actor-log", "actor log", func(s string) bool { return strings.Contains(s, "counter says: hello from the restarted actor") })
	waitText(t, b, "#calls", "actor calls", func(s string) bool { return strings.Contains(s, "tests.Counter.Say") })
	screenshot(t, b, shots, "actor")

	// A failed task: the overview lists it; its page shows the error.
	if _, err := Fail.Remote(ctx, "plain").Get(ctx); err == nil {
		t.Fatal("tests.Fail succeeded")
	}
	run(chromedp.Click(chromedp.CSS(`a[data-view="overview"]`)))
	waitText(t, b, "#failures", "failures", func(s string) bool { return strings.Contains(s, "tests.Fail") })
	run(chromedp.Click(chromedp.CSS(`#failures a[href^="#/tasks/"]`)))
	waitText(t, b, "#task-error", "task error", func(s string) bool { return strings.Contains(s, "plain failure") })
	screenshot(t, b, shots, "task-failed")
	// A panic's page shows its stack.
	if _, err := Fail.Remote(ctx, "panic").Get(ctx); err == nil {
		t.Fatal("tests.Fail panicked without an error")
	}
	run(chromedp.Click(chromedp.CSS(`a[data-view="tasks"]`)))
	waitText(t, b, "#failed", "latest failures", func(s string) bool { return strings.Contains(s, "panic") })
	run(chromedp.Click(chromedp.CSS(`#failed tbody tr:first-child a[href^="#/tasks/"]`)))
	waitText(t, b, "#task-error", "panic's error", func(s string) bool {
		return strings.Contains(s, "assignment to entry in nil map") && strings.Contains(s, "funcs_test.go")
	})
	screenshot(t, b, shots, "task-panicked")

	// The task stream draws spans on the workers of both nodes while
	// 1,000 tasks run.
	run(chromedp.Click(chromedp.CSS(`a[data-view="tasks"]`)), chromedp.WaitVisible(chromedp.ID("#stream")))
	refs := make([]sdk.Ref[string], 1000)
	for i := range refs {
		refs[i] = SleepThenNode.Remote(ctx, 5)
	}
	attr := func(name string) int {
		v, err := chromedp.Run(b, chromedp.AttributeValue(chromedp.ID("#stream"), name))
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(v.Value)
		return n
	}
	checkFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if s, l := attr("data-spans"), attr("data-lanes"); s < 20 || l < 2 {
			return fmt.Errorf("the task stream shows %d spans on %d lanes", s, l)
		}
		return nil
	})
	screenshot(t, b, shots, "task-stream")
	if _, err := sdk.GetAll(ctx, refs); err != nil {
		t.Fatal(err)
	}

	// A placement group spread over both nodes, and an object in the
	// driver's store.
	pg, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{{"CPU": 0.5}, {"CPU": 0.5}}, sdk.PlacementStrictSpread, sdk.PGName("dash-group"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sdk.RemovePlacementGroup(ctx, pg) }()
	run(chromedp.Click(chromedp.CSS(`a[data-view="placement-groups"]`)))
	waitText(t, b, `.pg-state[data-name="dash-group"]`, "group state", func(s string) bool { return s == "CREATED" })
	waitText(t, b, "#pgs", "bundles", func(s string) bool {
		return strings.Contains(s, "on "+c.head.id[:8]) && strings.Contains(s, "on "+c.nodes[0].id[:8])
	})
	screenshot(t, b, shots, "placement-groups")
	blob, err := sdk.Put(ctx, make([]byte, 3<<20))
	if err != nil {
		t.Fatal(err)
	}
	run(chromedp.Click(chromedp.CSS(`a[data-view="memory"]`)))
	waitText(t, b, "#objs", "objects", func(s string) bool {
		return strings.Contains(s, "3.0 MiB") && strings.Contains(s, fmt.Sprintf("pid %d", os.Getpid()))
	})
	screenshot(t, b, shots, "memory")
	_ = blob

	run(chromedp.Click(chromedp.CSS(`a[data-view="overview"]`)))
	waitText(t, b, "#failures", "failures", func(s string) bool { return strings.Contains(s, "tests.Fail") })
	screenshot(t, b, shots, "overview-after")
	t.Logf("screenshots in %s", shots)
}

// TestDashboardRefusesWithoutToken: every API path answers 401 to a
// request without a session or key, and a forged cookie is no session.
func TestDashboardRefusesWithoutToken(t *testing.T) {
	_, c := startMultiNode(t, []string{"--dashboard-port", "-1"})
	url := c.dashboardURL()
	status := func(method, path string, cookie bool) int {
		t.Helper()
		req, err := http.NewRequest(method, url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cookie {
			req.AddCookie(&http.Cookie{Name: "goray_session", Value: "forged"})
		}
		rep, err := dashboardClient(t).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		rep.Body.Close()
		return rep.StatusCode
	}
	for _, p := range []string{"/api/overview", "/api/nodes", "/api/jobs", "/api/actors", "/api/tasks", "/api/history", "/api/stream?topics=overview", "/api/jobs/x/logs"} {
		for _, cookie := range []bool{false, true} {
			if got := status(http.MethodGet, p, cookie); got != http.StatusUnauthorized {
				t.Errorf("GET %s without a session (forged cookie: %v): HTTP %d, want 401", p, cookie, got)
			}
		}
	}
	for _, p := range []string{"/api/jobs/x/stop", "/api/actors/abcd/kill"} {
		if got := status(http.MethodPost, p, false); got != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: HTTP %d, want 401", p, got)
		}
	}
}

// dashboardClient is an HTTP client that trusts the suite's TLS CA when
// the run has one (GORAY_TLS_CA), as the dashboard then serves HTTPS.
func dashboardClient(t *testing.T) *http.Client {
	t.Helper()
	ca := os.Getenv("GORAY_TLS_CA")
	if ca == "" {
		return http.DefaultClient
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", ca)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
