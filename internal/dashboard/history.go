package dashboard

import (
	"context"
	"sync"
	"time"

	"github.com/goray/goray/protos"
)

// The charts' history: a sample of the cluster's main figures every
// SampleInterval, kept in a ring for History (720 samples an hour at 5 s:
// a few hundred kilobytes), so the charts need no Prometheus.

// Sample is one point of the history.
type Sample struct {
	Time time.Time `json:"time"`
	// Tasks counts the running jobs' task attempts by state, as the task
	// manager holds them; TaskRates is attempts per second that reached
	// FINISHED or FAILED since the previous sample.
	Tasks     map[string]int     `json:"tasks"`
	TaskRates map[string]float64 `json:"task_rates"`
	Nodes     []NodeSample       `json:"nodes"`
}

// NodeSample is a node's figures in a Sample.
type NodeSample struct {
	NodeID string `json:"node_id"`
	// CPUs in use by leases, of the node's total.
	CPUUsed  float64 `json:"cpu_used"`
	CPUTotal float64 `json:"cpu_total"`
	// StoreUsed and StoreCapacity are the object store's bytes;
	// SpilledTotal and RestoredTotal count bytes since the node started.
	StoreUsed     uint64 `json:"store_used_bytes"`
	StoreCapacity uint64 `json:"store_capacity_bytes"`
	SpilledTotal  uint64 `json:"spilled_bytes_total"`
	RestoredTotal uint64 `json:"restored_bytes_total"`
	Workers       int    `json:"workers"`
	// CPUBusy is the fraction of the machine's CPU time busy (0..1);
	// MemoryUsed and MemoryTotal the node's memory.
	CPUBusy     float64 `json:"cpu_busy"`
	MemoryUsed  uint64  `json:"memory_used_bytes"`
	MemoryTotal uint64  `json:"memory_total_bytes"`
	// TransferReceived and TransferSent count object bytes moved between
	// nodes since the node started.
	TransferReceived uint64 `json:"transfer_bytes_received"`
	TransferSent     uint64 `json:"transfer_bytes_sent"`
}

// history is a bounded ring of samples.
type history struct {
	mu      sync.Mutex
	samples []Sample
	next    int
	full    bool
	// ended counts FINISHED and FAILED attempts per job at the previous
	// sample, for the rates.
	ended map[string]map[string]int
	prev  time.Time
}

func newHistory(n int) *history {
	return &history{samples: make([]Sample, max(n, 1)), ended: map[string]map[string]int{}}
}

func (h *history) add(s Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples[h.next] = s
	h.next = (h.next + 1) % len(h.samples)
	if h.next == 0 {
		h.full = true
	}
}

// all returns the samples, oldest first.
func (h *history) all() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.full {
		return append([]Sample{}, h.samples[:h.next]...)
	}
	return append(append([]Sample{}, h.samples[h.next:]...), h.samples[:h.next]...)
}

// last returns the newest sample (zero before the first).
func (h *history) last() Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.next == 0 && !h.full {
		return Sample{}
	}
	return h.samples[(h.next-1+len(h.samples))%len(h.samples)]
}

// sample takes a sample every SampleInterval until ctx ends.
func (s *Server) sample(ctx context.Context) {
	t := time.NewTicker(s.opts.SampleInterval)
	defer t.Stop()
	for {
		s.takeSample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) takeSample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	now := time.Now()
	smp := Sample{Time: now, Tasks: map[string]int{}, TaskRates: map[string]float64{}, Nodes: []NodeSample{}}
	nodes, err := s.opts.State.GCS.ListNodes(ctx)
	if err != nil {
		return
	}
	for _, n := range nodes {
		if n.GetState() != protos.NodeInfo_ALIVE {
			continue
		}
		st := n.GetStoreStats()
		smp.Nodes = append(smp.Nodes, NodeSample{NodeID: protos.MustUniqueID(n.GetNodeId()).String(),
			CPUTotal: n.GetTotal().GetAmounts()["CPU"], CPUUsed: n.GetTotal().GetAmounts()["CPU"] - n.GetAvailable().GetAmounts()["CPU"],
			StoreUsed: n.GetStoreUsed(), StoreCapacity: n.GetStoreCapacity(), SpilledTotal: st.GetSpilledBytesTotal(),
			RestoredTotal: st.GetRestoredBytesTotal(), Workers: int(n.GetNumWorkers()),
			CPUBusy: n.GetCpuBusy(), MemoryUsed: n.GetMemoryUsed(), MemoryTotal: n.GetMemoryTotal(),
			TransferReceived: n.GetTransferBytesReceived(), TransferSent: n.GetTransferBytesSent()})
	}
	jobs, err := s.opts.State.GCS.ListJobs(ctx)
	if err != nil {
		return
	}
	ended := map[string]map[string]int{}
	for _, j := range jobs {
		if j.GetFinished() {
			continue
		}
		id := protos.MustUniqueID(j.GetJobId())
		rep, err := s.opts.State.GCS.SummarizeTasks(ctx, id)
		if err != nil {
			continue
		}
		byState := map[string]int{}
		for _, sum := range rep.GetSummaries() {
			for st, n := range sum.GetStates() {
				byState[st] += int(n)
			}
		}
		for st, n := range byState {
			smp.Tasks[st] += n
		}
		ended[id.String()] = map[string]int{"FINISHED": byState["FINISHED"], "FAILED": byState["FAILED"]}
	}
	s.history.mu.Lock()
	if !s.history.prev.IsZero() {
		dt := now.Sub(s.history.prev).Seconds()
		for job, counts := range ended {
			for st, n := range counts {
				// A job's table may evict attempts: a fall is no rate.
				if d := n - s.history.ended[job][st]; d > 0 && dt > 0 {
					smp.TaskRates[st] += float64(d) / dt
				}
			}
		}
	}
	s.history.ended, s.history.prev = ended, now
	s.history.mu.Unlock()
	s.history.add(smp)
}
