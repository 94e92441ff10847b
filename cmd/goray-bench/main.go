// Command goray-bench is goray's version of Ray's core microbenchmark
// (python/ray/_private/ray_perf.py). It starts an embedded single-node
// cluster, runs each benchmark for a fixed time after a short warm-up, and
// prints one JSON object per line on stdout:
//
//	{"name": "single_client_tasks_sync", "value": 12345.6, "unit": "per_s"}
//
// Metric names are Ray's where one exists. Logs go to stderr.
//
//	goray-bench                      # everything, about a minute on 2 cores
//	goray-bench -only 'tasks_(sync|async)$' -duration 5s
//	goray-bench -only put_calls -cpuprofile /tmp/driver.prof
//
// goray's workers re-run this binary, so main hands over to the worker loop
// (sdk.WorkerMain) before anything else, and the remote functions are
// registered at package init (funcs.go).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/goray/goray/sdk"
)

// Environment that a driver run with -worker-cpuprofile passes to its
// workers (goray copies the driver's environment into them, except
// variables starting with GORAY_).
const (
	envWorkerProfileDir   = "GORAYBENCH_WORKER_CPUPROFILE_DIR"
	envWorkerProfileChunk = "GORAYBENCH_WORKER_CPUPROFILE_CHUNK"
)

type config struct {
	only          *regexp.Regexp
	duration      time.Duration
	warmup        time.Duration
	jsonOut       bool
	cpuProfile    string
	workerProfDir string
	putSize       int
	storeMemory   uint64
	initRuns      int
	clientCPUs    float64
	workerProcs   int
	timeout       time.Duration
	keepSessions  bool
	// actorCPUs is ActorCPUs of the benchmark actors; negative: goray's
	// default (1 CPU to be placed, none while running).
	actorCPUs          float64
	nActors            int
	actorCreationCount int
	// sessions holds the session directories of this run's clusters.
	sessions string
}

