package gcs

import (
	"strings"
	"sync"
	"time"

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
)

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
	for _, d := range []*prometheus.Desc{descActors, descPGs, descJobs, descNodes} {
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
		for _, j := range rep.GetJobs() {
			if j.GetFinished() {
				by["FINISHED"]++
			} else {
				by["RUNNING"]++
			}
		}
		counts(descJobs, by, "RUNNING", "FINISHED")
	}
	if rep, err := ask[*protos.ListNodesReply](s, s.managers.nodes, &protos.ListNodesRequest{}); err == nil {
		by := map[string]int{}
		for _, n := range rep.GetNodes() {
			by[strings.TrimPrefix(n.GetState().String(), "STATE_")]++
		}
		counts(descNodes, by, "ALIVE", "DEAD")
	}
}
