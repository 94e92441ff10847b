package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/jobs"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/state"
)

// apiTimeout bounds what one API request asks of the cluster.
const apiTimeout = 10 * time.Second

func (s *Server) apiRoutes(mux *http.ServeMux) {
	get := func(pattern string, f func(context.Context, *http.Request) (any, error)) {
		mux.HandleFunc("GET "+pattern, s.authed(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
			defer cancel()
			v, err := f(ctx, r)
			if err != nil {
				writeError(w, statusOf(err), err.Error())
				return
			}
			writeJSON(w, http.StatusOK, v)
		}))
	}
	topic := func(name string) func(context.Context, *http.Request) (any, error) {
		return func(ctx context.Context, _ *http.Request) (any, error) { return s.topic(ctx, name) }
	}
	for _, name := range []string{topicOverview, topicNodes, topicJobs, topicActors, topicPGs, topicObjects, topicWorkers} {
		get("/api/"+name, topic(name))
	}
	get("/api/history", func(context.Context, *http.Request) (any, error) { return s.history.all(), nil })
	get("/api/jobs/{id}", s.apiJob)
	get("/api/actors/{id}", s.apiActor)
	get("/api/tasks", s.apiTasks)
	get("/api/tasks/summary", s.apiTaskSummary)
	get("/api/tasks/stream", s.apiTaskStream)
	get("/api/tasks/{id}", s.apiTask)
	mux.HandleFunc("GET /api/jobs/{id}/logs", s.authed(s.apiJobLogs))
	mux.HandleFunc("POST /api/jobs/{id}/stop", s.authed(s.apiJobStop))
	mux.HandleFunc("POST /api/actors/{id}/kill", s.authed(s.apiActorKill))
	get("/api/actors/{id}/logs", s.apiActorLogs)
	mux.HandleFunc("GET /api/stream", s.authed(s.apiStream))
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, stateapi.ErrNoMatch), errors.Is(err, stateapi.ErrNoWorker), errors.Is(err, gcs.ErrNotFound), errors.Is(err, jobs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, stateapi.ErrAmbiguous), errors.Is(err, errBadRequest), errors.Is(err, gcs.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, gcs.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

var errBadRequest = errors.New("bad request")

// JobsView is /api/jobs: the drivers the GCS knows (every job) and the
// job server's submissions.
type JobsView struct {
	Drivers     []state.Job `json:"drivers"`
	Submissions []jobs.Job  `json:"submissions"`
}

func (s *Server) jobsView(ctx context.Context) (JobsView, error) {
	v := JobsView{Drivers: []state.Job{}, Submissions: []jobs.Job{}}
	drivers, err := stateapi.Jobs(ctx, s.opts.State)
	if err != nil {
		return v, err
	}
	v.Drivers = drivers
	if s.opts.Jobs != nil {
		subs, err := s.opts.Jobs.List(ctx)
		if err != nil {
			return v, err
		}
		// Newest first, as a person reads a job list.
		slices.SortStableFunc(subs, func(a, b jobs.Job) int { return b.SubmitTime.Compare(a.SubmitTime) })
		v.Submissions = subs
	}
	return v, nil
}

// JobView is /api/jobs/{id}: a submission (by submission id) or a driver
// (by job id prefix), with the driver's task summary.
type JobView struct {
	Submission *jobs.Job           `json:"submission,omitempty"`
	Driver     *state.Job          `json:"driver,omitempty"`
	Tasks      []state.TaskSummary `json:"tasks,omitempty"`
}

func (s *Server) apiJob(ctx context.Context, r *http.Request) (any, error) {
	id := r.PathValue("id")
	var v JobView
	if s.opts.Jobs != nil {
		if j, err := s.opts.Jobs.Get(ctx, id); err == nil {
			v.Submission = j
			return v, nil
		} else if !errors.Is(err, jobs.ErrNotFound) {
			return nil, err
		}
	}
	j, err := stateapi.JobByPrefix(ctx, s.opts.State, id)
	if err != nil {
		return nil, err
	}
	v.Driver = &j
	if jid, err := protos.UniqueIDFromHex(j.JobID); err == nil {
		if sums, _, err := stateapi.TaskSummaries(ctx, s.opts.State, jid); err == nil {
			v.Tasks = sums
		}
	}
	return v, nil
}

func (s *Server) apiJobLogs(w http.ResponseWriter, r *http.Request) {
	if s.opts.Jobs == nil {
		writeError(w, http.StatusNotFound, "this head runs no job server")
		return
	}
	id := r.PathValue("id")
	if r.URL.Query().Get("follow") != "" {
		s.followJobLogs(w, r, id)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	out, err := s.opts.Jobs.Logs(ctx, id)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(out))
}

func (s *Server) apiJobStop(w http.ResponseWriter, r *http.Request) {
	if s.opts.Jobs == nil {
		writeError(w, http.StatusNotFound, "this head runs no job server")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	stopped, err := s.opts.Jobs.Stop(ctx, r.PathValue("id"))
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	s.opts.Logger.Info().Str("submission", r.PathValue("id")).Str("remote", r.RemoteAddr).Msg("job stopped from the dashboard")
	writeJSON(w, http.StatusOK, map[string]bool{"stopped": stopped})
}

// ActorView is /api/actors/{id}: the actor and its latest calls.
type ActorView struct {
	Actor state.Actor  `json:"actor"`
	Calls []state.Task `json:"calls"`
}

// actorCalls is how many of an actor's latest calls its page shows.
const actorCalls = 50

func (s *Server) apiActor(ctx context.Context, r *http.Request) (any, error) {
	actors, err := stateapi.Actors(ctx, s.opts.State)
	if err != nil {
		return nil, err
	}
	a, err := stateapi.ByIDPrefix(actors, r.PathValue("id"), func(a state.Actor) string { return a.ActorID })
	if err != nil {
		return nil, err
	}
	v := ActorView{Actor: a, Calls: []state.Task{}}
	ts, err := stateapi.Tasks(ctx, s.opts.State, []state.Filter{{Field: "job_id", Value: a.JobID}, {Field: "actor_id", Value: a.ActorID}}, actorCalls)
	if err == nil && ts.Tasks != nil {
		v.Calls = ts.Tasks
	}
	return v, nil
}

// ActorLogsView is /api/actors/{id}/logs: the last lines of the actor's
// worker's stdout and stderr.
type ActorLogsView struct {
	Worker state.Worker `json:"worker"`
	Stdout string       `json:"stdout"`
	Stderr string       `json:"stderr"`
}

// actorLogLines is how many lines of each file the actor's page shows.
const actorLogLines = 200

func (s *Server) apiActorLogs(ctx context.Context, r *http.Request) (any, error) {
	workers, err := stateapi.Workers(ctx, s.opts.State)
	if err != nil {
		return nil, err
	}
	w, _, err := stateapi.ActorWorker(ctx, s.opts.State, r.PathValue("id"), workers)
	if err != nil {
		return nil, err
	}
	v := ActorLogsView{Worker: w}
	if v.Stdout, err = stateapi.LogTail(ctx, s.opts.State, w, false, actorLogLines); err != nil {
		return nil, err
	}
	if v.Stderr, err = stateapi.LogTail(ctx, s.opts.State, w, true, actorLogLines); err != nil {
		return nil, err
	}
	return v, nil
}

func (s *Server) apiActorKill(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	actors, err := stateapi.Actors(ctx, s.opts.State)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	a, err := stateapi.ByIDPrefix(actors, r.PathValue("id"), func(a state.Actor) string { return a.ActorID })
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	id, err := protos.UniqueIDFromHex(a.ActorID)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	// Ray's kill: for good, unless the caller asks for a restart.
	noRestart := r.URL.Query().Get("restart") == ""
	if err := s.opts.State.GCS.KillActor(ctx, id, noRestart); err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	s.opts.Logger.Info().Str("actor", a.ActorID).Bool("no_restart", noRestart).Str("remote", r.RemoteAddr).Msg("actor killed from the dashboard")
	writeJSON(w, http.StatusOK, map[string]bool{"killed": true})
}

// maxTaskRows bounds a task listing the dashboard asks for.
const maxTaskRows = 1000

// TasksView is /api/tasks: the attempts that matched (newest first, at
// most limit) and how many did.
type TasksView struct {
	Tasks         []state.Task `json:"tasks"`
	Total         int          `json:"total"`
	DroppedEvents uint64       `json:"dropped_events"`
}

// apiTasks lists a job's task attempts: ?job=ID (prefix; default the
// newest job), &state=, &function=, &limit= (default 100).
func (s *Server) apiTasks(ctx context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	job, err := s.jobOf(ctx, q.Get("job"))
	if err != nil {
		return nil, err
	}
	limit := 100
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit <= 0 {
			return nil, errors.Join(errBadRequest, errors.New("limit: want a positive number"))
		}
	}
	filters := []state.Filter{{Field: "job_id", Value: job.JobID}}
	for _, f := range []string{"state", "function", "node_id", "worker_id", "actor_id"} {
		if v := q.Get(f); v != "" {
			filters = append(filters, state.Filter{Field: f, Value: v})
		}
	}
	ts, err := stateapi.Tasks(ctx, s.opts.State, filters, min(limit, maxTaskRows))
	if err != nil {
		return nil, err
	}
	if ts.Tasks == nil {
		ts.Tasks = []state.Task{}
	}
	return TasksView{Tasks: ts.Tasks, Total: ts.Total, DroppedEvents: ts.DroppedEvents}, nil
}

// maxStreamSpans bounds the spans one task stream answer holds.
const maxStreamSpans = 2000

// TaskStreamView is /api/tasks/stream: the newest task attempts of a job
// as spans on their workers, for the live task stream (Dask's): compact,
// since a page asks every second.
type TaskStreamView struct {
	Job string `json:"job_id"`
	// Now is the server's clock, in Unix milliseconds, so the page can
	// place running spans.
	Now int64 `json:"now"`
	// Workers are the lanes: "node prefix/pid"; Functions the names.
	Workers   []string `json:"workers"`
	Functions []string `json:"functions"`
	// Spans are [worker index, function index, start ms, end ms (0 while
	// running), failed (0 or 1)].
	Spans [][5]int64 `json:"spans"`
	Total int        `json:"total"`
}

// apiTaskStream answers a job's newest attempts that started (?job= as
// /api/tasks; &limit=, default and at most 2,000).
func (s *Server) apiTaskStream(ctx context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	job, err := s.jobOf(ctx, q.Get("job"))
	if err != nil {
		return nil, err
	}
	limit := maxStreamSpans
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit <= 0 {
			return nil, errors.Join(errBadRequest, errors.New("limit: want a positive number"))
		}
		limit = min(limit, maxStreamSpans)
	}
	ts, err := stateapi.Tasks(ctx, s.opts.State, []state.Filter{{Field: "job_id", Value: job.JobID}, {Field: "worker_id", Value: ""}}, limit)
	if err != nil {
		return nil, err
	}
	v := TaskStreamView{Job: job.JobID, Now: time.Now().UnixMilli(), Workers: []string{}, Functions: []string{}, Spans: [][5]int64{}, Total: ts.Total}
	workers, fns := map[string]int64{}, map[string]int64{}
	index := func(m map[string]int64, list *[]string, k string) int64 {
		i, ok := m[k]
		if !ok {
			i = int64(len(*list))
			m[k] = i
			*list = append(*list, k)
		}
		return i
	}
	for _, t := range ts.Tasks {
		if t.StartTime.IsZero() {
			continue
		}
		lane := fmt.Sprintf("%.8s/%d", t.NodeID, t.WorkerPID)
		var end, failed int64
		if !t.EndTime.IsZero() {
			end = t.EndTime.UnixMilli()
		}
		if t.State == "FAILED" {
			failed = 1
		}
		v.Spans = append(v.Spans, [5]int64{index(workers, &v.Workers, lane), index(fns, &v.Functions, t.Function), t.StartTime.UnixMilli(), end, failed})
	}
	return v, nil
}

