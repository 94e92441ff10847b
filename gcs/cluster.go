package gcs

import (
	"time"

	"github.com/goray/goray/protos"
	"github.com/nats-io/nats.go"
)

// clusterInfo combines the node and job tables; both managers are asked at
// once.
func (s *Server) clusterInfo(*protos.ClusterInfoRequest) (*protos.ClusterInfoReply, error) {
	m := s.managers
	nf := s.system.Root.RequestFuture(m.nodes, &protos.ListNodesRequest{}, s.opts.RequestTimeout)
	jf := s.system.Root.RequestFuture(m.jobs, &protos.ListJobsRequest{}, s.opts.RequestTimeout)
	nodes, nerr := await[*protos.ListNodesReply](m.nodes, nf)
	jobs, jerr := await[*protos.ListJobsReply](m.jobs, jf)
	if nerr != nil {
		return nil, nerr
	}
	if jerr != nil {
		return nil, jerr
	}
	rep := &protos.ClusterInfoReply{
		Nodes:      nodes.GetNodes(),
		Jobs:       jobs.GetJobs(),
		SessionDir: s.opts.SessionDir,
	}
	if e := nodes.GetError(); e != nil {
		rep.Error = e
	} else if e := jobs.GetError(); e != nil {
		rep.Error = e
	}
	return rep, nil
}

// handleReport forwards a raylet's NodeReport to the node manager. Reports
// are fire-and-forget publishes, so a bad one can only be logged.
func (s *Server) handleReport(m *nats.Msg) {
	r, e := decodeRequest[protos.NodeReport](m.Subject, m.Data, checkNodeReport)
	if e != nil {
		s.log.Warn().Str("subject", m.Subject).Str("error", e.GetMessage()).Msg("drop bad NodeReport")
		return
	}
	info := r.GetNode()
	id, _ := protos.UniqueIDFromBytes(info.GetNodeId()) // checked
	// The subject names the reporter; a mismatch means a misrouted or
	// forged report, and trusting either id would corrupt the table.
	if m.Subject != NodeReportSubject(id) {
		s.log.Warn().Str("subject", m.Subject).Str("node", id.String()).Msg("NodeReport subject does not match its node id")
		return
	}
	s.system.Root.Send(s.managers.nodes, nodeReport{info: info})
}

// handleShutdownRequest answers, then shuts the Server down from another
// goroutine: Shutdown drains subscriptions, which waits for this handler.
// ShutdownReply has no error field, so a bad request is refused with error
// headers instead.
func (s *Server) handleShutdownRequest(m *nats.Msg) {
	if _, e := decodeRequest[protos.ShutdownRequest](SubjectClusterShutdown, m.Data, nil); e != nil {
		if m.Reply != "" {
			rep := nats.NewMsg(m.Reply)
			rep.Header.Set(HeaderErrorCode, e.GetCode())
			rep.Header.Set(HeaderErrorMessage, e.GetMessage())
			if err := m.RespondMsg(rep); err != nil {
				s.log.Debug().Err(err).Msg("send shutdown refusal")
			}
		}
		return
	}
	if m.Reply != "" {
		// ShutdownReply has no fields: its encoding is empty.
		if err := m.Respond(nil); err != nil {
			s.log.Debug().Err(err).Msg("answer the shutdown request")
		}
	}
	if s.nc != nil {
		if err := s.nc.Publish(SubjectShutdownEvents, nil); err != nil {
			s.log.Debug().Err(err).Msg("announce shutdown")
		}
	}
	// The reply must leave before the embedded server stops, or the
	// requester sees a closed connection instead of an answer.
	if s.nc != nil {
		if err := s.nc.FlushTimeout(time.Second); err != nil {
			s.log.Debug().Err(err).Msg("flush shutdown reply")
		}
	}
	s.log.Info().Msg("cluster shutdown requested")
	go s.shutdownRequested()
}

func (s *Server) shutdownRequested() {
	s.requestOnce.Do(func() {
		if cb := s.opts.OnShutdownRequest; cb != nil {
			cb()
		}
		s.Shutdown()
	})
}
