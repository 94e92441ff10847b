package taskevents

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/goray/goray/protos"
)

// DefaultMaxTasks bounds a Table, as Ray's task_events_max_num_task_in_gcs.
const DefaultMaxTasks = 100_000

type rowKey struct {
	id      protos.UniqueID
	attempt int32
}

// row is a task attempt being folded: its public part and what the fold
// needs to settle its end time whichever of the owner's and the
// executor's events comes first.
type row struct {
	info          protos.TaskInfo
	runMicros     uint64
	ownerEnd      int64
	executorStart int64
	seq           uint64
	// ranOn: the owner's end says a worker ran the attempt.
	ranOn bool
}

// producer is what a Table knows of one process's batches, to count what
// it lost of them.
type producer struct {
	received, sent, dropped uint64
}

// Table folds task events into one row per task attempt, keeping at most
// its bound's worth: beyond it the oldest rows are evicted and counted. It
// does no I/O and is not safe for concurrent use.
type Table struct {
	max       int
	rows      map[rowKey]*row
	order     []orderEntry // oldest first; may name rows already evicted
	seq       uint64
	producers map[protos.UniqueID]*producer
	evicted   uint64
}

// orderEntry names a row where it was added: a key evicted and added
// again is a new row (a new seq) later in the order.
type orderEntry struct {
	k   rowKey
	seq uint64
}

// NewTable returns an empty Table of at most max rows (<= 0: the default).
func NewTable(max int) *Table {
	if max <= 0 {
		max = DefaultMaxTasks
	}
	return &Table{max: max, rows: map[rowKey]*row{}, producers: map[protos.UniqueID]*producer{}}
}

// Len is the number of rows.
func (t *Table) Len() int { return len(t.rows) }

// Evicted is how many rows the bound evicted.
func (t *Table) Evicted() uint64 { return t.evicted }

// Dropped is how many events the Table knows were lost before reaching
// it: dropped by their producers (a full buffer) or missing from the
// batches it was given (a stream that dropped its oldest messages). A
// producer none of whose batches arrived is not known.
func (t *Table) Dropped() uint64 {
	var n uint64
	for _, p := range t.producers {
		n += p.dropped
		if p.sent > p.received {
			n += p.sent - p.received
		}
	}
	return n
}

// stateRank orders states: an attempt's state only moves forward, so
// events folded out of order (the executor's RUNNING after the owner's
// FINISHED) leave the final one.
func stateRank(s protos.TaskState) int {
	switch s {
	case protos.TaskState_PENDING_ARGS:
		return 1
	case protos.TaskState_SUBMITTED:
		return 2
	case protos.TaskState_RUNNING:
		return 3
	case protos.TaskState_FINISHED, protos.TaskState_FAILED:
		return 4
	}
	return 0
}

// Apply folds one batch.
func (t *Table) Apply(b *protos.TaskEventBatch) {
	worker, err := protos.UniqueIDFromBytes(b.GetWorkerId())
	if err == nil {
		p := t.producers[worker]
		if p == nil {
			p = &producer{}
			t.producers[worker] = p
		}
		p.received += uint64(len(b.GetEvents()))
		p.sent = max(p.sent, b.GetSentBefore()+uint64(len(b.GetEvents())))
		p.dropped = max(p.dropped, b.GetDropped())
	}
	str := func(i uint32) string {
		if i == 0 || int(i) > len(b.GetStrings()) {
			return ""
		}
		return b.GetStrings()[i-1]
	}
	for _, e := range b.GetEvents() {
		id, err := protos.UniqueIDFromBytes(e.GetTaskId())
		if err != nil {
			continue
		}
		k := rowKey{id: id, attempt: e.GetAttempt()}
		r := t.rows[k]
		if r == nil {
			r = t.add(k, b.GetJobId())
		}
		t.fold(r, b, e, str)
	}
	t.evict()
}

func (t *Table) add(k rowKey, job []byte) *row {
	t.seq++
	r := &row{seq: t.seq}
	r.info.TaskId = k.id.Bytes()
	r.info.Attempt = k.attempt
	r.info.JobId = job
	t.rows[k] = r
	t.order = append(t.order, orderEntry{k, t.seq})
	return r
}

func (t *Table) fold(r *row, b *protos.TaskEventBatch, e *protos.TaskEvent, str func(uint32) string) {
	in := &r.info
	if f := str(e.GetFunction()); f != "" {
		in.Function = f
		in.Name = cmp.Or(str(e.GetName()), f)
		in.Type = e.GetType()
		in.ActorId = e.GetActorId()
		in.ParentTaskId = e.GetParentTaskId()
	}
	if stateRank(e.GetState()) > stateRank(in.State) {
		in.State = e.GetState()
	}
	ts := e.GetTimeUnixNanos()
	switch e.GetState() {
	case protos.TaskState_PENDING_ARGS, protos.TaskState_SUBMITTED:
		if in.CreationTimeUnixNanos == 0 || ts < in.CreationTimeUnixNanos {
			in.CreationTimeUnixNanos = ts
		}
	case protos.TaskState_RUNNING:
		r.executorStart = ts
		in.StartTimeUnixNanos = ts
		in.NodeId, in.WorkerId, in.WorkerPid = b.GetNodeId(), b.GetWorkerId(), b.GetPid()
	case protos.TaskState_FINISHED, protos.TaskState_FAILED:
		r.ownerEnd, r.runMicros = ts, e.GetRunMicros()
		in.ErrorType, in.ErrorMessage = e.GetErrorType(), e.GetErrorMessage()
		if len(e.GetNodeId()) > 0 {
			r.ranOn = true
			if len(in.NodeId) == 0 {
				in.NodeId, in.WorkerId, in.WorkerPid = e.GetNodeId(), e.GetWorkerId(), e.GetWorkerPid()
			}
		}
	}
	// The span: the executor's start plus the run time it measured when
	// both are known (one clock), else the owner's end less the run time.
	switch {
	case r.ownerEnd == 0:
	case r.executorStart != 0 && r.runMicros != 0:
		in.StartTimeUnixNanos = r.executorStart
		in.EndTimeUnixNanos = r.executorStart + int64(r.runMicros)*1000
	case r.executorStart != 0:
		in.EndTimeUnixNanos = max(r.ownerEnd, r.executorStart)
	case r.runMicros != 0 || r.ranOn:
		// (A function that ran under a microsecond reports 0.)
		in.EndTimeUnixNanos = r.ownerEnd
		in.StartTimeUnixNanos = r.ownerEnd - int64(r.runMicros)*1000
	default:
		in.EndTimeUnixNanos = r.ownerEnd
	}
}

