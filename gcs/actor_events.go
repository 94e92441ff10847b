package gcs

import (
	"github.com/goray/goray/protos"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// handleJobEvent tells the actor manager when a job finishes, so it kills
// the job's non-detached actors (and when it registers again). The job manager publishes the event on
// the GCS's own connection, so it arrives here unless NATS drops it (a
// restarted actor manager also asks the job manager for finished jobs).
// handleNodeEvent tells the placement group manager of dead nodes.
func (s *Server) handleNodeEvent(m *nats.Msg) {
	info := &protos.NodeInfo{}
	if err := proto.Unmarshal(m.Data, info); err != nil || info.GetState() != protos.NodeInfo_DEAD {
		return
	}
	if id, err := protos.UniqueIDFromBytes(info.GetNodeId()); err == nil {
		s.system.Root.Send(s.managers.pgs, pgNodeDead{node: id})
	}
}

func (s *Server) handleJobEvent(m *nats.Msg) {
	job := &protos.JobInfo{}
	if err := proto.Unmarshal(m.Data, job); err != nil {
		s.log.Warn().Err(err).Str("subject", m.Subject).Msg("cannot decode JobInfo")
		return
	}
	id, err := protos.UniqueIDFromBytes(job.GetJobId())
	if err != nil || id.IsZero() {
		s.log.Warn().Str("subject", m.Subject).Msg("job event without a valid job id")
		return
	}
	s.system.Root.Send(s.managers.actors, jobEvent{job: id, finished: job.GetFinished()})
	if job.GetFinished() {
		s.system.Root.Send(s.managers.pgs, pgJobFinished{job: id})
	}
}
