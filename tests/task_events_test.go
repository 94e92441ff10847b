package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/goray/goray/sdk"
	"github.com/goray/goray/state"
)

// TestTaskEventsCLI: task events from the driver, from workers on two
// nodes and from an actor reach the task manager; goray list tasks, get
// task, summary tasks and timeline show them through the real binary.
func TestTaskEventsCLI(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "2"}, nodeSpec{"--num-cpus", "2"})
	job := sdk.GetRuntimeContext(ctx).JobID.String()
	// Spread batches of tasks until both nodes ran some: the head's raylet
	// may hear of the joining node a moment after the GCS has it.
	const n = 40
	var refs []sdk.Ref[string]
	ran := map[string]bool{}
	checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		batch := make([]sdk.Ref[string], n)
		for i := range batch {
			batch[i] = SleepThenNode.Options(sdk.Scheduling(sdk.Spread())).Remote(ctx, 20)
		}
		refs = append(refs, batch...)
		for _, r := range batch {
			node, err := r.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ran[node] = true
		}
		if len(ran) != 2 {
			return fmt.Errorf("the tasks ran on %d nodes, want both", len(ran))
		}
		return nil
	})
	spread := len(refs)
	failed := Fail.Remote(ctx, "plain")
	if _, err := failed.Get(ctx); err == nil {
		t.Fatal("Fail did not fail")
	}
	if _, err := Outer.Remote(ctx, "none").Get(ctx); err != nil {
		t.Fatal(err)
	}
	counter, err := CounterActor.Remote(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := CounterInc.Remote(ctx, counter, 1).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}

	goray := func(args ...string) (string, string) {
		t.Helper()
		out, errOut, err := runGorayStreams(c.bin, c.env, append(args, "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir))...)
		if err != nil {
			t.Fatalf("goray %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out, errOut
	}
	// the spread tasks + Fail + Outer + the Fail it calls + 3 calls: the events arrive
	// within about a second of each process's flush.
	want := spread + 3 + 3
	var tasks []state.Task
	checkFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		out, _ := goray("list", "tasks", "--filter", "job_id="+job, "--filter", "state=FINISHED", "--limit", "0", "--format", "json")
		tasks = nil
		if err := json.Unmarshal([]byte(out), &tasks); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if len(tasks) != want-1 {
			return fmt.Errorf("%d finished attempts listed, want %d", len(tasks), want-1)
		}
		return nil
	})
	byFn := map[string]int{}
	nodes := map[string]bool{}
	var outer, inner state.Task
	for _, tk := range tasks {
		byFn[tk.Function]++
		if tk.Function == "tests.SleepThenNode" {
			nodes[tk.NodeID] = true
			if tk.Type != "NORMAL_TASK" || tk.WorkerPID == 0 || tk.StartTime.IsZero() || tk.EndTime.Before(tk.StartTime.Add(20*time.Millisecond)) ||
				tk.CreationTime.After(tk.StartTime) {
				t.Errorf("task %+v", tk)
			}
		}
		switch tk.Function {
		case "tests.Outer":
			outer = tk
		case "tests.Fail":
			inner = tk
		}
	}
	if byFn["tests.SleepThenNode"] != spread || byFn["tests.Counter.Inc"] != 3 || len(nodes) != 2 {
		t.Fatalf("finished attempts by function %v on %d nodes", byFn, len(nodes))
	}
	if inner.ParentTaskID != outer.TaskID || outer.ParentTaskID != "" {
		t.Errorf("the nested call's parent is %q, want %q", inner.ParentTaskID, outer.TaskID)
	}

	// The failed task, by state, and by its id's prefix with get.
	out, _ := goray("list", "tasks", "--filter", "job_id="+job, "--filter", "state=failed", "--format", "json")
	var fails []state.Task
	if err := json.Unmarshal([]byte(out), &fails); err != nil || len(fails) != 1 {
		t.Fatalf("failed tasks: %v\n%s", err, out)
	}
	if f := fails[0]; f.Function != "tests.Fail" || f.ErrorType != "TASK" || !strings.Contains(f.ErrorMessage, "plain failure") {
		t.Fatalf("failed task %+v", f)
	}
	out, _ = goray("get", "task", fails[0].TaskID[:10])
	var got []state.Task
	if err := yaml.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].TaskID != fails[0].TaskID || got[0].State != "FAILED" {
		t.Fatalf("get task: %v\n%s", err, out)
	}
	// The table, cut to a limit, says so.
	out, errOut := goray("list", "tasks", "--filter", "job_id="+job, "--limit", "5")
	if lines := strings.Count(strings.TrimSpace(out), "\n"); lines != 5 || !strings.Contains(out, "TASK_ID") || !strings.Contains(errOut, fmt.Sprintf("5 of %d", want)) {
		t.Fatalf("list tasks --limit 5 (%d rows):\n%s%s", lines, out, errOut)
	}
	if _, errOut, err := runGorayStreams(c.bin, c.env, "list", "tasks", "--filter", "colour=red", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir)); err == nil || !strings.Contains(errOut, `"colour"`) {
		t.Fatalf("a filter on an unknown field: %v %s", err, errOut)
	}

	// The summary counts by function and state.
	out, _ = goray("summary", "tasks", "--job", job[:8], "--format", "json")
	var sums []state.TaskSummary
	if err := json.Unmarshal([]byte(out), &sums); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	counts := map[string]state.TaskSummary{}
	for _, s := range sums {
		counts[s.Function] = s
	}
	if s := counts["tests.SleepThenNode"]; s.Total != spread || s.States["FINISHED"] != spread {
		t.Errorf("summary of SleepThenNode %+v", s)
	}
	if s := counts["tests.Fail"]; s.States["FAILED"] != 1 || s.States["FINISHED"] != 1 {
		t.Errorf("summary of Fail %+v", s)
	}
	if s := counts["tests.Counter.Inc"]; s.Type != "ACTOR_TASK" || s.Total != 3 {
		t.Errorf("summary of Counter.Inc %+v", s)
	}

	// The timeline: a span per attempt that ran, on a process per node.
	trace := filepath.Join(t.TempDir(), "trace.json")
	goray("timeline", "--job", job, "-o", trace)
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	var events []struct {
		Name string         `json:"name"`
		Ph   string         `json:"ph"`
		Ts   float64        `json:"ts"`
		Dur  *float64       `json:"dur"`
		PID  int            `json:"pid"`
		TID  int            `json:"tid"`
		Args map[string]any `json:"args"`
	}
	if err := json.Unmarshal(data, &events); err != nil {
		t.Fatalf("the timeline is not a JSON array of trace events: %v", err)
	}
	spans, procs := map[string]int{}, map[int]bool{}
	for _, e := range events {
		switch e.Ph {
		case "X":
			if e.Dur == nil || *e.Dur < 0 || e.Ts <= 0 || e.TID == 0 || e.Args["task_id"] == nil {
				t.Fatalf("span %+v", e)
			}
			spans[e.Args["task_id"].(string)]++
			procs[e.PID] = true
		case "M":
		default:
			t.Fatalf("event of phase %q", e.Ph)
		}
	}
	if len(spans) != want || len(procs) != 2 {
		t.Fatalf("%d tasks with spans on %d processes, want %d on 2", len(spans), len(procs), want)
	}
	for id, k := range spans {
		if k != 1 {
			t.Fatalf("task %s has %d spans", id, k)
		}
	}

	// The logs of the worker that ran a task, found from its task events.
	echo := Echo.Remote(ctx, "task-logs")
	if _, err := echo.Get(ctx); err != nil {
		t.Fatal(err)
	}
	var echoed state.Task
	checkFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		out, _ := goray("list", "tasks", "--filter", "job_id="+job, "--filter", "function=tests.Echo", "--format", "json")
		var ts []state.Task
		if err := json.Unmarshal([]byte(out), &ts); err != nil || len(ts) != 1 || ts[0].WorkerID == "" {
			return fmt.Errorf("the Echo task: %v %s", err, out)
		}
		echoed = ts[0]
		return nil
	})
	byTask, errTask := goray("logs", "--task", echoed.TaskID[:10], "--tail", "20")
	byWorker, errWorker := goray("logs", "--worker", echoed.WorkerID, "--tail", "20")
	if !strings.Contains(byTask, "echo: task-logs") || !strings.Contains(byTask, "echo-err: task-logs") || byTask != byWorker || errTask != errWorker {
		t.Fatalf("goray logs --task printed other than the logs of worker %s, which ran it:\n%s%s\n---\n%s%s", echoed.WorkerID[:12], byTask, errTask, byWorker, errWorker)
	}
	if _, errOut, err := runGorayStreams(c.bin, c.env, "logs", "--task", "ffffffff", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir)); err == nil || !strings.Contains(errOut, "no task of that id") {
		t.Fatalf("goray logs --task of an unknown task: %v %s", err, errOut)
	}

	// The same through the sdk.
	mine, err := sdk.ListTasks(ctx, sdk.StateFilter("job_id="+job), sdk.StateFilter("function=tests.Counter.Inc"))
	if err != nil || len(mine) != 3 {
		t.Fatalf("sdk.ListTasks: %d, %v", len(mine), err)
	}
}
