package gcs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/taskevents"
	"github.com/goray/goray/protos"
)

// publishEvents flushes rec into job's stream as a worker does.
func publishEvents(t *testing.T, c *Client, job protos.JobID, rec *taskevents.Recorder) {
	t.Helper()
	for _, m := range rec.Flush(protos.UniqueID{}) {
		if err := c.NATS().Publish(TaskEventsSubject(job), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestTaskManager: a worker's events reach the job's stream, which the
// job's registration created, and the task manager lists and summarizes
// them, catching up with what arrives later.
func TestTaskManager(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{})
	c := dial(t, srv.ClientURL())
	worker := dialRole(t, srv.ClientURL(), auth.RoleWorker)
	ops := dialRole(t, srv.ClientURL(), auth.RoleOps)
	ctx := ctxT(t)
	job := newJob("driver")
	must(t, c.RegisterJob(ctx, job))
	jobID := protos.MustUniqueID(job.GetJobId())
	// The stream is created as the job registers, after its reply.
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		_, err := ops.ListTasks(ctx, &protos.ListTasksRequest{JobId: jobID.Bytes()})
		return err
	})
	rec := taskevents.NewRecorder(taskevents.Config{Job: jobID, Worker: protos.NewUniqueID(), PID: 7})
	ids := make([]protos.UniqueID, 3)
	for i := range ids {
		ids[i] = protos.NewUniqueID()
		rec.Record(taskevents.Event{TaskID: ids[i], State: protos.TaskState_SUBMITTED, Function: "square", Name: "square"})
	}
	rec.Record(taskevents.Event{TaskID: ids[0], State: protos.TaskState_FINISHED})
	publishEvents(t, worker, jobID, rec)
	rec.Record(taskevents.Event{TaskID: ids[1], State: protos.TaskState_FAILED, ErrorKind: protos.ErrorKind_ERROR_KIND_TASK, ErrorMsg: "boom"})
	publishEvents(t, worker, jobID, rec)
	var rep *protos.ListTasksReply
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		var err error
		rep, err = ops.ListTasks(ctx, &protos.ListTasksRequest{Filters: []*protos.TaskFilter{{Field: "state", Value: "failed"}}})
		if err != nil {
			return err
		}
		if rep.GetTotal() != 1 {
			return fmt.Errorf("%d failed tasks, want 1", rep.GetTotal())
		}
		return nil
	})
	if f := rep.GetTasks()[0]; f.GetErrorType() != "TASK" || f.GetErrorMessage() != "boom" || f.GetFunction() != "square" || string(f.GetJobId()) != string(jobID.Bytes()) {
		t.Fatalf("failed task %v", f)
	}
	sum, err := ops.SummarizeTasks(ctx, jobID)
	must(t, err)
	if len(sum.GetSummaries()) != 1 || sum.GetTotal() != 3 {
		t.Fatalf("summary %v", sum)
	}
	if st := sum.GetSummaries()[0].GetStates(); st["FINISHED"] != 1 || st["FAILED"] != 1 || st["SUBMITTED"] != 1 {
		t.Fatalf("summary states %v", st)
	}
	if _, err := ops.ListTasks(ctx, &protos.ListTasksRequest{Filters: []*protos.TaskFilter{{Field: "colour", Value: "red"}}}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("an unknown filter field: %v", err)
	}
	if _, err := ops.ListTasks(ctx, &protos.ListTasksRequest{JobId: protos.NewUniqueID().Bytes()}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an unknown job: %v", err)
	}
}

// TestTaskManagerBounds: a job's stream drops its oldest batches past its
// bound, and the listing counts them; past TaskEventsJobs jobs, the oldest
// job's stream goes.
func TestTaskManagerBounds(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{TaskEventsMaxBytes: 64 << 10, TaskEventsJobs: 2})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	var jobs []protos.JobID
	for i := range 3 {
		job := newJob(fmt.Sprint("driver", i))
		job.StartTimeUnixMs = int64(1000 + i)
		must(t, c.RegisterJob(ctx, job))
		jobs = append(jobs, protos.MustUniqueID(job.GetJobId()))
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if _, err := c.ListTasks(ctx, &protos.ListTasksRequest{JobId: jobs[2].Bytes()}); err != nil {
			return err
		}
		if _, err := c.ListTasks(ctx, &protos.ListTasksRequest{JobId: jobs[0].Bytes()}); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("the oldest job's stream: %v, want it removed", err)
		}
		return nil
	})
	rec := taskevents.NewRecorder(taskevents.Config{Job: jobs[2], Worker: protos.NewUniqueID(), BatchEvents: 500})
	const n = 5000 // ~30 bytes each: more than twice the stream's bound
	for range n {
		rec.Record(taskevents.Event{TaskID: protos.NewUniqueID(), State: protos.TaskState_SUBMITTED, Function: "f"})
	}
	publishEvents(t, c, jobs[2], rec)
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		rep, err := c.ListTasks(ctx, &protos.ListTasksRequest{JobId: jobs[2].Bytes(), Limit: 10})
		if err != nil {
			return err
		}
		if rep.GetTotal() == 0 || rep.GetTotal()+rep.GetDroppedEvents() != n || rep.GetDroppedEvents() == 0 || len(rep.GetTasks()) != 10 {
			return fmt.Errorf("%d tasks kept, %d events dropped, %d listed; want %d in all, some dropped, 10 listed", rep.GetTotal(), rep.GetDroppedEvents(), len(rep.GetTasks()), n)
		}
		return nil
	})
}
