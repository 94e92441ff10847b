package gcs

import (
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goray/goray/protos"
)

// The GCS's Prometheus metrics, served by the head's metrics endpoint
// (raylet.Config.ExtraCollectors): the cluster's actors, placement
// groups, jobs and nodes by state (Ray's ray_actors{State} and the like),
// read from the managers at each scrape, and the GCS's requests by
// subject: how many, how long, how many failed.

var (
	descActors = prometheus.NewDesc("goray_actors", "Actors of the cluster by state (Ray's ray_actors).", []string{"state"}, nil)
	descPGs    = prometheus.NewDesc("goray_placement_groups", "Live placement groups by state.", []string{"state"}, nil)
	descJobs   = prometheus.NewDesc("goray_jobs", "Jobs by state (RUNNING or FINISHED).", []string{"state"}, nil)
	descNodes  = prometheus.NewDesc("goray_nodes", "Nodes by state (ALIVE or DEAD).", []string{"state"}, nil)
	descTasks  = prometheus.NewDesc("goray_tasks", "Task attempts of the running jobs by state, from their task events (Ray's ray_tasks).", []string{"state", "job_id"}, nil)

	// The embedded NATS server's health (absent with an external NATS).
	descNATSConns     = prometheus.NewDesc("goray_nats_connections", "Clients connected to the embedded NATS server.", nil, nil)
	descNATSMsgs      = prometheus.NewDesc("goray_nats_messages_total", "Messages the embedded NATS server received (in) and sent (out).", []string{"direction"}, nil)
	descNATSBytes     = prometheus.NewDesc("goray_nats_bytes_total", "Bytes the embedded NATS server received (in) and sent (out).", []string{"direction"}, nil)
	descNATSSlow      = prometheus.NewDesc("goray_nats_slow_consumers_total", "Clients the embedded NATS server found too slow and disconnected.", nil, nil)
	descJSStorage     = prometheus.NewDesc("goray_jetstream_storage_bytes", "Bytes JetStream stores on disk (buckets, streams).", nil, nil)
	descJSMemory      = prometheus.NewDesc("goray_jetstream_memory_bytes", "Bytes JetStream holds in memory-backed streams.", nil, nil)
	descJSStreams     = prometheus.NewDesc("goray_jetstream_streams", "JetStream streams (each KV bucket is one).", nil, nil)
	descJSAPIErrors   = prometheus.NewDesc("goray_jetstream_api_errors_total", "JetStream API requests answered with an error.", nil, nil)
	descJSAPIRequests = prometheus.NewDesc("goray_jetstream_api_requests_total", "JetStream API requests.", nil, nil)
)

// taskMetricJobs bounds the running jobs whose tasks a scrape counts (the
// newest): the task manager keeps that many jobs' folds in memory.
const taskMetricJobs = taskTablesCached

// requestMetrics count the GCS's requests by subject.
type requestMetrics struct {
	requests *prometheus.CounterVec
	failures *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

func newRequestMetrics() *requestMetrics {
	return &requestMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goray_gcs_requests_total", Help: "Requests the GCS answered, by subject."}, []string{"subject"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goray_gcs_request_errors_total", Help: "Requests the GCS answered with an error, by subject and error code."}, []string{"subject", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "goray_gcs_request_seconds", Help: "Time the GCS took to answer a request, by subject.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5}}, []string{"subject"}),
	}
}

// observe records one answered request.
func (m *requestMetrics) observe(subject string, took time.Duration, e *protos.GcsError) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(subject).Inc()
	m.seconds.WithLabelValues(subject).Observe(took.Seconds())
	if e != nil {
		m.failures.WithLabelValues(subject, e.GetCode()).Inc()
	}
}

// gcsCollector is the Server's collector.
type gcsCollector struct {
	s    *Server
	once sync.Once
}

// Collector returns the GCS's metrics, for the head's metrics endpoint.
func (s *Server) Collector() prometheus.Collector { return &gcsCollector{s: s} }

func (c *gcsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActors, descPGs, descJobs, descNodes, descTasks, descNATSConns, descNATSMsgs, descNATSBytes,
		descNATSSlow, descJSStorage, descJSMemory, descJSStreams, descJSAPIErrors, descJSAPIRequests} {
		ch <- d
	}
	c.s.metrics.requests.Describe(ch)
	c.s.metrics.failures.Describe(ch)
	c.s.metrics.seconds.Describe(ch)
}

