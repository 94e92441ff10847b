package state

import (
	"cmp"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"time"
)

// KindTasks lists task attempts (from their task events).
const KindTasks = "tasks"

// Task is one attempt of a task or actor call, as its owner and executor
// reported it (Ray's task state).
type Task struct {
	TaskID  string `json:"task_id"`
	Attempt int    `json:"attempt"`
	Name    string `json:"name"`
	// State is PENDING_ARGS, SUBMITTED, RUNNING, FINISHED or FAILED.
	State string `json:"state"`
	JobID string `json:"job_id"`
	// Type is NORMAL_TASK or ACTOR_TASK.
	Type string `json:"type"`
	// Function is the function, or Class.Method for an actor task.
	Function     string `json:"function"`
	ActorID      string `json:"actor_id,omitempty"`
	ParentTaskID string `json:"parent_task_id,omitempty"`
	NodeID       string `json:"node_id,omitempty"`
	WorkerID     string `json:"worker_id,omitempty"`
	WorkerPID    int    `json:"worker_pid,omitempty"`
	// ErrorType is the kind of error a FAILED attempt ended with (TASK:
	// the function returned an error or panicked; WORKER_CRASHED, ...).
	ErrorType    string    `json:"error_type,omitempty"`
	ErrorMessage string    `json:"error_message,omitempty"`
	CreationTime time.Time `json:"creation_time,omitzero"`
	StartTime    time.Time `json:"start_time,omitzero"`
	EndTime      time.Time `json:"end_time,omitzero"`
}

// Tasks is a listing of task attempts and what it may lack.
type Tasks struct {
	Tasks []Task
	// Total is how many attempts matched, before the limit.
	Total int
	// DroppedEvents counts task events lost before they were kept (a
	// process's buffer was full, or a job's stream reached its bound);
	// EvictedTasks counts attempts the task manager no longer holds. Both
	// make a listing incomplete.
	DroppedEvents uint64
	EvictedTasks  uint64
}

// TaskSummary counts a function's task attempts by state (Ray's `ray
// summary tasks`).
type TaskSummary struct {
	Function string         `json:"function"`
	Type     string         `json:"type"`
	Total    int            `json:"total"`
	States   map[string]int `json:"states"`
}

// taskStates are the summary table's columns, in lifecycle order.
var taskStates = []string{"PENDING_ARGS", "SUBMITTED", "RUNNING", "FINISHED", "FAILED"}

// PrintTaskSummary writes summaries as a table (a column per state), or
// as json or yaml.
func PrintTaskSummary(w io.Writer, sums []TaskSummary, format string) error {
	rows := make([]countRow, len(sums))
	for i, s := range sums {
		rows[i] = countRow{name: s.Function, kind: s.Type, total: s.Total, states: s.States}
	}
	return printCounts(w, sums, rows, format, "FUNCTION", taskStates, "No tasks.")
}

// traceEvent is one event of the Chrome trace event format (what
// chrome://tracing and Perfetto read): a complete span ("X") or a
// metadata record ("M") naming a process or thread.
type traceEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	Ts   float64        `json:"ts"`
	Dur  float64        `json:"dur"`
	PID  int            `json:"pid"`
	TID  int            `json:"tid"`
	Args map[string]any `json:"args,omitempty"`
}

// WriteChromeTrace writes the attempts that started running as a Chrome
// trace (a JSON array of events): a process per node, a thread per worker
// process, a span per attempt from its start to its end (to now while
// running). Open it in chrome://tracing or ui.perfetto.dev.
func WriteChromeTrace(w io.Writer, tasks []Task, now time.Time) error {
	ran := make([]Task, 0, len(tasks))
	for _, t := range tasks {
		if !t.StartTime.IsZero() {
			ran = append(ran, t)
		}
	}
	slices.SortStableFunc(ran, func(a, b Task) int { return a.StartTime.Compare(b.StartTime) })
	events := []traceEvent{}
	nodes := map[string]int{}
	threads := map[[2]int]bool{}
	for _, t := range ran {
		pid, ok := nodes[t.NodeID]
		if !ok {
			pid = len(nodes) + 1
			nodes[t.NodeID] = pid
			events = append(events, traceEvent{Name: "process_name", Ph: "M", PID: pid, Args: map[string]any{"name": "node " + shortHex(t.NodeID, 12)}})
		}
		if !threads[[2]int{pid, t.WorkerPID}] {
			threads[[2]int{pid, t.WorkerPID}] = true
			events = append(events, traceEvent{Name: "thread_name", Ph: "M", PID: pid, TID: t.WorkerPID,
				Args: map[string]any{"name": "worker " + shortHex(t.WorkerID, 12) + " (pid " + strconv.Itoa(t.WorkerPID) + ")"}})
		}
		end := t.EndTime
		if end.IsZero() {
			end = now
		}
		args := map[string]any{"task_id": t.TaskID, "attempt": t.Attempt, "state": t.State, "function": t.Function}
		if t.ErrorType != "" {
			args["error_type"], args["error_message"] = t.ErrorType, t.ErrorMessage
		}
		events = append(events, traceEvent{Name: cmp.Or(t.Name, t.Function), Cat: t.Type, Ph: "X",
			Ts: micros(t.StartTime), Dur: max(micros(end)-micros(t.StartTime), 0), PID: pid, TID: t.WorkerPID, Args: args})
	}
	enc := json.NewEncoder(w)
	return enc.Encode(events)
}

func micros(t time.Time) float64 { return float64(t.UnixNano()) / 1e3 }
