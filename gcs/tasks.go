package gcs

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/taskevents"
	"github.com/goray/goray/protos"
)

// Defaults of the task manager's bounds (Options).
const (
	// DefaultTaskEventsMaxBytes bounds a job's task event stream: past it
	// the oldest batches are dropped (and counted by readers).
	DefaultTaskEventsMaxBytes = 64 << 20
	// DefaultTaskEventsJobs is how many jobs' streams are kept: when a job
	// registers past it, the streams of the oldest finished jobs go.
	DefaultTaskEventsJobs = 100
	// taskTablesCached is how many jobs' folded tables the manager keeps
	// in memory between requests; others are folded again from their
	// stream when asked for.
	taskTablesCached = 8
	// maxTaskReplyBytes keeps a listing under NATS's default max payload.
	maxTaskReplyBytes = 900 << 10
)

// taskOptions are the task manager's bounds.
type taskOptions struct {
	maxBytes int64
	jobs     int
	maxTasks int
}

// taskManager is the GCS's task manager, as Ray's GcsTaskManager: it
// creates each job's task event stream when the job registers, removes the
// streams of old jobs, and answers the state API's task requests by
// folding the streams (taskevents.Table). The producers publish straight
// into the streams, so the manager is off every task's path; it reads a
// stream only when asked, from where it last stopped.
type taskManager struct {
	env    *managerEnv
	opts   taskOptions
	tables map[protos.JobID]*jobTasks
}

// jobTasks is a job's folded table and the stream sequence to read next.
type jobTasks struct {
	table *taskevents.Table
	next  uint64
	used  time.Time
}

// taskJob tells the task manager a job registered or finished.
type taskJob struct {
	job      protos.JobID
	finished bool
}

func newTaskManager(env *managerEnv, opts taskOptions) actor.Producer {
	return func() actor.Actor { return &taskManager{env: env, opts: opts} }
}

func (m *taskManager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		// Restarted after a panic: fold again rather than trust memory.
		m.tables = map[protos.JobID]*jobTasks{}
	case readyRequest:
		ctx.Respond(readyReply{})
	case taskJob:
		if !msg.finished {
			m.createStream(msg.job)
		}
	case *protos.ListTasksRequest:
		ctx.Respond(m.list(msg))
	case *protos.SummarizeTasksRequest:
		ctx.Respond(m.summarize(msg))
	}
}

func (m *taskManager) createStream(job protos.JobID) {
	if m.env.js == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	_, err := m.env.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        TaskEventsStream(job),
		Description: fmt.Sprintf("goray task events of job %s: TaskEventBatch messages", job),
		Subjects:    []string{TaskEventsSubject(job)},
		Storage:     jetstream.FileStorage,
		Replicas:    max(m.env.replicas, 1),
		MaxBytes:    m.opts.maxBytes,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		m.env.log.Warn().Err(err).Str("job", job.Short()).Msg("create the job's task event stream; its task events are lost")
		return
	}
	m.prune(ctx, job)
}

// prune deletes the streams of the oldest jobs past opts.jobs, keeping
// keep's.
func (m *taskManager) prune(ctx context.Context, keep protos.JobID) {
	type stream struct {
		name    string
		created time.Time
	}
	var streams []stream
	names := m.env.js.ListStreams(ctx, jetstream.WithStreamListSubject(taskEventsPrefix+"*"))
	for info := range names.Info() {
		if strings.HasPrefix(info.Config.Name, TaskEventsStreamPrefix) {
			streams = append(streams, stream{info.Config.Name, info.Created})
		}
	}
	if err := names.Err(); err != nil || len(streams) <= m.opts.jobs {
		return
	}
	slices.SortFunc(streams, func(a, b stream) int { return a.created.Compare(b.created) })
	for _, s := range streams[:len(streams)-m.opts.jobs] {
		if s.name == TaskEventsStream(keep) {
			continue
		}
		if err := m.env.js.DeleteStream(ctx, s.name); err != nil {
			m.env.log.Warn().Err(err).Str("stream", s.name).Msg("delete an old job's task events")
			continue
		}
		if id, err := parseStreamJob(s.name); err == nil {
			delete(m.tables, id)
		}
	}
}

// jobsOf lists the jobs a request covers: one, or every job with a stream.
func (m *taskManager) jobsOf(ctx context.Context, raw []byte) ([]protos.JobID, error) {
	if len(raw) > 0 {
		id, err := protos.UniqueIDFromBytes(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: job id: %w", ErrInvalid, err)
		}
		return []protos.JobID{id}, nil
	}
	var out []protos.JobID
	names := m.env.js.StreamNames(ctx, jetstream.WithStreamListSubject(taskEventsPrefix+"*"))
	for name := range names.Name() {
		if id, err := parseStreamJob(name); err == nil {
			out = append(out, id)
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("%w: list task event streams: %w", ErrUnavailable, err)
	}
	return out, nil
}

// table catches job's table up with its stream.
func (m *taskManager) table(ctx context.Context, job protos.JobID) (*jobTasks, error) {
	jt := m.tables[job]
	if jt == nil {
		jt = &jobTasks{table: taskevents.NewTable(m.opts.maxTasks), next: 1}
	}
	stream, err := m.env.js.Stream(ctx, TaskEventsStream(job))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: no task events of job %s (the job is unknown, or its events were removed with older jobs')", ErrNotFound, job)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: task events of job %s: %w", ErrUnavailable, job, err)
	}
	st := stream.CachedInfo().State
	if jt.next < st.FirstSeq {
		// Dropped by the stream's bound before they were read: the
		// producers' counters in later batches count them.
		jt.next = st.FirstSeq
	}
	if jt.next <= st.LastSeq {
		cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: jt.next})
		if err != nil {
			return nil, fmt.Errorf("%w: read task events of job %s: %w", ErrUnavailable, job, err)
		}
		for jt.next <= st.LastSeq {
			msg, err := cons.Next(jetstream.FetchMaxWait(storeTimeout))
			if err != nil {
				return nil, fmt.Errorf("%w: read task events of job %s: %w", ErrUnavailable, job, err)
			}
			meta, err := msg.Metadata()
			if err != nil {
				return nil, fmt.Errorf("%w: read task events of job %s: %w", ErrUnavailable, job, err)
			}
			jt.next = meta.Sequence.Stream + 1
			b := &protos.TaskEventBatch{}
			if err := proto.Unmarshal(msg.Data(), b); err != nil {
				// Anyone allowed to publish there could send garbage:
				// skip it rather than stop reading the job.
				m.env.log.Debug().Err(err).Str("job", job.Short()).Msg("skip a malformed task event batch")
				continue
			}
			b.JobId = job.Bytes()
			jt.table.Apply(b)
		}
	}
	jt.used = time.Now()
	m.tables[job] = jt
	m.evictTables(job)
	return jt, nil
}

