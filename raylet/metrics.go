package raylet

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goray/goray/protos"
)

// MetricsPath is where the raylet's metrics endpoint serves the
// Prometheus text format.
const MetricsPath = "/metrics"

// metricsNodeInfoTimeout bounds how long a scrape waits for the raylet
// actor's snapshot of the node; on timeout the node metrics are left out
// of that scrape (the object store's are not).
const metricsNodeInfoTimeout = 2 * time.Second

// metricsServer is a raylet's Prometheus endpoint. Its registry is its
// own, not prometheus.DefaultRegisterer, so that several raylets in one
// process (tests, for one) do not clash.
type metricsServer struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// newMetricsRegistry builds the raylet's registry: its store and node
// collector and Go's runtime and process collectors, every metric
// labelled node_id.
func newMetricsRegistry(r *Raylet) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"node_id": r.cfg.NodeID.Short()}
	if r.cfg.SessionName != "" {
		labels["session_name"] = r.cfg.SessionName
	}
	wrapped := prometheus.WrapRegistererWith(labels, reg)
	for _, c := range append([]prometheus.Collector{
		newRayletCollector(r),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, r.cfg.ExtraCollectors...) {
		if err := wrapped.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// listenMetrics opens the metrics listener (Config.MetricsAddr); it
// serves only once serve is called.
func (r *Raylet) listenMetrics() (*metricsServer, error) {
	reg, err := newMetricsRegistry(r)
	if err != nil {
		return nil, fmt.Errorf("raylet: metrics registry: %w", err)
	}
	ln, err := net.Listen("tcp", r.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("raylet: metrics endpoint: %w", err)
	}
	var h http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	// Beyond loopback a scraper must show the cluster's metrics bearer
	// token; on loopback only this machine's users reach the endpoint.
	if tok, ok := r.cfg.Credentials.Token(); ok && !isLoopback(ln.Addr()) {
		h = requireBearer(tok.MetricsBearer(), h)
	}
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	if t := r.cfg.Credentials.TLS(); t != nil {
		// Mutual TLS: Prometheus scrapes with tls_config (cert_file,
		// key_file, ca_file), see docs/metrics.md.
		ln = tls.NewListener(ln, t.ServerConfig())
	}
	return &metricsServer{ln: ln, srv: srv, done: make(chan struct{})}, nil
}

// requireBearer serves only requests with "Authorization: Bearer token".
func requireBearer(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if subtle.ConstantTimeCompare([]byte(req.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="goray metrics"`)
			http.Error(w, "goray metrics: a bearer token is required (goray metrics-token prints it)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, req)
	})
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func (m *metricsServer) serve() {
	go func() {
		defer close(m.done)
		_ = m.srv.Serve(m.ln)
	}()
}

// close stops the endpoint, letting a scrape under way finish (briefly).
// It must be called at most once, after serve or instead of it.
func (m *metricsServer) close(served bool) {
	if !served {
		_ = m.ln.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricsNodeInfoTimeout+time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		_ = m.srv.Close()
	}
	<-m.done
}

// MetricsAddr returns the address (host:port) the metrics endpoint
// listens on, or "" if Config.MetricsAddr left it disabled. Scrape
// http://<MetricsAddr>/metrics.
func (r *Raylet) MetricsAddr() string {
	if r.metrics == nil {
		return ""
	}
	return r.metrics.ln.Addr().String()
}

// rayletCollector reads the store's and the node's state at each scrape:
// nothing is sampled in the background.
type rayletCollector struct {
	r *Raylet

	storeCapacity, storeUsed, storePinned, storeLargestFree *prometheus.Desc
	storeObjects, storePinnedObjects                        *prometheus.Desc
	storeSpilledObjects, storeSpilledBytes, storeSpillFiles *prometheus.Desc
	spilledBytesTotal, spilledObjectsTotal                  *prometheus.Desc
	restoredBytesTotal, restoredObjectsTotal                *prometheus.Desc
	spillSecondsTotal, restoreSecondsTotal                  *prometheus.Desc

	resourceCapacity, resourceAvailable *prometheus.Desc
	workers, pending, infeasible        *prometheus.Desc

	memoryUsed, memoryLimit, memoryThreshold *prometheus.Desc
	monitorKills, kernelOOMKills             *prometheus.Desc
	// Per worker process, from /proc.
	workerCPU, workerMemory *prometheus.Desc
}

func newRayletCollector(r *Raylet) *rayletCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &rayletCollector{
		r: r,

		storeCapacity:       d("goray_object_store_capacity_bytes", "Bytes of shared memory the object store manages."),
		storeUsed:           d("goray_object_store_used_bytes", "Bytes of the object store in allocated blocks (padding included)."),
		storePinned:         d("goray_object_store_pinned_bytes", "Bytes of the object store in blocks pinned by some process."),
		storeLargestFree:    d("goray_object_store_largest_free_bytes", "Size of the largest object that could be created now without spilling."),
		storeObjects:        d("goray_object_store_objects", "Objects in the object store: created, sealed or spilled."),
		storePinnedObjects:  d("goray_object_store_pinned_objects", "Objects in the object store pinned by some process."),
		storeSpilledObjects: d("goray_object_store_spill_file_objects", "Objects only in a spill file, not in memory."),
		storeSpilledBytes:   d("goray_object_store_spill_file_bytes", "Bytes of live object records in spill files."),
		storeSpillFiles:     d("goray_object_store_spill_files", "Spill files on disk."),
		spilledBytesTotal:   d("goray_object_store_spilled_bytes_total", "Bytes spilled to disk since the node started."),
		spilledObjectsTotal: d("goray_object_store_spilled_objects_total", "Objects spilled to disk since the node started."),
		restoredBytesTotal:  d("goray_object_store_restored_bytes_total", "Bytes restored from spill files since the node started."),
		restoredObjectsTotal: d("goray_object_store_restored_objects_total",
			"Objects restored from spill files since the node started."),
		spillSecondsTotal:   d("goray_object_store_spill_seconds_total", "Seconds spent writing spill files (checksums included) since the node started."),
		restoreSecondsTotal: d("goray_object_store_restore_seconds_total", "Seconds spent reading spill files (checksums included) since the node started."),

		resourceCapacity: d("goray_node_resource_capacity", "Total quantity of a resource on the node.", "resource"),
		resourceAvailable: d("goray_node_resource_available",
			"Quantity of a resource on the node not held by leases (negative when oversubscribed).", "resource"),
		workers:    d("goray_node_workers", "Worker processes of the node, starting or running."),
		pending:    d("goray_node_pending_lease_requests", "Worker lease requests queued on the node that it can grant in time (waiting for resources or a worker)."),
		infeasible: d("goray_node_infeasible_lease_requests", "Worker lease requests queued on the node that it can never grant: its total lacks the resources."),

		memoryUsed:      d("goray_node_memory_used_bytes", "Memory the node uses as the memory monitor counts it (its cgroup's usage less inactive file cache, or MemTotal - MemAvailable)."),
		memoryLimit:     d("goray_node_memory_limit_bytes", "Memory the node may use: its memory cgroup's limit, or the machine's memory."),
		memoryThreshold: d("goray_node_memory_usage_threshold", "Fraction of the node's memory above which the memory monitor kills a worker (0: the monitor is off)."),
		monitorKills:    d("goray_node_memory_monitor_kills_total", "Workers the memory monitor killed because the node ran low on memory, since the node started."),
		kernelOOMKills:  d("goray_node_kernel_oom_kills_total", "Workers of the node the kernel's OOM killer killed, since the node started."),

		workerCPU:    d("goray_worker_cpu_seconds_total", "CPU time (user and system) a worker process used.", "worker_id", "job_id", "pid"),
		workerMemory: d("goray_worker_memory_bytes", "Resident memory of a worker process.", "worker_id", "job_id", "pid"),
	}
}

// Describe implements prometheus.Collector.
func (c *rayletCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.storeCapacity, c.storeUsed, c.storePinned, c.storeLargestFree,
		c.storeObjects, c.storePinnedObjects,
		c.storeSpilledObjects, c.storeSpilledBytes, c.storeSpillFiles,
		c.spilledBytesTotal, c.spilledObjectsTotal,
		c.restoredBytesTotal, c.restoredObjectsTotal,
		c.spillSecondsTotal, c.restoreSecondsTotal,
		c.resourceCapacity, c.resourceAvailable,
		c.workers, c.pending, c.infeasible,
		c.memoryUsed, c.memoryLimit, c.memoryThreshold, c.monitorKills, c.kernelOOMKills,
		c.workerCPU, c.workerMemory,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *rayletCollector) Collect(ch chan<- prometheus.Metric) {
	select {
	case <-c.r.stopped:
		return // shutting down: the actor may be gone
	default:
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}

	st := c.r.store.Stats()
	gauge(c.storeCapacity, float64(st.Capacity))
	gauge(c.storeUsed, float64(st.Used))
	gauge(c.storePinned, float64(st.Pinned))
	gauge(c.storeLargestFree, float64(st.LargestFree))
	gauge(c.storeObjects, float64(st.NumObjects))
	gauge(c.storePinnedObjects, float64(st.NumPinned))
	gauge(c.storeSpilledObjects, float64(st.NumSpilled))
	gauge(c.storeSpilledBytes, float64(st.SpilledBytes))
	gauge(c.storeSpillFiles, float64(st.SpillFiles))
	counter(c.spilledBytesTotal, float64(st.SpilledBytesTotal))
	counter(c.spilledObjectsTotal, float64(st.SpilledObjectsTotal))
	counter(c.restoredBytesTotal, float64(st.RestoredBytesTotal))
	counter(c.restoredObjectsTotal, float64(st.RestoredObjectsTotal))
	counter(c.spillSecondsTotal, st.SpillTime.Seconds())
	counter(c.restoreSecondsTotal, st.RestoreTime.Seconds())

	if u, err := c.r.readMemory(c.r.mem); err == nil {
		gauge(c.memoryUsed, float64(u.Used))
		gauge(c.memoryLimit, float64(u.Total))
	}
	gauge(c.memoryThreshold, max(0, c.r.cfg.MemoryUsageThreshold))
	counter(c.monitorKills, float64(c.r.monitorKills.Load()))
	counter(c.kernelOOMKills, float64(c.r.kernelOOMKills.Load()))

	info, err := c.r.nodeInfo(metricsNodeInfoTimeout)
	if err != nil {
		c.r.cfg.Logger.Warn().Err(err).Msg("metrics: no node snapshot; node metrics left out of this scrape")
		return
	}
	total, avail := info.GetTotal().GetAmounts(), info.GetAvailable().GetAmounts()
	names := make([]string, 0, len(total))
	for name := range total {
		names = append(names, name)
	}
	for name := range avail {
		if _, ok := total[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		gauge(c.resourceCapacity, total[name], name)
		gauge(c.resourceAvailable, avail[name], name)
	}
	gauge(c.workers, float64(info.GetNumWorkers()))
	var pending, infeasible int64
	for _, d := range info.GetPending() {
		pending += int64(d.GetCount())
	}
	for _, d := range info.GetInfeasible() {
		infeasible += int64(d.GetCount())
	}
	gauge(c.pending, float64(pending))
	gauge(c.infeasible, float64(infeasible))

	res, err := c.r.system.Root.RequestFuture(c.r.pid, workersQuery{}, metricsNodeInfoTimeout).Result()
	rep, ok := res.(*protos.ListWorkersReply)
	if err != nil || !ok {
		return
	}
	for _, w := range rep.GetWorkers() {
		if w.GetPid() <= 0 {
			continue
		}
		st, err := readProcStats(int(w.GetPid()))
		if err != nil {
			continue // it exited meanwhile
		}
		labels := []string{protos.MustUniqueID(w.GetWorkerId()).Short(), protos.MustUniqueID(w.GetJobId()).Short(), strconv.Itoa(int(w.GetPid()))}
		ch <- prometheus.MustNewConstMetric(c.workerCPU, prometheus.CounterValue, st.cpuSeconds, labels...)
		ch <- prometheus.MustNewConstMetric(c.workerMemory, prometheus.GaugeValue, float64(st.rssBytes), labels...)
	}
}
