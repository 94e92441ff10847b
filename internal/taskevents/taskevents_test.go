package taskevents

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
)

func decode(t *testing.T, msgs [][]byte) []*protos.TaskEventBatch {
	t.Helper()
	var out []*protos.TaskEventBatch
	for _, m := range msgs {
		b := &protos.TaskEventBatch{}
		if err := proto.Unmarshal(m, b); err != nil {
			t.Fatalf("a flushed batch does not decode: %v", err)
		}
		out = append(out, b)
	}
	return out
}

func TestEncodeMatchesProto(t *testing.T) {
	job, worker, node := protos.NewUniqueID(), protos.NewUniqueID(), protos.NewUniqueID()
	task, parent, actor := protos.NewUniqueID(), protos.NewUniqueID(), protos.NewUniqueID()
	r := NewRecorder(Config{Job: job, Worker: worker, PID: 42})
	r.Record(Event{TaskID: task, Time: 10, Attempt: 1, State: protos.TaskState_SUBMITTED, Type: protos.TaskType_ACTOR_TASK,
		Name: "n", Function: "C.m", Parent: parent, Actor: actor})
	r.Record(Event{TaskID: task, Time: 20, Attempt: 1, State: protos.TaskState_FAILED, RunMicros: 7,
		ErrorKind: protos.ErrorKind_ERROR_KIND_TASK, ErrorMsg: strings.Repeat("é", maxErrorMessage)})
	got := decode(t, r.Flush(node))
	if len(got) != 1 {
		t.Fatalf("%d batches, want 1", len(got))
	}
	b := got[0]
	want := &protos.TaskEventBatch{
		JobId: job.Bytes(), WorkerId: worker.Bytes(), NodeId: node.Bytes(), Pid: 42,
		Strings: []string{"n", "C.m"},
		Events: []*protos.TaskEvent{
			{TaskId: task.Bytes(), Attempt: 1, State: protos.TaskState_SUBMITTED, TimeUnixNanos: 10, Name: 1, Function: 2,
				Type: protos.TaskType_ACTOR_TASK, ActorId: actor.Bytes(), ParentTaskId: parent.Bytes()},
			{TaskId: task.Bytes(), Attempt: 1, State: protos.TaskState_FAILED, TimeUnixNanos: 20, RunMicros: 7, ErrorType: "TASK",
				ErrorMessage: b.GetEvents()[1].GetErrorMessage()},
		},
	}
	if !proto.Equal(b, want) {
		t.Fatalf("decoded\n%v\nwant\n%v", b, want)
	}
	if m := b.GetEvents()[1].GetErrorMessage(); len(m) > maxErrorMessage+len("…") || !strings.HasSuffix(m, "…") || !strings.HasPrefix(m, "é") {
		t.Fatalf("error message not cut to %d bytes on a rune boundary: %d bytes", maxErrorMessage, len(m))
	}
	if r.Flush(node) != nil {
		t.Fatal("a second flush with nothing recorded published something")
	}
}

func TestRecorderBoundsAndBatches(t *testing.T) {
	r := NewRecorder(Config{Job: protos.NewUniqueID(), Worker: protos.NewUniqueID(), BufferEvents: 25, BatchEvents: 10})
	for range 30 {
		r.Record(Event{TaskID: protos.NewUniqueID(), State: protos.TaskState_SUBMITTED, Function: "f"})
	}
	batches := decode(t, r.Flush(protos.UniqueID{}))
	if len(batches) != 3 || len(batches[2].GetEvents()) != 5 {
		t.Fatalf("%d batches (last of %d events), want 10+10+5", len(batches), len(batches[len(batches)-1].GetEvents()))
	}
	for i, b := range batches {
		if b.GetSentBefore() != uint64(10*i) || b.GetDropped() != 5 {
			t.Fatalf("batch %d: sent_before %d dropped %d, want %d and 5", i, b.GetSentBefore(), b.GetDropped(), 10*i)
		}
	}
	tab := NewTable(0)
	// The middle batch never arrives (the stream dropped it).
	tab.Apply(batches[0])
	tab.Apply(batches[2])
	if tab.Len() != 15 || tab.Dropped() != 15 {
		t.Fatalf("rows %d dropped %d, want 15 and 15 (5 at the source, 10 in the stream)", tab.Len(), tab.Dropped())
	}
}

