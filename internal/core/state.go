package core

import (
	"context"

	"github.com/goray/goray/internal/memreport"
	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/state"
)

// Status is a snapshot of the cluster: nodes with their resources (total,
// available), pending and infeasible demands, and jobs.
type Status struct {
	Nodes []*protos.NodeInfo
	Jobs  []*protos.JobInfo
}

// ClusterStatus asks the GCS for the cluster's state (what `goray status`
// prints).
func ClusterStatus(ctx context.Context) (*Status, error) {
	s, err := currentSession()
	if err != nil {
		return nil, err
	}
	info, err := s.gcs.ClusterInfo(ctx)
	if err != nil {
		return nil, err
	}
	st := &Status{Nodes: info.GetNodes(), Jobs: info.GetJobs()}
	// The GCS hears from raylets about once a second; the local node's
	// own answer is fresher.
	var local protos.GetNodeInfoReply
	if err := s.cw.node().raylet.Call(ctx, protos.Method_GET_NODE_INFO, &protos.GetNodeInfoRequest{}, &local); err == nil {
		for i, n := range st.Nodes {
			if string(n.GetNodeId()) == string(local.GetNode().GetNodeId()) {
				st.Nodes[i] = local.GetNode()
			}
		}
	}
	return st, nil
}

// currentSession returns the driver's session, for the state API.
func currentSession() (*session, error) {
	sessMu.Lock()
	defer sessMu.Unlock()
	if sess == nil {
		return nil, ErrNotInitialized
	}
	return sess, nil
}

// MemorySummary asks every alive node of the session's cluster for its
// objects and store (the local node through this process's raylet
// connection, the others by dialling their raylets) and joins the answers.
// Nodes that do not answer are listed in the report's Errors; when none
// answers it returns the report and an error.
func MemorySummary(ctx context.Context) (*state.MemoryReport, error) {
	s, err := currentSession()
	if err != nil {
		return nil, err
	}
	info, err := s.gcs.ClusterInfo(ctx)
	if err != nil {
		return nil, err
	}
	return memreport.Fetch(ctx, info.GetNodes(), s.cw.log, s.cw.wireAuth, s.cw.node().id.Bytes(), s.cw.node().raylet)
}

// StateSource is where this process reads the state API from: its GCS
// connection, and its credentials for the raylets.
func StateSource() (stateapi.Source, error) {
	cw := Current()
	if cw == nil {
		return stateapi.Source{}, ErrNotInitialized
	}
	c, err := cw.GCS()
	if err != nil {
		return stateapi.Source{}, err
	}
	return stateapi.Source{GCS: c, Auth: cw.wireAuth, Log: cw.log}, nil
}
