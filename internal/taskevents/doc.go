// Package taskevents records, encodes and folds task events: the state
// transitions of each task attempt that owners and executors report, as
// Ray's task events.
//
// A process records events into a Recorder (a bounded buffer: recording is
// an append under a lock, on the task's path) and publishes them about once
// a second as TaskEventBatch messages, off the task's path:
//
//	rec := taskevents.NewRecorder(taskevents.Config{Job: job, Worker: worker, PID: pid})
//	rec.Record(taskevents.Event{TaskID: id, State: protos.TaskState_SUBMITTED, Name: "f", Function: "f"})
//	for _, msg := range rec.Flush(node) { nc.Publish(subject, msg) }
//
// A Table folds batches into one row per task attempt; it does no I/O, so
// the GCS's task manager feeds it from the job's stream and tests feed it
// directly:
//
//	t := taskevents.NewTable(100_000)
//	t.Apply(batch)
//	rows, total := t.List(filters, 100)
package taskevents
