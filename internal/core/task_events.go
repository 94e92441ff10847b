package core

import (
	"os"
	"time"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/taskevents"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

// Task events: this process reports the transitions of the tasks it owns
// (submitted, finished, failed) and of those it runs (running) to its
// job's task event stream, as Ray's owners and executors do. Recording is
// an append to a bounded buffer; a goroutine publishes the buffer every
// taskEventsInterval, and close publishes what is left.

// taskEventsInterval is Ray's task_events_report_interval_ms.
var taskEventsInterval = time.Second

// workerEventBudget bounds the events a worker process buffers between two
// reports (a driver's bound is taskevents.DefaultBufferEvents). A job may
// run dozens of workers, all submitting (nested tasks, actor calls): at
// 10,000 events each per second their streams took 5% of
// n_n_actor_calls_async on two cores, at 2,000 it is within the noise.
const workerEventBudget = 2_000

// startTaskEvents turns task events on unless GORAY_TASK_EVENTS is 0.
func (cw *Worker) startTaskEvents() {
	if os.Getenv(raylet.EnvTaskEvents) == "0" {
		return
	}
	cfg := taskevents.Config{Job: cw.jobID, Worker: cw.workerID, PID: int32(os.Getpid())}
	if cw.isWorker {
		cfg.BufferEvents = workerEventBudget
	}
	cw.events = taskevents.NewRecorder(cfg)
	cw.eventsStop = make(chan struct{})
	cw.eventsDone = make(chan struct{})
	go func() {
		defer close(cw.eventsDone)
		t := time.NewTicker(taskEventsInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				cw.publishTaskEvents()
			case <-cw.eventsStop:
				cw.publishTaskEvents()
				return
			}
		}
	}()
}

// stopTaskEvents publishes what is buffered and stops the publisher; close
// calls it while the GCS connection is still open.
func (cw *Worker) stopTaskEvents() {
	if cw.events == nil {
		return
	}
	close(cw.eventsStop)
	<-cw.eventsDone
	cw.gcsMu.Lock()
	c := cw.gcs
	cw.gcsMu.Unlock()
	if c != nil {
		_ = c.NATS().FlushTimeout(time.Second)
	}
}

func (cw *Worker) publishTaskEvents() {
	cw.exec.reportRunning()
	msgs := cw.events.Flush(cw.node().id)
	if len(msgs) == 0 {
		return
	}
	// A worker dials the GCS on first use; one that never runs a task
	// never dials it for this.
	c, err := cw.GCS()
	if err != nil {
		cw.log.Debug().Err(err).Int("batches", len(msgs)).Msg("task events lost: no GCS connection")
		return
	}
	subject := gcs.TaskEventsSubject(cw.jobID)
	for _, m := range msgs {
		if err := c.NATS().Publish(subject, m); err != nil {
			cw.log.Debug().Err(err).Msg("task events lost")
			return
		}
	}
}

// taskSubmitted records a normal task's attempt entering state (SUBMITTED,
// or PENDING_ARGS while its arguments are awaited), with what the task
// is; the Handle lets taskAttemptEnded fold the attempt's end into it.
func (cw *Worker) taskSubmitted(spec *protos.TaskSpec, state protos.TaskState) taskevents.Handle {
	if cw.events == nil {
		return taskevents.Handle{}
	}
	return cw.events.Record(taskevents.Event{TaskID: eventID(spec.GetTaskId()), Attempt: spec.GetAttempt(), State: state,
		Type: protos.TaskType_NORMAL_TASK, Name: spec.GetName(), Function: spec.GetFunction(), Parent: eventID(spec.GetParentTaskId())})
}

// actorCallSubmitted is taskSubmitted for an actor call.
func (cw *Worker) actorCallSubmitted(req *protos.ActorCallRequest, fn string, parent protos.TaskID, state protos.TaskState) taskevents.Handle {
	if cw.events == nil {
		return taskevents.Handle{}
	}
	return cw.events.Record(taskevents.Event{TaskID: eventID(req.GetTaskId()), Attempt: req.GetAttempt(), State: state,
		Type: protos.TaskType_ACTOR_TASK, Name: fn, Function: fn, Actor: eventID(req.GetActorId()), Parent: parent})
}

// taskState records a transition that carries no description.
func (cw *Worker) taskState(id []byte, attempt int32, state protos.TaskState) {
	if cw.events == nil {
		return
	}
	cw.events.Record(taskevents.Event{TaskID: eventID(id), Attempt: attempt, State: state})
}

// taskAttemptEnded records an attempt's end: FINISHED, or FAILED with terr.
// where is the process that ran it (nil: none did, or not known); h is
// the attempt's first event.
func (cw *Worker) taskAttemptEnded(h taskevents.Handle, id []byte, attempt int32, runMicros uint64, where *protos.Address, terr *TaskError) {
	if cw.events == nil {
		return
	}
	e := taskevents.Event{TaskID: eventID(id), Attempt: attempt, State: protos.TaskState_FINISHED, RunMicros: runMicros, Where: where}
	if terr != nil {
		e.State, e.ErrorKind, e.ErrorMsg = protos.TaskState_FAILED, terr.Kind, terr.Message
		if terr.Stack != "" {
			// A panic's stack, for `goray get task` and the dashboard.
			e.ErrorMsg += "\n\n" + terr.Stack
		}
	}
	cw.events.End(h, e)
}

// reportRunning records RUNNING for the tasks and actor calls this
// process has been running since before the last flush. Those that start
// and end between two flushes are left to their owner's end event (which
// says where and how long they ran), so running a short task records
// nothing here.
func (e *executor) reportRunning() {
	rec := e.cw.events
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, rt := range e.running {
		if rt.reported {
			continue
		}
		if started := rt.started.Load(); started != 0 {
			rec.Record(taskevents.Event{TaskID: id, Attempt: rt.attempt, State: protos.TaskState_RUNNING, Time: started})
			rt.reported = true
		}
	}
}

// eventID reads an id of a message this process built or checked; one of
// another length reads as zero rather than failing a task over its event.
func eventID(b []byte) (id protos.UniqueID) {
	if len(b) == protos.UniqueIDSize {
		copy(id[:], b)
	}
	return id
}