func (t *Table) evict() {
	for len(t.rows) > t.max && len(t.order) > 0 {
		e := t.order[0]
		t.order = t.order[1:]
		if r, ok := t.rows[e.k]; ok && r.seq == e.seq {
			delete(t.rows, e.k)
			t.evicted++
		}
	}
	// Reclaim the evicted prefix's backing array now and then.
	if cap(t.order) > 2*t.max+1024 {
		t.order = slices.Clone(t.order)
	}
}

// FilterFields are the fields a TaskFilter may name.
var FilterFields = []string{"task_id", "job_id", "state", "name", "function", "type", "actor_id", "parent_task_id", "node_id", "worker_id", "error_type"}

// CheckFilters returns an error naming the first filter on a field the
// table does not know.
func CheckFilters(filters []*protos.TaskFilter) error {
	for _, f := range filters {
		if !slices.Contains(FilterFields, f.GetField()) {
			return fmt.Errorf("no task field %q to filter on (fields: %s)", f.GetField(), strings.Join(FilterFields, ", "))
		}
	}
	return nil
}

func matches(in *protos.TaskInfo, filters []*protos.TaskFilter) bool {
	for _, f := range filters {
		var ok bool
		v := f.GetValue()
		switch f.GetField() {
		case "task_id":
			ok = hexPrefix(in.GetTaskId(), v)
		case "job_id":
			ok = hexPrefix(in.GetJobId(), v)
		case "actor_id":
			ok = hexPrefix(in.GetActorId(), v)
		case "parent_task_id":
			ok = hexPrefix(in.GetParentTaskId(), v)
		case "node_id":
			ok = hexPrefix(in.GetNodeId(), v)
		case "worker_id":
			ok = hexPrefix(in.GetWorkerId(), v)
		case "state":
			ok = strings.EqualFold(in.GetState().String(), v)
		case "type":
			ok = strings.EqualFold(in.GetType().String(), v)
		case "name":
			ok = in.GetName() == v
		case "function":
			ok = in.GetFunction() == v
		case "error_type":
			ok = strings.EqualFold(in.GetErrorType(), v)
		}
		if ok == f.GetNot() {
			return false
		}
	}
	return true
}

func hexPrefix(id []byte, prefix string) bool {
	return len(id) > 0 && strings.HasPrefix(hex.EncodeToString(id), strings.ToLower(prefix))
}

// List returns the rows that pass every filter, the newest first, at most
// limit of them (<= 0: all), and how many passed. The rows are copies.
//
// The order is walked from its newest end, so a listing of the newest few
// of many rows (the dashboard's, every second) copies only those and
// sorts nothing.
func (t *Table) List(filters []*protos.TaskFilter, limit int) ([]*protos.TaskInfo, int) {
	var out []*protos.TaskInfo
	total := 0
	for i := len(t.order) - 1; i >= 0; i-- {
		e := t.order[i]
		r := t.rows[e.k]
		if r == nil || r.seq != e.seq || !matches(&r.info, filters) {
			continue
		}
		total++
		if limit <= 0 || len(out) < limit {
			out = append(out, cloneInfo(&r.info))
		}
	}
	return out, total
}

func cloneInfo(in *protos.TaskInfo) *protos.TaskInfo {
	return &protos.TaskInfo{
		TaskId: in.TaskId, Attempt: in.Attempt, JobId: in.JobId, State: in.State, Name: in.Name, Function: in.Function,
		Type: in.Type, ActorId: in.ActorId, ParentTaskId: in.ParentTaskId, NodeId: in.NodeId, WorkerId: in.WorkerId,
		WorkerPid: in.WorkerPid, ErrorType: in.ErrorType, ErrorMessage: in.ErrorMessage,
		CreationTimeUnixNanos: in.CreationTimeUnixNanos, StartTimeUnixNanos: in.StartTimeUnixNanos, EndTimeUnixNanos: in.EndTimeUnixNanos,
	}
}

// Summarize counts rows by function (and type) and state, the functions
// with the most attempts first.
func (t *Table) Summarize() []*protos.TaskSummary {
	type key struct {
		fn  string
		typ protos.TaskType
	}
	by := map[key]*protos.TaskSummary{}
	counts := map[key]uint64{}
	for _, r := range t.rows {
		k := key{r.info.GetFunction(), r.info.GetType()}
		s := by[k]
		if s == nil {
			s = &protos.TaskSummary{Function: k.fn, Type: k.typ, States: map[string]uint64{}}
			by[k] = s
		}
		s.States[r.info.GetState().String()]++
		counts[k]++
	}
	out := make([]*protos.TaskSummary, 0, len(by))
	for _, s := range by {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *protos.TaskSummary) int {
		return cmp.Or(cmp.Compare(counts[key{b.Function, b.Type}], counts[key{a.Function, a.Type}]), cmp.Compare(a.Function, b.Function))
	})
	return out
}
