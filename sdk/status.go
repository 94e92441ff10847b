package sdk

import (
	"context"
	"strings"
	"time"

	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/protos"
)

// Status is a snapshot of the cluster: nodes with their resources (total,
// available), pending and infeasible demands, and jobs.
type Status struct {
	Nodes []Node
	Jobs  []Job
}

// Node is a snapshot of a node of the cluster.
type Node struct {
	ID       NodeID
	Hostname string
	// Alive is false once the cluster declared the node dead.
	Alive     bool
	IsHead    bool
	Labels    map[string]string
	Total     map[string]float64
	Available map[string]float64
	// Pending are demands waiting for resources that may free up;
	// Infeasible are those no node of the cluster can ever fit.
	Pending    []Demand
	Infeasible []Demand
	Workers    int
	// StoreCapacity and StoreUsed are the object store's bytes.
	StoreCapacity uint64
	StoreUsed     uint64
	StoreObjects  int
	Started       time.Time
}

// Demand is a resource shape and how many tasks or actors wait for it.
type Demand struct {
	Shape  map[string]float64
	Count  int
	Labels map[string][]string
}

// Job is a snapshot of a job: one driver program run.
type Job struct {
	ID         JobID
	Namespace  string
	Executable string
	DriverPID  int
	DriverHost string
	Started    time.Time
	// Ended is zero while the job runs.
	Ended    time.Time
	Finished bool
}

// ClusterStatus asks the GCS for the cluster's state (what `goray status`
// prints).
func ClusterStatus(ctx context.Context) (*Status, error) {
	st, err := core.ClusterStatus(ctx)
	if err != nil {
		return nil, err
	}
	out := &Status{}
	for _, n := range st.Nodes {
		out.Nodes = append(out.Nodes, nodeFromProto(n))
	}
	for _, j := range st.Jobs {
		out.Jobs = append(out.Jobs, jobFromProto(j))
	}
	return out, nil
}

func nodeFromProto(n *protos.NodeInfo) Node {
	id, _ := protos.UniqueIDFromBytes(n.GetNodeId())
	out := Node{
		ID: NodeID(id), Hostname: n.GetHostname(), Alive: n.GetState() == protos.NodeInfo_ALIVE, IsHead: n.GetIsHead(),
		Labels: n.GetLabels(), Total: n.GetTotal().GetAmounts(), Available: n.GetAvailable().GetAmounts(),
		Workers: int(n.GetNumWorkers()), StoreCapacity: n.GetStoreCapacity(), StoreUsed: n.GetStoreUsed(),
		StoreObjects: int(n.GetStoreObjects()), Started: time.UnixMilli(n.GetStartTimeUnixMs()),
	}
	out.Pending = demands(n.GetPending())
	out.Infeasible = demands(n.GetInfeasible())
	return out
}

func demands(ds []*protos.ResourceDemand) []Demand {
	var out []Demand
	for _, d := range ds {
		dm := Demand{Shape: d.GetShape().GetAmounts(), Count: int(d.GetCount())}
		for k, v := range d.GetLabels() {
			if dm.Labels == nil {
				dm.Labels = map[string][]string{}
			}
			dm.Labels[k] = v.GetValues()
		}
		out = append(out, dm)
	}
	return out
}

func jobFromProto(j *protos.JobInfo) Job {
	id, _ := protos.UniqueIDFromBytes(j.GetJobId())
	out := Job{
		ID: JobID(id), Namespace: j.GetNamespace(), Executable: j.GetExecutable(), DriverPID: int(j.GetDriverPid()),
		DriverHost: j.GetDriverHost(), Started: time.UnixMilli(j.GetStartTimeUnixMs()), Finished: j.GetFinished(),
	}
	if ms := j.GetEndTimeUnixMs(); ms > 0 {
		out.Ended = time.UnixMilli(ms)
	}
	return out
}

func trimEnum(s, prefix string) string { return strings.TrimPrefix(s, prefix) }