func main() {
	// A worker process runs the worker loop here and never returns.
	startWorkerProfile()
	sdk.WorkerMain()

	var cfg config
	only := flag.String("only", "", "run only the benchmarks whose metric names match this regular expression")
	flag.DurationVar(&cfg.duration, "duration", 2*time.Second, "measured time per benchmark (after the warm-up); rounds run until it has passed")
	flag.DurationVar(&cfg.warmup, "warmup", 300*time.Millisecond, "warm-up time per benchmark (at least one round)")
	flag.BoolVar(&cfg.jsonOut, "json", true, "print one JSON object per line; -json=false prints a table")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write the driver's CPU profile (driver, raylet, GCS: one process) to this file")
	flag.StringVar(&cfg.workerProfDir, "worker-cpuprofile", "", "directory where each worker process writes CPU profiles (worker-PID-N.prof, one per 2 s chunk)")
	flag.IntVar(&cfg.putSize, "put-size", 800_000_000, "bytes per put in single_client_put_gigabytes (Ray: 0.8 GB), also the memcpy size")
	storeMem := flag.Uint64("store-memory", 4<<30, "object store size in bytes")
	flag.IntVar(&cfg.initRuns, "init-runs", 3, "fresh drivers started for init_to_first_result_s (the median is reported)")
	flag.Float64Var(&cfg.clientCPUs, "client-cpus", defaultClientCPUs(), "CPUs of each client task in multi_client_tasks_async")
	flag.IntVar(&cfg.workerProcs, "worker-gomaxprocs", 0, "experiment: start workers with GOMAXPROCS set to this (0: goray's default, the machine's CPUs)")
	flag.DurationVar(&cfg.timeout, "timeout", 90*time.Second, "give up on a benchmark after this long")
	flag.Float64Var(&cfg.actorCPUs, "actor-cpus", -1, "ActorCPUs of each benchmark actor (Ray's benchmark actors have num_cpus=0); negative: goray's default, 1 CPU to be placed and none while running")
	flag.IntVar(&cfg.nActors, "actors", 32, "actors of the 1_n and n_n actor benchmarks (Ray: cpu_count // 2 = 32 on its 64-vCPU machine)")
	flag.IntVar(&cfg.actorCreationCount, "actor-creation-count", 1000, "actors created by actor_creation_per_s, each in a worker process of its own")
	flag.BoolVar(&cfg.keepSessions, "keep-sessions", false, "keep the clusters' session directories (worker logs) even when every benchmark passed")
	initChild := flag.Bool("init-child", false, "internal: measure sdk.Init to the first task result in this fresh process and exit")
	spillChild := flag.String("spill-child", "", "internal: run the spill benchmark with a cluster of its own in this session directory and exit")
	crossNodeChild := flag.String("cross-node-child", "", "internal: run the cross-node transfer benchmark with a two-node cluster of its own in this directory and exit")
	shipChild := flag.String("ship-child", "", "internal: run the binary shipping benchmark with a two-node cluster of its own in this directory and exit")
	shipDriver := flag.String("ship-driver", "", "internal: join the cluster at this address, run a task on the node given as the first argument, print the seconds taken and exit")
	dashboardChild := flag.String("dashboard-child", "", "internal: run the dashboard cost benchmark with a head of its own in this directory and exit")
	loadChild := flag.String("load-child", "", "internal: join the cluster at this address and submit no-op tasks at the rate given as the first argument until stdin closes")
	nodeChild := flag.String("node-child", "", "internal: join the cluster at this address as a node (session directory: the first argument) until stdin closes")
	flag.Parse()
	cfg.storeMemory = *storeMem
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("goray-bench: ")
	log.SetOutput(os.Stderr)

	if *initChild {
		os.Exit(runInitChild(flag.Arg(0)))
	}
	if *spillChild != "" {
		os.Exit(runSpillChild(*spillChild))
	}
	if *crossNodeChild != "" {
		os.Exit(runCrossNodeChild(*crossNodeChild))
	}
	if *shipChild != "" {
		os.Exit(runShipChild(*shipChild))
	}
	if *shipDriver != "" {
		os.Exit(runShipDriverChild(*shipDriver, flag.Arg(0)))
	}
	if *nodeChild != "" {
		os.Exit(runNodeChild(*nodeChild, flag.Arg(0)))
	}
	if *dashboardChild != "" {
		os.Exit(runDashboardChild(*dashboardChild))
	}
	if *loadChild != "" {
		os.Exit(runLoadChild(*loadChild, flag.Arg(0)))
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			log.Fatalf("-only: %v", err)
		}
		cfg.only = re
	}
	os.Exit(run(cfg))
}

// defaultClientCPUs gives the multi-client tasks no CPU on small nodes, so
// the four of them do not starve the no-op tasks they submit (Ray's
// clients are actors, which hold no CPU while running either).
func defaultClientCPUs() float64 {
	if runtime.NumCPU() <= 2 {
		return 0
	}
	return 1
}

type result struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

type printer struct {
	json bool
	out  io.Writer
}

func (p printer) print(r result) {
	if p.json {
		b, _ := json.Marshal(r)
		fmt.Fprintf(p.out, "%s\n", b)
		return
	}
	fmt.Fprintf(p.out, "%-48s %16.3f %s\n", r.Name, r.Value, r.Unit)
}

// benchmark produces the metrics named in names.
type benchmark struct {
	names []string
	// beforeInit benchmarks run before this process starts its cluster.
	beforeInit bool
	run        func(ctx context.Context, h *harness) ([]result, error)
}

func (b benchmark) selected(re *regexp.Regexp) bool {
	if re == nil {
		return true
	}
	for _, n := range b.names {
		if re.MatchString(n) {
			return true
		}
	}
	return false
}