// evictTables keeps at most taskTablesCached tables, the least recently
// used going first (never keep's).
func (m *taskManager) evictTables(keep protos.JobID) {
	for len(m.tables) > taskTablesCached {
		var oldest protos.JobID
		var at time.Time
		for id, jt := range m.tables {
			if id != keep && (at.IsZero() || jt.used.Before(at)) {
				oldest, at = id, jt.used
			}
		}
		delete(m.tables, oldest)
	}
}

// tablesFor folds the tables a request covers.
func (m *taskManager) tablesFor(raw []byte) ([]*jobTasks, error) {
	if m.env.js == nil {
		return nil, fmt.Errorf("%w: the GCS has no JetStream", ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*storeTimeout)
	defer cancel()
	jobs, err := m.jobsOf(ctx, raw)
	if err != nil {
		return nil, err
	}
	var out []*jobTasks
	for _, job := range jobs {
		jt, err := m.table(ctx, job)
		if err != nil {
			if len(raw) == 0 && errors.Is(err, ErrNotFound) {
				continue // removed while listing
			}
			return nil, err
		}
		out = append(out, jt)
	}
	return out, nil
}

func (m *taskManager) list(req *protos.ListTasksRequest) *protos.ListTasksReply {
	if err := taskevents.CheckFilters(req.GetFilters()); err != nil {
		return &protos.ListTasksReply{Error: gcsErrorf(ErrInvalid, "list tasks: %v", err)}
	}
	tables, err := m.tablesFor(req.GetJobId())
	if err != nil {
		return &protos.ListTasksReply{Error: toGcsError(err)}
	}
	limit, offset := int(req.GetLimit()), int(req.GetOffset())
	perTable := 0
	if limit > 0 {
		perTable = offset + limit
	}
	rep := &protos.ListTasksReply{}
	var rows []*protos.TaskInfo
	for _, jt := range tables {
		r, n := jt.table.List(req.GetFilters(), perTable)
		rows = append(rows, r...)
		rep.Total += uint64(n)
		rep.DroppedEvents += jt.table.Dropped()
		rep.EvictedTasks += jt.table.Evicted()
	}
	// Newest first across jobs, then cut to the limit and to what fits a
	// reply.
	slices.SortStableFunc(rows, func(a, b *protos.TaskInfo) int {
		return cmp.Compare(b.GetCreationTimeUnixNanos(), a.GetCreationTimeUnixNanos())
	})
	rows = rows[min(offset, len(rows)):]
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
	}
	size := 0
	for i, r := range rows {
		size += proto.Size(r) + 4
		if size > maxTaskReplyBytes {
			rows = rows[:i]
			break
		}
	}
	rep.Tasks = rows
	return rep
}

// parseStreamJob reads the job id out of a task event stream's name.
func parseStreamJob(name string) (protos.JobID, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(name, TaskEventsStreamPrefix))
	if err != nil {
		return protos.JobID{}, err
	}
	return protos.UniqueIDFromBytes(b)
}

func (m *taskManager) summarize(req *protos.SummarizeTasksRequest) *protos.SummarizeTasksReply {
	tables, err := m.tablesFor(req.GetJobId())
	if err != nil {
		return &protos.SummarizeTasksReply{Error: toGcsError(err)}
	}
	rep := &protos.SummarizeTasksReply{}
	merged := map[string]*protos.TaskSummary{}
	counts := map[string]uint64{}
	var order []string
	for _, jt := range tables {
		for _, s := range jt.table.Summarize() {
			k := s.GetType().String() + "/" + s.GetFunction()
			into := merged[k]
			if into == nil {
				into = &protos.TaskSummary{Function: s.GetFunction(), Type: s.GetType(), States: map[string]uint64{}}
				merged[k] = into
				order = append(order, k)
			}
			for st, n := range s.GetStates() {
				into.States[st] += n
				counts[k] += n
				rep.Total += n
			}
		}
		rep.DroppedEvents += jt.table.Dropped()
		rep.EvictedTasks += jt.table.Evicted()
	}
	slices.SortStableFunc(order, func(a, b string) int { return cmp.Compare(counts[b], counts[a]) })
	for _, k := range order {
		rep.Summaries = append(rep.Summaries, merged[k])
	}
	return rep
}