// TaskSummaryView is /api/tasks/summary: a job's attempts by function and
// state.
type TaskSummaryView struct {
	Job       state.Job           `json:"job"`
	Summaries []state.TaskSummary `json:"summaries"`
}

func (s *Server) apiTaskSummary(ctx context.Context, r *http.Request) (any, error) {
	job, err := s.jobOf(ctx, r.URL.Query().Get("job"))
	if err != nil {
		return nil, err
	}
	jid, err := protos.UniqueIDFromHex(job.JobID)
	if err != nil {
		return nil, err
	}
	sums, _, err := stateapi.TaskSummaries(ctx, s.opts.State, jid)
	if err != nil {
		return nil, err
	}
	if sums == nil {
		sums = []state.TaskSummary{}
	}
	return TaskSummaryView{Job: job, Summaries: sums}, nil
}

// TaskView is /api/tasks/{id}: every attempt of a task, oldest first.
type TaskView struct {
	Attempts []state.Task `json:"attempts"`
}

// apiTask finds a task's attempts by id prefix (?job= narrows the search
// to one job; by default the running jobs and the newest finished ones).
func (s *Server) apiTask(ctx context.Context, r *http.Request) (any, error) {
	prefix := strings.ToLower(r.PathValue("id"))
	if len(prefix) < 4 {
		return nil, errors.Join(errBadRequest, errors.New("a task id prefix has at least 4 hex digits"))
	}
	var jobsToSearch []state.Job
	if j := r.URL.Query().Get("job"); j != "" {
		job, err := s.jobOf(ctx, j)
		if err != nil {
			return nil, err
		}
		jobsToSearch = []state.Job{job}
	} else {
		all, err := stateapi.Jobs(ctx, s.opts.State)
		if err != nil {
			return nil, err
		}
		slices.Reverse(all) // newest first
		jobsToSearch = all[:min(len(all), 8)]
	}
	for _, job := range jobsToSearch {
		ts, err := stateapi.Tasks(ctx, s.opts.State, []state.Filter{{Field: "job_id", Value: job.JobID}, {Field: "task_id", Value: prefix}}, 0)
		if err != nil {
			continue
		}
		var v TaskView
		for _, t := range ts.Tasks {
			if strings.HasPrefix(t.TaskID, prefix) {
				v.Attempts = append(v.Attempts, t)
			}
		}
		if len(v.Attempts) > 0 {
			if first := v.Attempts[0].TaskID; !slices.ContainsFunc(v.Attempts, func(t state.Task) bool { return t.TaskID != first }) {
				return v, nil
			}
			return nil, stateapi.ErrAmbiguous
		}
	}
	return nil, stateapi.ErrNoMatch
}

// jobOf finds a job by id prefix; "" is the newest job.
func (s *Server) jobOf(ctx context.Context, prefix string) (state.Job, error) {
	if prefix != "" {
		return stateapi.JobByPrefix(ctx, s.opts.State, prefix)
	}
	all, err := stateapi.Jobs(ctx, s.opts.State)
	if err != nil {
		return state.Job{}, err
	}
	if len(all) == 0 {
		return state.Job{}, stateapi.ErrNoMatch
	}
	return all[len(all)-1], nil
}