func benchmarks() []benchmark {
	return []benchmark{
		{names: []string{"init_to_first_result_s"}, beforeInit: true, run: benchInitToFirstResult},
		{names: []string{"single_client_get_calls_Plasma_Store"}, run: benchGetCalls},
		{names: []string{"single_client_put_calls_Plasma_Store"}, run: benchPutCalls},
		{names: []string{"memcpy_GB_per_s_1thread", "single_client_put_gigabytes", "single_client_put_gigabytes_vs_memcpy", "single_client_put_gigabytes_first_touch", "object_store_used_after_put_gigabytes"}, run: benchPutGigabytes},
		{names: []string{"spill_GB_per_s", "restore_GB_per_s", "file_write_GB_per_s", "file_read_GB_per_s", "spill_vs_file_write", "restore_vs_file_read", "spill_end_to_end_GB_per_s", "restore_end_to_end_GB_per_s"}, beforeInit: true, run: benchSpill},
		{names: []string{"raw_tcp_loopback_GB_per_s", "object_transfer_GB_per_s", "object_transfer_vs_raw_tcp", "object_transfer_tls_GB_per_s", "object_transfer_tls_vs_plain"}, beforeInit: true, run: benchTransfer},
		{names: []string{"object_transfer_cross_node_GB_per_s", "remote_tasks_sync_per_s", "remote_tasks_async_per_s"}, beforeInit: true, run: benchCrossNode},
		{names: []string{"ship_binary_40MB_first_remote_task_s", "first_remote_task_cached_binary_s"}, beforeInit: true, run: benchShipBinary},
		{names: []string{"serve_http_noop_qps", "serve_http_noop_qps_vs_net_http", "net_http_noop_qps", "serve_http_p50_ms", "serve_http_p99_ms", "serve_http_p50_added_ms", "serve_handle_calls_per_s"}, run: benchServe},
		{names: []string{"dashboard_load_tasks_per_s", "head_cpu_percent_at_load", "dashboard_overview_head_cpu_percent", "dashboard_tasks_page_head_cpu_percent"}, beforeInit: true, run: benchDashboard},
		{names: []string{"object_transfer_cross_node_tls_GB_per_s", "remote_tasks_sync_tls_per_s", "remote_tasks_async_tls_per_s"}, beforeInit: true, run: benchCrossNodeTLS},
		{names: []string{"single_client_get_gigabytes", "get_1GB_object_latency_s", "get_1MB_object_latency_s", "get_view_1GB_object_latency_s", "get_view_1GB_object_latency_s_from_worker"}, run: benchGetGigabytes},
		{names: []string{"multi_client_put_gigabytes"}, run: benchMultiClientPutGigabytes},
		{names: []string{"single_client_get_object_containing_10k_refs"}, run: benchGet10kRefs},
		{names: []string{"single_client_tasks_sync"}, run: benchTasksSync},
		{names: []string{"single_client_tasks_async"}, run: benchTasksAsync},
		{names: []string{"single_client_tasks_and_get_batch"}, run: benchTasksAndGetBatch},
		{names: []string{"single_client_wait_1k_refs"}, run: benchWait1kRefs},
		{names: []string{"multi_client_tasks_async"}, run: benchMultiClientTasksAsync},
		{names: []string{"1_1_actor_calls_sync"}, run: bench11ActorSync},
		{names: []string{"1_1_actor_calls_async"}, run: bench11ActorAsync},
		{names: []string{"1_1_actor_calls_concurrent"}, run: bench11ActorConcurrent},
		{names: []string{"1_n_actor_calls_async"}, run: bench1NActorAsync},
		{names: []string{"n_n_actor_calls_async"}, run: benchNNActorAsync},
		{names: []string{"n_n_actor_calls_with_arg_async"}, run: benchNNActorWithArgAsync},
		{names: []string{"actor_creation_per_s", "actor_creation_s"}, run: benchActorCreation},
		{names: []string{"packed_actor_creation_per_s", "packed_actor_creation_s"}, run: benchPackedActorCreation},
		{names: []string{"placement_group_create/removal"}, run: benchPlacementGroups},
	}
}