// TestFoldOutOfOrder: an attempt's rows end in the state its last
// transition reached whatever order the owner's and executor's batches
// arrive in, with the executor's clock for the span.
func TestFoldOutOfOrder(t *testing.T) {
	job, owner, exec, node := protos.NewUniqueID(), protos.NewUniqueID(), protos.NewUniqueID(), protos.NewUniqueID()
	task := protos.NewUniqueID()
	o := NewRecorder(Config{Job: job, Worker: owner, PID: 1})
	x := NewRecorder(Config{Job: job, Worker: exec, PID: 2})
	o.Record(Event{TaskID: task, Time: 100, State: protos.TaskState_SUBMITTED, Name: "nice", Function: "f"})
	o.Record(Event{TaskID: task, Time: 900, State: protos.TaskState_FINISHED, RunMicros: 300})
	x.Record(Event{TaskID: task, Time: 200, State: protos.TaskState_RUNNING})
	owner1, exec1 := decode(t, o.Flush(node)), decode(t, x.Flush(node))
	for _, order := range [][]*protos.TaskEventBatch{{owner1[0], exec1[0]}, {exec1[0], owner1[0]}} {
		tab := NewTable(0)
		for _, b := range order {
			tab.Apply(b)
		}
		rows, total := tab.List(nil, 0)
		if total != 1 {
			t.Fatalf("%d rows, want 1", total)
		}
		r := rows[0]
		if r.GetState() != protos.TaskState_FINISHED || r.GetName() != "nice" || r.GetFunction() != "f" || r.GetWorkerPid() != 2 ||
			r.GetCreationTimeUnixNanos() != 100 || r.GetStartTimeUnixNanos() != 200 || r.GetEndTimeUnixNanos() != 200+300_000 {
			t.Fatalf("folded %v", r)
		}
	}
}

func TestTableEvictsOldest(t *testing.T) {
	r := NewRecorder(Config{Job: protos.NewUniqueID(), Worker: protos.NewUniqueID()})
	var ids []protos.UniqueID
	for range 5 {
		id := protos.NewUniqueID()
		ids = append(ids, id)
		r.Record(Event{TaskID: id, State: protos.TaskState_SUBMITTED, Function: "f"})
	}
	tab := NewTable(3)
	for _, b := range decode(t, r.Flush(protos.UniqueID{})) {
		tab.Apply(b)
	}
	rows, _ := tab.List(nil, 0)
	if tab.Evicted() != 2 || len(rows) != 3 || string(rows[0].GetTaskId()) != string(ids[4].Bytes()) || string(rows[2].GetTaskId()) != string(ids[2].Bytes()) {
		t.Fatalf("evicted %d, kept %d rows, newest first %x", tab.Evicted(), len(rows), rows[0].GetTaskId())
	}
	// A late event of an evicted attempt makes it a new row, the newest;
	// the bound then evicts the oldest row, not the new one.
	r.Record(Event{TaskID: ids[0], State: protos.TaskState_FINISHED, Function: "f"})
	for _, b := range decode(t, r.Flush(protos.UniqueID{})) {
		tab.Apply(b)
	}
	rows, total := tab.List(nil, 2)
	if total != 3 || len(rows) != 2 || string(rows[0].GetTaskId()) != string(ids[0].Bytes()) || string(rows[1].GetTaskId()) != string(ids[4].Bytes()) {
		t.Fatalf("after a late event: %d of %d rows, newest %x", len(rows), total, rows[0].GetTaskId())
	}
	if all, _ := tab.List(nil, 0); string(all[2].GetTaskId()) != string(ids[3].Bytes()) {
		t.Fatalf("the oldest kept row is %x, want the 4th task's", all[2].GetTaskId())
	}
}

func TestFiltersAndSummary(t *testing.T) {
	r := NewRecorder(Config{Job: protos.NewUniqueID(), Worker: protos.NewUniqueID()})
	failed := protos.NewUniqueID()
	for i := range 4 {
		id := protos.NewUniqueID()
		if i == 0 {
			id = failed
		}
		r.Record(Event{TaskID: id, State: protos.TaskState_SUBMITTED, Function: "f"})
		if i == 0 {
			r.Record(Event{TaskID: id, State: protos.TaskState_FAILED, ErrorKind: protos.ErrorKind_ERROR_KIND_TASK, ErrorMsg: "boom"})
		} else {
			r.Record(Event{TaskID: id, State: protos.TaskState_FINISHED})
		}
	}
	r.Record(Event{TaskID: protos.NewUniqueID(), State: protos.TaskState_SUBMITTED, Function: "A.m", Type: protos.TaskType_ACTOR_TASK})
	tab := NewTable(0)
	for _, b := range decode(t, r.Flush(protos.UniqueID{})) {
		tab.Apply(b)
	}
	for _, tc := range []struct {
		filters []*protos.TaskFilter
		want    int
	}{
		{nil, 5},
		{[]*protos.TaskFilter{{Field: "state", Value: "failed"}}, 1},
		{[]*protos.TaskFilter{{Field: "state", Value: "FAILED", Not: true}}, 4},
		{[]*protos.TaskFilter{{Field: "function", Value: "f"}, {Field: "error_type", Value: "task"}}, 1},
		{[]*protos.TaskFilter{{Field: "task_id", Value: failed.String()[:6]}}, 1},
		{[]*protos.TaskFilter{{Field: "type", Value: "actor_task"}}, 1},
	} {
		if err := CheckFilters(tc.filters); err != nil {
			t.Fatal(err)
		}
		if _, n := tab.List(tc.filters, 0); n != tc.want {
			t.Errorf("filters %v: %d rows, want %d", tc.filters, n, tc.want)
		}
	}
	if err := CheckFilters([]*protos.TaskFilter{{Field: "colour"}}); err == nil || !strings.Contains(err.Error(), `"colour"`) {
		t.Fatalf("an unknown field: %v", err)
	}
	rows, n := tab.List(nil, 2)
	if n != 5 || len(rows) != 2 {
		t.Fatalf("limit 2: %d rows of %d", len(rows), n)
	}
	sums := tab.Summarize()
	if len(sums) != 2 || sums[0].GetFunction() != "f" || sums[0].GetStates()["FINISHED"] != 3 || sums[0].GetStates()["FAILED"] != 1 ||
		sums[1].GetStates()["SUBMITTED"] != 1 {
		t.Fatalf("summary %v", sums)
	}
}

