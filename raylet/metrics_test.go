package raylet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
)

func startMetricsRaylet(t *testing.T, cpus float64, addr string) *Raylet {
	t.Helper()
	r, err := New(Config{
		Credentials:       testCreds,
		SessionDir:        t.TempDir(),
		Resources:         res(t, map[string]float64{CPU: cpus}),
		ObjectStoreMemory: 16 << 20,
		MaxWorkers:        4,
		Logger:            zerolog.Nop(),
		ReportInterval:    time.Hour,
		MetricsAddr:       addr,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Shutdown)
	return r
}

// scrape fetches r's metrics and returns the samples by series
// (name{labels} as exposed) and the TYPE of each metric family.
func scrape(t *testing.T, r *Raylet) (samples map[string]float64, types map[string]string) {
	t.Helper()
	if r.MetricsAddr() == "" {
		t.Fatal("no metrics endpoint")
	}
	resp, err := http.Get("http://" + r.MetricsAddr() + MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want the text format", ct)
	}
	samples, types = map[string]float64{}, map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples, types
}

func TestMetricsEndpoint(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := startMetricsRaylet(t, 2, "127.0.0.1:0")
	if _, port, err := net.SplitHostPort(r.MetricsAddr()); err != nil || port == "0" {
		t.Fatalf("MetricsAddr() = %q, want the bound host:port", r.MetricsAddr())
	}
	node := r.NodeID().Short()
	series := func(name string, labels ...string) string {
		s := name + `{node_id="` + node + `"`
		for i := 0; i+1 < len(labels); i += 2 {
			s += fmt.Sprintf(",%s=%q", labels[i], labels[i+1])
		}
		return s + "}"
	}
	expect := func(samples map[string]float64, name string, want float64, labels ...string) {
		t.Helper()
		k := series(name, labels...)
		got, ok := samples[k]
		if !ok {
			t.Fatalf("no sample %s", k)
		}
		if got != want {
			t.Fatalf("%s = %v, want %v", k, got, want)
		}
	}

	// An empty node.
	samples, types := scrape(t, r)
	capacity := float64(r.Store().Stats().Capacity)
	if capacity == 0 {
		t.Fatal("store capacity 0")
	}
	expect(samples, "goray_object_store_capacity_bytes", capacity)
	expect(samples, "goray_object_store_objects", 0)
	expect(samples, "goray_object_store_used_bytes", 0)
	expect(samples, "goray_node_resource_capacity", 2, "resource", CPU)
	expect(samples, "goray_node_resource_available", 2, "resource", CPU)
	expect(samples, "goray_node_workers", 0)
	expect(samples, "goray_node_pending_lease_requests", 0)
	expect(samples, "goray_node_infeasible_lease_requests", 0)
	expect(samples, "goray_node_memory_monitor_kills_total", 0)
	expect(samples, "goray_node_kernel_oom_kills_total", 0)
	for name, typ := range map[string]string{
		"goray_object_store_capacity_bytes":         "gauge",
		"goray_object_store_used_bytes":             "gauge",
		"goray_object_store_pinned_bytes":           "gauge",
		"goray_object_store_largest_free_bytes":     "gauge",
		"goray_object_store_objects":                "gauge",
		"goray_object_store_pinned_objects":         "gauge",
		"goray_object_store_spill_file_objects":     "gauge",
		"goray_object_store_spill_file_bytes":       "gauge",
		"goray_object_store_spill_files":            "gauge",
		"goray_object_store_spilled_bytes_total":    "counter",
		"goray_object_store_spilled_objects_total":  "counter",
		"goray_object_store_restored_bytes_total":   "counter",
		"goray_object_store_restored_objects_total": "counter",
		"goray_object_store_spill_seconds_total":    "counter",
		"goray_object_store_restore_seconds_total":  "counter",
		"goray_node_resource_capacity":              "gauge",
		"goray_node_resource_available":             "gauge",
		"goray_node_workers":                        "gauge",
		"goray_node_pending_lease_requests":         "gauge",
		"goray_node_infeasible_lease_requests":      "gauge",
		"goray_node_memory_used_bytes":              "gauge",
		"goray_node_memory_limit_bytes":             "gauge",
		"goray_node_memory_usage_threshold":         "gauge",
		"goray_node_memory_monitor_kills_total":     "counter",
		"goray_node_kernel_oom_kills_total":         "counter",
		"go_goroutines":                             "gauge",
		"process_open_fds":                          "gauge",
	} {
		if types[name] != typ {
			t.Errorf("TYPE of %s = %q, want %s", name, types[name], typ)
		}
	}
	// No two of goray's families share a name: a counter's family is its
	// name less _total (OpenMetrics), which no gauge may be named. (Go's
	// own collector has such a pair, go_memstats_alloc_bytes.)
	for name, typ := range types {
		if stem, ok := strings.CutSuffix(name, "_total"); ok && typ == "counter" && strings.HasPrefix(name, "goray_") {
			if other, clash := types[stem]; clash {
				t.Errorf("counter %s and %s %s share the family %s", name, other, stem, stem)
			}
		}
	}
	// Go's collectors carry the node label too.
	if _, ok := samples[series("go_goroutines")]; !ok {
		t.Errorf("no sample %s", series("go_goroutines"))
	}

	// An object, a leased worker, a waiting and an infeasible request.
	data := make([]byte, 100_000)
	if err := r.Store().Put(protos.ObjectIDFor(protos.NewUniqueID(), 1), data); err != nil {
		t.Fatal(err)
	}
	driver := dialRaylet(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	job := protos.NewUniqueID()
	if err := driver.Call(ctx, protos.Method_REGISTER_CLIENT, &protos.RegisterClientRequest{JobId: job.Bytes(), Executable: exe, BinaryDigest: exeDigest(t, exe)}, &protos.RegisterClientReply{}); err != nil {
		t.Fatal(err)
	}
	lease := func(amounts map[string]float64) error {
		return driver.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{
			JobId: job.Bytes(), Resources: &protos.Resources{Amounts: amounts},
		}, &protos.RequestWorkerLeaseReply{})
	}
	if err := lease(map[string]float64{CPU: 1}); err != nil {
		t.Fatal(err)
	}
	waiting, waitCancel := context.WithCancel(ctx)
	defer waitCancel()
	for _, amounts := range []map[string]float64{{CPU: 2}, {"TPU": 1}} {
		go func() {
			_ = driver.Call(waiting, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{
				JobId: job.Bytes(), Resources: &protos.Resources{Amounts: amounts},
			}, &protos.RequestWorkerLeaseReply{})
		}()
	}
	waitFor(t, "both lease requests to queue", func() bool {
		info := r.NodeInfo()
		return len(info.GetPending()) == 1 && len(info.GetInfeasible()) == 1
	})

	samples, _ = scrape(t, r)
	st := r.Store().Stats()
	expect(samples, "goray_object_store_objects", 1)
	expect(samples, "goray_object_store_capacity_bytes", capacity)
	if st.Used < uint64(len(data)) {
		t.Fatalf("store used %d bytes after a %d-byte put", st.Used, len(data))
	}
	expect(samples, "goray_object_store_used_bytes", float64(st.Used))
	expect(samples, "goray_object_store_largest_free_bytes", float64(st.LargestFree))
	expect(samples, "goray_object_store_spilled_bytes_total", 0)
	expect(samples, "goray_node_resource_capacity", 2, "resource", CPU)
	expect(samples, "goray_node_resource_available", 1, "resource", CPU)
	expect(samples, "goray_node_pending_lease_requests", 1)
	expect(samples, "goray_node_infeasible_lease_requests", 1)
	if w := samples[series("goray_node_workers")]; w < 1 {
		t.Fatalf("goray_node_workers = %v with a leased worker", w)
	}
}

func TestMetricsDisabled(t *testing.T) {
	r := startMetricsRaylet(t, 1, "")
	if got := r.MetricsAddr(); got != "" {
		t.Fatalf("MetricsAddr() = %q with Config.MetricsAddr empty", got)
	}
}

// Each raylet has its own registry: two in one process both serve, each
// its own node's metrics; Shutdown closes the endpoint.
func TestMetricsTwoRayletsAndShutdown(t *testing.T) {
	a := startMetricsRaylet(t, 1, "127.0.0.1:0")
	b := startMetricsRaylet(t, 3, "127.0.0.1:0")
	if err := a.Store().Put(protos.ObjectIDFor(protos.NewUniqueID(), 1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		r         *Raylet
		cpus, obj float64
	}{{a, 1, 1}, {b, 3, 0}} {
		samples, _ := scrape(t, c.r)
		node := c.r.NodeID().Short()
		if got := samples[`goray_node_resource_capacity{node_id="`+node+`",resource="CPU"}`]; got != c.cpus {
			t.Errorf("node %s: CPU capacity %v, want %v", node, got, c.cpus)
		}
		if got, ok := samples[`goray_object_store_objects{node_id="`+node+`"}`]; !ok || got != c.obj {
			t.Errorf("node %s: objects %v (present %v), want %v", node, got, ok, c.obj)
		}
		for k := range samples {
			if strings.Contains(k, "node_id=") && !strings.Contains(k, `node_id="`+node+`"`) {
				t.Errorf("node %s exposes %s", node, k)
			}
		}
	}

	addr := a.MetricsAddr()
	a.Shutdown()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("metrics endpoint %s still accepts connections after Shutdown", addr)
	}
}

// A metrics address that cannot be listened on fails Start, which leaves
// no shm segment behind.
func TestMetricsAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r, err := New(Config{
		Credentials:       testCreds,
		SessionDir:        t.TempDir(),
		ObjectStoreMemory: 16 << 20,
		Logger:            zerolog.Nop(),
		ReportInterval:    time.Hour,
		MetricsAddr:       ln.Addr().String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Start()
	if err == nil {
		r.Shutdown()
		t.Fatal("Start succeeded with the metrics port taken")
	}
	if !strings.Contains(err.Error(), "metrics") {
		t.Errorf("error %q does not mention metrics", err)
	}
	path := StorePath(objstore.DefaultShmDir, r.NodeID())
	if _, serr := os.Stat(path); !os.IsNotExist(serr) {
		t.Errorf("shm segment %s left after a failed Start: %v", path, serr)
	}
	r.Shutdown()
}
