package dashboard

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/state"
)

// Topics: what a page shows, read from the cluster by one function each,
// served at /api/<topic> and streamed at /api/stream?topics=....
const (
	topicOverview = "overview"
	topicNodes    = "nodes"
	topicJobs     = "jobs"
	topicActors   = "actors"
	topicPGs      = "placement-groups"
	topicObjects  = "objects"
	topicWorkers  = "workers"
	// topicHistory streams each new sample of the charts' history.
	topicHistory = "history"
	// topicTasksPrefix + a job id prefix ("" for the newest job) streams
	// that job's task summary.
	topicTasksPrefix = "tasks:"
)

// knownTopic reports whether name is a topic a stream may ask for.
func knownTopic(name string) bool {
	switch name {
	case topicOverview, topicNodes, topicJobs, topicActors, topicPGs, topicObjects, topicWorkers, topicHistory:
		return true
	}
	rest, ok := strings.CutPrefix(name, topicTasksPrefix)
	return ok && len(rest) <= 2*protos.UniqueIDSize && isHex(rest)
}

func isHex(s string) bool {
	return strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}

// topic reads one topic's current value.
func (s *Server) topic(ctx context.Context, name string) (any, error) {
	src := s.opts.State
	switch name {
	case topicOverview:
		return s.overview(ctx)
	case topicNodes:
		return stateapi.Nodes(ctx, src)
	case topicJobs:
		return s.jobsView(ctx)
	case topicActors:
		return stateapi.Actors(ctx, src)
	case topicPGs:
		return stateapi.PlacementGroups(ctx, src)
	case topicObjects:
		return stateapi.Objects(ctx, src)
	case topicWorkers:
		return stateapi.Workers(ctx, src)
	case topicHistory:
		return s.history.last(), nil
	}
	if job, ok := strings.CutPrefix(name, topicTasksPrefix); ok {
		j, err := s.jobOf(ctx, job)
		if err != nil {
			return nil, err
		}
		jid, err := protos.UniqueIDFromHex(j.JobID)
		if err != nil {
			return nil, err
		}
		sums, _, err := stateapi.TaskSummaries(ctx, src, jid)
		if sums == nil {
			sums = []state.TaskSummary{}
		}
		return TaskSummaryView{Job: j, Summaries: sums}, err
	}
	return nil, fmt.Errorf("%w: no topic %q", errBadRequest, name)
}

// Overview is /api/overview: the cluster at a glance.
type Overview struct {
	Nodes struct {
		Alive int `json:"alive"`
		Dead  int `json:"dead"`
	} `json:"nodes"`
	// Resources sums the alive nodes' resources.
	Resources   map[string]ResourceUse `json:"resources"`
	ObjectStore StoreUse               `json:"object_store"`
	// Pending are resource demands waiting for a worker; Infeasible those
	// no node can ever grant.
	Pending    []Demand       `json:"pending"`
	Infeasible []Demand       `json:"infeasible"`
	Jobs       map[string]int `json:"jobs"`
	Actors     map[string]int `json:"actors"`
	// Failures are the latest failures: failed tasks of the newest
	// running jobs, actors that died of something other than a kill, and
	// failed submissions.
	Failures []Failure `json:"failures"`
}

// ResourceUse is a resource's total and the part in use.
type ResourceUse struct {
	Total float64 `json:"total"`
	Used  float64 `json:"used"`
}

// StoreUse sums the alive nodes' object stores.
type StoreUse struct {
	Used         uint64 `json:"used_bytes"`
	Capacity     uint64 `json:"capacity_bytes"`
	Objects      uint64 `json:"objects"`
	SpilledBytes uint64 `json:"spilled_bytes"`
	SpillFiles   uint64 `json:"spill_files"`
	// SpilledTotal and RestoredTotal count bytes since the nodes started.
	SpilledTotal  uint64 `json:"spilled_bytes_total"`
	RestoredTotal uint64 `json:"restored_bytes_total"`
}

// Demand is a resource shape some requests wait for.
type Demand struct {
	Node   string             `json:"node_id"`
	Shape  map[string]float64 `json:"shape"`
	Count  int                `json:"count"`
	Labels string             `json:"labels,omitempty"`
}

// Failure is one recent failure.
type Failure struct {
	Kind    string    `json:"kind"` // task, actor or job
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Message string    `json:"message"`
	Time    time.Time `json:"time,omitzero"`
}

