package gcs

import (
	"strings"
	"time"

	"github.com/goray/goray/protos"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
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
	r := &protos.NodeReport{}
	if err := proto.Unmarshal(m.Data, r); err != nil {
		s.log.Warn().Err(err).Str("subject", m.Subject).Msg("cannot decode NodeReport")
		return
	}
	info := r.GetNode()
	id, err := protos.UniqueIDFromBytes(info.GetNodeId())
	if err != nil {
		s.log.Warn().Err(err).Str("subject", m.Subject).Msg("NodeReport without a valid node id")
		return
	}
	// The subject names the reporter; a mismatch means a misrouted or
	// forged report, and trusting either id would corrupt the table.
	if tok := strings.Split(m.Subject, "."); len(tok) != 4 || tok[2] != id.String() {
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
	req := &protos.ShutdownRequest{}
	if err := proto.Unmarshal(m.Data, req); err != nil {
		e := decodeError(SubjectClusterShutdown, req, err)
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
	s.respond(m, &protos.ShutdownReply{})
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