func (c *gcsCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.metrics.requests.Collect(ch)
	c.s.metrics.failures.Collect(ch)
	c.s.metrics.seconds.Collect(ch)
	s := c.s
	if s.system == nil || s.managers.actors == nil {
		return
	}
	counts := func(desc *prometheus.Desc, by map[string]int, states ...string) {
		for _, st := range states {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(by[st]), st)
		}
	}
	if rep, err := ask[*protos.ListActorsReply](s, s.managers.actors, &protos.ListActorsRequest{}); err == nil {
		by := map[string]int{}
		for _, a := range rep.GetActors() {
			by[a.GetState().String()]++
		}
		counts(descActors, by, "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD")
	}
	if rep, err := ask[*protos.ListPlacementGroupsReply](s, s.managers.pgs, &protos.ListPlacementGroupsRequest{}); err == nil {
		by := map[string]int{}
		for _, g := range rep.GetGroups() {
			by[strings.TrimPrefix(g.GetState().String(), "PG_")]++
		}
		counts(descPGs, by, "PENDING", "CREATED", "RESCHEDULING")
	}
	if rep, err := ask[*protos.ListJobsReply](s, s.managers.jobs, &protos.ListJobsRequest{}); err == nil {
		by := map[string]int{}
		var running []*protos.JobInfo
		for _, j := range rep.GetJobs() {
			if j.GetFinished() {
				by["FINISHED"]++
			} else {
				by["RUNNING"]++
				running = append(running, j)
			}
		}
		counts(descJobs, by, "RUNNING", "FINISHED")
		s.collectTasks(ch, running)
	}
	s.collectNATS(ch)
	if rep, err := ask[*protos.ListNodesReply](s, s.managers.nodes, &protos.ListNodesRequest{}); err == nil {
		by := map[string]int{}
		for _, n := range rep.GetNodes() {
			by[strings.TrimPrefix(n.GetState().String(), "STATE_")]++
		}
		counts(descNodes, by, "ALIVE", "DEAD")
	}
}

// collectTasks counts the task attempts of the newest running jobs by
// state, from the task manager's folds.
func (s *Server) collectTasks(ch chan<- prometheus.Metric, running []*protos.JobInfo) {
	if s.managers.tasks == nil {
		return
	}
	if len(running) > taskMetricJobs {
		running = running[len(running)-taskMetricJobs:] // oldest first
	}
	for _, j := range running {
		rep, err := ask[*protos.SummarizeTasksReply](s, s.managers.tasks, &protos.SummarizeTasksRequest{JobId: j.GetJobId()})
		if err != nil || rep.GetError() != nil {
			continue
		}
		by := map[string]uint64{}
		for _, sum := range rep.GetSummaries() {
			for st, n := range sum.GetStates() {
				by[st] += n
			}
		}
		job := protos.MustUniqueID(j.GetJobId()).Short()
		for _, st := range []protos.TaskState{protos.TaskState_PENDING_ARGS, protos.TaskState_SUBMITTED, protos.TaskState_RUNNING, protos.TaskState_FINISHED, protos.TaskState_FAILED} {
			ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(by[st.String()]), st.String(), job)
		}
	}
}

// collectNATS reports the embedded NATS server's and JetStream's figures.
func (s *Server) collectNATS(ch chan<- prometheus.Metric) {
	if s.nats == nil {
		return
	}
	v, err := s.nats.Server().Varz(nil)
	if err != nil {
		return
	}
	gauge := func(d *prometheus.Desc, x float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, x, labels...)
	}
	counter := func(d *prometheus.Desc, x float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, x, labels...)
	}
	gauge(descNATSConns, float64(v.Connections))
	counter(descNATSMsgs, float64(v.InMsgs), "in")
	counter(descNATSMsgs, float64(v.OutMsgs), "out")
	counter(descNATSBytes, float64(v.InBytes), "in")
	counter(descNATSBytes, float64(v.OutBytes), "out")
	counter(descNATSSlow, float64(v.SlowConsumers))
	if js := v.JetStream.Stats; js != nil {
		gauge(descJSStorage, float64(js.Store))
		gauge(descJSMemory, float64(js.Memory))
		counter(descJSAPIErrors, float64(js.API.Errors))
		counter(descJSAPIRequests, float64(js.API.Total))
	}
	if jz, err := s.nats.Server().Jsz(&server.JSzOptions{}); err == nil {
		gauge(descJSStreams, float64(jz.Streams))
	}
}