// Overview bounds: failed tasks are looked for in the newest running
// jobs, a few each; the list keeps the latest.
const (
	overviewJobs        = 3
	overviewJobFailures = 5
	overviewFailures    = 20
)

func (s *Server) overview(ctx context.Context) (Overview, error) {
	o := Overview{Resources: map[string]ResourceUse{}, Pending: []Demand{}, Infeasible: []Demand{},
		Jobs: map[string]int{}, Actors: map[string]int{}, Failures: []Failure{}}
	nodes, err := s.opts.State.GCS.ListNodes(ctx)
	if err != nil {
		return o, err
	}
	for _, n := range nodes {
		if n.GetState() != protos.NodeInfo_ALIVE {
			o.Nodes.Dead++
			continue
		}
		o.Nodes.Alive++
		avail := n.GetAvailable().GetAmounts()
		for r, total := range n.GetTotal().GetAmounts() {
			u := o.Resources[r]
			u.Total += total
			u.Used += total - avail[r]
			o.Resources[r] = u
		}
		st := n.GetStoreStats()
		o.ObjectStore.Used += n.GetStoreUsed()
		o.ObjectStore.Capacity += n.GetStoreCapacity()
		o.ObjectStore.Objects += uint64(n.GetStoreObjects())
		o.ObjectStore.SpilledBytes += st.GetSpilledBytes()
		o.ObjectStore.SpillFiles += st.GetSpillFiles()
		o.ObjectStore.SpilledTotal += st.GetSpilledBytesTotal()
		o.ObjectStore.RestoredTotal += st.GetRestoredBytesTotal()
		node := protos.MustUniqueID(n.GetNodeId()).String()
		for _, d := range n.GetPending() {
			o.Pending = append(o.Pending, demand(node, d))
		}
		for _, d := range n.GetInfeasible() {
			o.Infeasible = append(o.Infeasible, demand(node, d))
		}
	}
	jobs, err := stateapi.Jobs(ctx, s.opts.State)
	if err != nil {
		return o, err
	}
	var running []state.Job
	for _, j := range jobs {
		o.Jobs[j.Status]++
		if j.Status == "RUNNING" {
			running = append(running, j)
		}
	}
	actors, err := stateapi.Actors(ctx, s.opts.State)
	if err != nil {
		return o, err
	}
	for _, a := range actors {
		o.Actors[a.State]++
		if a.State == "DEAD" && a.DeathCause != "" && !strings.HasPrefix(a.DeathCause, "killed by") && a.DeathCause != "its job finished" {
			o.Failures = append(o.Failures, Failure{Kind: "actor", ID: a.ActorID, Name: a.ClassName, Message: a.DeathCause, Time: a.EndTime})
		}
	}
	for _, j := range running[max(len(running)-overviewJobs, 0):] {
		ts, err := stateapi.Tasks(ctx, s.opts.State, []state.Filter{{Field: "job_id", Value: j.JobID}, {Field: "state", Value: "FAILED"}}, overviewJobFailures)
		if err != nil {
			continue
		}
		for _, t := range ts.Tasks {
			o.Failures = append(o.Failures, Failure{Kind: "task", ID: t.TaskID, Name: t.Function, Message: t.ErrorType + ": " + t.ErrorMessage, Time: t.EndTime})
		}
	}
	if s.opts.Jobs != nil {
		if subs, err := s.opts.Jobs.List(ctx); err == nil {
			for _, j := range subs {
				if j.Status == "FAILED" {
					o.Failures = append(o.Failures, Failure{Kind: "job", ID: j.SubmissionID, Name: strings.Join(j.Entrypoint, " "), Message: j.Message, Time: j.EndTime})
				}
			}
		}
	}
	slices.SortStableFunc(o.Failures, func(a, b Failure) int { return b.Time.Compare(a.Time) })
	o.Failures = o.Failures[:min(len(o.Failures), overviewFailures)]
	return o, nil
}

func demand(node string, d *protos.ResourceDemand) Demand {
	out := Demand{Node: node, Shape: maps.Clone(d.GetShape().GetAmounts()), Count: int(d.GetCount())}
	if out.Shape == nil {
		out.Shape = map[string]float64{}
	}
	if sel := d.GetLabels(); len(sel) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(sel)) {
			parts = append(parts, k+" in ("+strings.Join(sel[k].GetValues(), ", ")+")")
		}
		out.Labels = strings.Join(parts, ", ")
	}
	return out
}
