package raylet

import (
	"context"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Jobs whose driver runs on another node. The first lease request for such
// a job (spilled back here, or an actor the GCS places here) finds no
// jobState: the raylet asks the GCS for the job's record (its binaries,
// runtime env and settings, Config.LookupJob) and holds the job's
// requests until the answer comes. The job ends here when the GCS says it
// finished (JobFinished); the leases its driver holds end sooner, with the
// driver's connection.

// jobLookupTimeout bounds one GCS lookup.
const jobLookupTimeout = 10 * time.Second

// awaitJob parks lr until the job is known, starting the lookup for the
// job's first request.
func (s *state) awaitJob(id protos.JobID, lr *leaseRequest) {
	if s.jobWaits == nil {
		s.jobWaits = map[protos.JobID][]*leaseRequest{}
	}
	first := len(s.jobWaits[id]) == 0
	s.jobWaits[id] = append(s.jobWaits[id], lr)
	if !first {
		return
	}
	lookup, root, self := s.r.cfg.LookupJob, s.r.system.Root, s.r.pid
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), jobLookupTimeout)
		defer cancel()
		info, err := lookup(ctx, id)
		root.Send(self, jobLoaded{id: id, info: info, err: err})
	}()
}

// jobLoaded registers a job learned from the GCS and queues the requests
// that waited for it, or fails them.
func (s *state) jobLoaded(id protos.JobID, info *protos.JobInfo, err error) {
	waits := s.jobWaits[id]
	delete(s.jobWaits, id)
	if err == nil && len(info.GetBinaries()) == 0 && info.GetBinaryDigest() == "" {
		err = wire.NewError("unknown_job", "the GCS's record of job %s names no binary", id.Short())
	}
	if err != nil {
		s.r.cfg.Logger.Warn().Err(err).Str("job", id.Short()).Msg("cannot learn a job from the GCS")
		for _, lr := range waits {
			_ = lr.conn.ReplyError(lr.req, wire.NewError("unknown_job", "lease request for job %s, which this node could not learn from the GCS: %v", id.Short(), err))
		}
		return
	}
	j, ok := s.jobs[id]
	if !ok {
		j = &jobState{id: id, workers: map[protos.WorkerID]*workerProc{}, remote: true}
		j.executable, j.env, j.dir, j.digest = info.GetExecutable(), info.GetEnv(), info.GetWorkingDir(), info.GetFunctionDigest()
		j.binaryDigest = info.GetBinaryDigest()
		j.setRuntime(info.GetBinaries(), info.GetRuntimeEnv(), "")
		if info.GetFinished() {
			j.driverGone = true
		}
		s.jobs[id] = j
		s.r.cfg.Logger.Debug().Str("job", id.Short()).Str("executable", j.executable).Str("driver_host", info.GetDriverHost()).Msg("learned a job from the GCS")
	}
	for _, lr := range waits {
		if isClosed(lr.conn) {
			continue
		}
		if err := refusedAfterDriver(j, lr); err != nil {
			_ = lr.conn.ReplyError(lr.req, err)
			continue
		}
		s.queue = append(s.queue, lr)
	}
}

// JobFinished tells the raylet that a job's driver finished: if the driver
// ran on another node, the job's workers here stop as if a local driver
// had left (its detached actors live on).
func (r *Raylet) JobFinished(id protos.JobID) {
	if r.pid != nil {
		r.system.Root.Send(r.pid, jobFinished{id: id})
	}
}