func run(cfg config) int {
	start := time.Now()
	dir, err := os.MkdirTemp("", "goray-bench-")
	if err != nil {
		log.Printf("session directory: %v", err)
		return 1
	}
	cfg.sessions = dir
	h := &harness{cfg: cfg}
	p := printer{json: cfg.jsonOut, out: os.Stdout}
	failed := 0
	var selected []benchmark
	for _, b := range benchmarks() {
		if b.selected(cfg.only) {
			selected = append(selected, b)
		}
	}
	if len(selected) == 0 {
		log.Printf("-only %q matches no benchmark", cfg.only)
		return 2
	}
	runOne := func(b benchmark) {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
		defer cancel()
		t0 := time.Now()
		rs, err := b.run(ctx, h)
		for _, r := range rs {
			if cfg.only == nil || cfg.only.MatchString(r.Name) || len(b.names) > 1 {
				p.print(r)
			}
		}
		if err != nil {
			failed++
			log.Printf("FAILED %s after %v: %v", strings.Join(b.names, ","), time.Since(t0).Round(time.Millisecond), err)
			return
		}
		log.Printf("done %s in %v", strings.Join(b.names, ","), time.Since(t0).Round(time.Millisecond))
	}
	for _, b := range selected {
		if b.beforeInit {
			runOne(b)
		}
	}

	if cfg.workerProfDir != "" {
		if err := os.MkdirAll(cfg.workerProfDir, 0o755); err != nil {
			log.Printf("-worker-cpuprofile: %v", err)
			return 1
		}
		os.Setenv(envWorkerProfileDir, cfg.workerProfDir)
	}
	if cfg.workerProcs > 0 {
		// Workers inherit the driver's environment; this process's own
		// GOMAXPROCS is already fixed.
		os.Setenv("GOMAXPROCS", fmt.Sprint(cfg.workerProcs))
		log.Printf("workers start with GOMAXPROCS=%d", cfg.workerProcs)
	}
	needCluster := false
	for _, b := range selected {
		needCluster = needCluster || !b.beforeInit
	}
	if needCluster {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		t0 := time.Now()
		// "custom" is for the placement group benchmark, as Ray's.
		err := sdk.Init(ctx, sdk.NodeCPUs(float64(runtime.NumCPU())), sdk.NodeResources(map[string]float64{"custom": pgCustom}), sdk.ObjectStoreMemory(cfg.storeMemory),
			sdk.SessionDir(filepath.Join(cfg.sessions, "main")), sdk.LogToDriver(true), sdk.LogWriter(os.Stderr))
		cancel()
		if err != nil {
			log.Printf("sdk.Init: %v", err)
			return 1
		}
		log.Printf("embedded cluster up in %v (%d CPUs, store %d MB)", time.Since(t0).Round(time.Millisecond), runtime.NumCPU(), cfg.storeMemory>>20)
		if cfg.cpuProfile != "" {
			f, err := os.Create(cfg.cpuProfile)
			if err != nil {
				log.Printf("-cpuprofile: %v", err)
				sdk.Shutdown()
				return 1
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				log.Printf("-cpuprofile: %v", err)
				sdk.Shutdown()
				return 1
			}
			defer func() {
				pprof.StopCPUProfile()
				f.Close()
				log.Printf("driver CPU profile written to %s", cfg.cpuProfile)
			}()
		}
		for _, b := range selected {
			if !b.beforeInit {
				runtime.GC()
				runOne(b)
			}
		}
		sdk.Shutdown()
	}
	if failed > 0 || cfg.keepSessions {
		log.Printf("session directories (worker logs) kept in %s", cfg.sessions)
	} else {
		_ = os.RemoveAll(cfg.sessions)
	}
	log.Printf("total %v, %d benchmark(s) failed", time.Since(start).Round(time.Millisecond), failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// startWorkerProfile profiles a worker process when the driver asked for
// it. Workers end with os.Exit or SIGKILL, never through a deferred stop,
// so the profile is written in chunks: each chunk's file is complete once
// the next one starts.
func startWorkerProfile() {
	dir := os.Getenv(envWorkerProfileDir)
	if dir == "" || !sdk.IsWorker() {
		return
	}
	chunk := 2 * time.Second
	if d, err := time.ParseDuration(os.Getenv(envWorkerProfileChunk)); err == nil && d > 0 {
		chunk = d
	}
	go func() {
		for i := 0; ; i++ {
			f, err := os.Create(fmt.Sprintf("%s/worker-%d-%03d.prof", dir, os.Getpid(), i))
			if err != nil {
				return
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return
			}
			time.Sleep(chunk)
			pprof.StopCPUProfile()
			f.Close()
		}
	}()
}
