package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/cluster"
	"github.com/goray/goray/sdk"
)

// The dashboard's cost to the head: a head process (GCS, raylet, NATS,
// dashboard) serves a separate driver submitting no-op tasks at
// dashboardRate, and its own CPU time (getrusage: its threads, not its
// workers) is measured over windows in which a headless chromium shows
// about:blank or a dashboard page, alternating; the figure is the median
// of the differences, in percent of one core.
const (
	dashboardRate    = 10_000
	dashboardWindow  = 4 * time.Second
	dashboardPairs   = 4
	dashboardWarmup  = 3 * time.Second
	dashboardBrowser = "/usr/bin/chromium"
)

func benchDashboard(ctx context.Context, h *harness) ([]result, error) {
	return runSelfChild(ctx, "dashboard child", "-dashboard-child", filepath.Join(h.cfg.sessions, "dashboard"))
}

func runDashboardChild(dir string) int { return childMain("dashboard child", dir, dashboardCost) }

func dashboardCost(ctx context.Context, dir string) ([]result, error) {
	if _, err := os.Stat(dashboardBrowser); err != nil {
		return nil, fmt.Errorf("the dashboard benchmark drives %s (make chromium installs it): %w", dashboardBrowser, err)
	}
	creds, err := benchCredentials(true)
	if err != nil {
		return nil, err
	}
	head, err := cluster.StartHead(ctx, cluster.Config{SessionDir: filepath.Join(dir, "head"), ObjectStoreMemory: 512 << 20,
		Logger: zerolog.New(os.Stderr).Level(zerolog.WarnLevel), Credentials: creds, DashboardAddr: "127.0.0.1:0"})
	if err != nil {
		return nil, fmt.Errorf("start head: %w", err)
	}
	defer head.Shutdown()
	tok, _ := creds.Token()

	// The load: a driver of its own, pacing no-op tasks.
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	load := exec.CommandContext(ctx, exe, "-load-child", head.Address(), strconv.Itoa(dashboardRate))
	load.Env = append(os.Environ(), auth.EnvTokenFile+"="+cluster.TokenFile(head.SessionDir()))
	load.Stderr = os.Stderr
	stdin, err := load.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := load.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := load.Start(); err != nil {
		return nil, err
	}
	defer func() { stdin.Close(); _ = load.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		return nil, fmt.Errorf("load child: %q %v", lines.Text(), lines.Err())
	}
	time.Sleep(dashboardWarmup)

	// The browser, logged in.
	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(dashboardBrowser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true), chromedp.WindowSize(1400, 1000))...)
	defer cancel()
	b, cancel2 := chromedp.NewContext(actx)
	defer cancel2()
	url := head.DashboardURL()
	if err := chromedp.Do(b, chromedp.Navigate(url+"/login"), chromedp.SendKeys(chromedp.ID("token"), tok.Hex()),
		chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("cards"))); err != nil {
		return nil, fmt.Errorf("log in to the dashboard: %w", err)
	}

	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// window shows page for a settling second, then measures the head's
	// CPU share over dashboardWindow.
	window := func(page string) (float64, error) {
		if err := chromedp.Do(b, chromedp.Navigate(page)); err != nil {
			return 0, err
		}
		time.Sleep(time.Second)
		c0, t0 := cpu(), time.Now()
		time.Sleep(dashboardWindow)
		return float64(cpu()-c0) / float64(time.Since(t0)), nil
	}
	measure := func(page string) (base, added []float64, err error) {
		for range dashboardPairs {
			blank, err := window("about:blank")
			if err != nil {
				return nil, nil, err
			}
			shown, err := window(page)
			if err != nil {
				return nil, nil, err
			}
			base, added = append(base, blank), append(added, shown-blank)
		}
		return base, added, nil
	}
	base1, overview, err := measure(url + "/#/overview")
	if err != nil {
		return nil, err
	}
	base2, tasks, err := measure(url + "/#/tasks")
	if err != nil {
		return nil, err
	}
	stdin.Close()
	var rate float64
	if lines.Scan() {
		rate, _ = strconv.ParseFloat(strings.TrimSpace(lines.Text()), 64)
	}
	median := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	pct := func(xs []float64) string {
		var parts []string
		for _, x := range xs {
			parts = append(parts, fmt.Sprintf("%.1f", 100*x))
		}
		return strings.Join(parts, " ")
	}
	log.Printf("dashboard: head CPU %% of a core with about:blank: %s | %s; added by the overview: %s; by the tasks page: %s; load %.0f tasks/s",
		pct(base1), pct(base2), pct(overview), pct(tasks), rate)
	return []result{
		{Name: "dashboard_load_tasks_per_s", Value: rate, Unit: "per_s"},
		{Name: "head_cpu_percent_at_load", Value: 100 * median(append(base1, base2...)), Unit: "percent_of_a_core"},
		{Name: "dashboard_overview_head_cpu_percent", Value: 100 * median(overview), Unit: "percent_of_a_core"},
		{Name: "dashboard_tasks_page_head_cpu_percent", Value: 100 * median(tasks), Unit: "percent_of_a_core"},
	}, nil
}

// runLoadChild is the dashboard benchmark's driver: it joins the cluster
// at addr, says "ready", and submits no-op tasks at rate per second (in
// batches every 10 ms, at most a second's worth in flight) until stdin
// closes; then it prints the rate it reached.
func runLoadChild(addr, rateArg string) int {
	rate, err := strconv.Atoi(rateArg)
	if err != nil || rate <= 0 {
		log.Printf("load child: rate %q", rateArg)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := sdk.Init(ctx, sdk.Address(addr), sdk.LogWriter(os.Stderr)); err != nil {
		log.Printf("load child: %v", err)
		return 1
	}
	defer sdk.Shutdown()
	fmt.Println("ready")
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	var done atomic.Int64
	inflight := make(chan sdk.Ref[int], rate)
	go func() {
		for r := range inflight {
			if _, err := r.Get(ctx); err == nil {
				done.Add(1)
			}
		}
	}()
	t0 := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	per := max(rate/100, 1)
	for ctx.Err() == nil {
		<-tick.C
		// With a second's worth in flight already, the rest of the
		// batch is not submitted.
		for i := 0; i < per && len(inflight) < cap(inflight); i++ {
			inflight <- noop.Remote(ctx)
		}
	}
	fmt.Printf("%.0f\n", float64(done.Load())/time.Since(t0).Seconds())
	return 0
}