func BenchmarkRecord(b *testing.B) {
	r := NewRecorder(Config{Job: protos.NewUniqueID(), Worker: protos.NewUniqueID()})
	id := protos.NewUniqueID()
	b.ReportAllocs()
	for i := range b.N {
		r.Record(Event{TaskID: id, State: protos.TaskState_SUBMITTED, Name: "f", Function: "f"})
		if i%10_000 == 0 {
			r.Flush(protos.UniqueID{})
		}
	}
}

func BenchmarkFlush10k(b *testing.B) {
	r := NewRecorder(Config{Job: protos.NewUniqueID(), Worker: protos.NewUniqueID()})
	id := protos.NewUniqueID()
	b.ReportAllocs()
	for range b.N {
		for i := range 10_000 {
			st := protos.TaskState_SUBMITTED
			if i%2 == 1 {
				st = protos.TaskState_FINISHED
			}
			r.Record(Event{TaskID: id, State: st, Name: "f", Function: "f"})
		}
		r.Flush(protos.UniqueID{})
	}
}

// TestFoldWithoutExecutor: when the executor's RUNNING event is lost (its
// process was killed before it published), the owner's end says where and
// how long the attempt ran.
func TestFoldWithoutExecutor(t *testing.T) {
	node, worker := protos.NewUniqueID(), protos.NewUniqueID()
	task := protos.NewUniqueID()
	o := NewRecorder(Config{Job: protos.NewUniqueID(), Worker: protos.NewUniqueID()})
	o.Record(Event{TaskID: task, Time: 100, State: protos.TaskState_SUBMITTED, Function: "f"})
	o.Record(Event{TaskID: task, Time: 9_000_000, State: protos.TaskState_FINISHED, RunMicros: 5000,
		Where: &protos.Address{NodeId: node.Bytes(), WorkerId: worker.Bytes(), Pid: 9}})
	tab := NewTable(0)
	for _, b := range decode(t, o.Flush(protos.UniqueID{})) {
		tab.Apply(b)
	}
	rows, _ := tab.List(nil, 0)
	r := rows[0]
	if string(r.GetNodeId()) != string(node.Bytes()) || r.GetWorkerPid() != 9 || r.GetStartTimeUnixNanos() != 4_000_000 || r.GetEndTimeUnixNanos() != 9_000_000 {
		t.Fatalf("folded %v", r)
	}
}

// TestEndFolds: an end recorded while the attempt's first event is still
// buffered is folded into it and published as two events; after a flush
// it is an event of its own. Both fold to the same row.
func TestEndFolds(t *testing.T) {
	r := NewRecorder(Config{Job: protos.NewUniqueID(), Worker: protos.NewUniqueID()})
	a, b := protos.NewUniqueID(), protos.NewUniqueID()
	ha := r.Record(Event{TaskID: a, Time: 10, State: protos.TaskState_SUBMITTED, Function: "f"})
	hb := r.Record(Event{TaskID: b, Time: 11, State: protos.TaskState_SUBMITTED, Function: "f"})
	r.End(ha, Event{TaskID: a, Time: 20, State: protos.TaskState_FINISHED, RunMicros: 3})
	r.mu.Lock()
	buffered := len(r.buf)
	r.mu.Unlock()
	if buffered != 2 {
		t.Fatalf("%d events buffered, want 2 (the end folded in)", buffered)
	}
	first := decode(t, r.Flush(protos.UniqueID{}))
	r.End(hb, Event{TaskID: b, Time: 30, State: protos.TaskState_FAILED, ErrorKind: protos.ErrorKind_ERROR_KIND_TASK})
	r.End(Handle{}, Event{TaskID: b, Time: 31, State: protos.TaskState_FAILED})
	second := decode(t, r.Flush(protos.UniqueID{}))
	if n := len(first[0].GetEvents()); n != 3 {
		t.Fatalf("first flush published %d events, want 3", n)
	}
	if n := len(second[0].GetEvents()); n != 2 {
		t.Fatalf("second flush published %d events, want 2 (a stale handle records anew)", n)
	}
	tab := NewTable(0)
	tab.Apply(first[0])
	tab.Apply(second[0])
	rows, _ := tab.List([]*protos.TaskFilter{{Field: "state", Value: "FINISHED"}}, 0)
	if len(rows) != 1 || rows[0].GetEndTimeUnixNanos() != 20 || rows[0].GetStartTimeUnixNanos() != 20-3000 {
		t.Fatalf("finished rows %v", rows)
	}
	if tab.Dropped() != 0 {
		t.Fatalf("%d dropped", tab.Dropped())
	}
}
