package memreport

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/nodecall"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/state"
)

// FetchMemoryReport asks the raylets of the alive nodes among nodes (from
// the GCS's ClusterInfo) for their objects and stores, dialling each one,
// and joins the answers. Nodes that do not answer are listed in the
// report's Errors; when none answers it returns the report and an error.
// a authenticates the connections to the raylets (*auth.Handshaker).
func FetchMemoryReport(ctx context.Context, nodes []*protos.NodeInfo, log zerolog.Logger, a wire.Authenticator) (*state.MemoryReport, error) {
	return Fetch(ctx, nodes, log, a, nil, nil)
}

// Fetch asks every alive node, in parallel; local, when set,
// is a connection to the raylet of node localID.
func Fetch(ctx context.Context, nodes []*protos.NodeInfo, log zerolog.Logger, a wire.Authenticator, localID []byte, local *wire.Conn) (*state.MemoryReport, error) {
	answers := nodecall.Call(ctx, nodes, log, a, protos.Method_MEMORY_SUMMARY, &protos.MemorySummaryRequest{},
		func() *protos.MemorySummaryReply { return &protos.MemorySummaryReply{} }, localID, local)
	alive := make([]*protos.NodeInfo, len(answers))
	replies := make([]*protos.MemorySummaryReply, len(answers))
	errs := make([]error, len(answers))
	for i, ans := range answers {
		alive[i], errs[i] = ans.Node, ans.Err
		if ans.Err == nil {
			replies[i] = ans.Reply
			if len(ans.Reply.GetNodeId()) == 0 {
				ans.Reply.NodeId = ans.Node.GetNodeId()
			}
		}
	}

	var got []*protos.MemorySummaryReply
	var nodeErrs []state.NodeError
	byID := map[string]*protos.NodeInfo{}
	for i, n := range alive {
		byID[idHex(n.GetNodeId())] = n
		if errs[i] != nil {
			nodeErrs = append(nodeErrs, state.NodeError{
				NodeID:         idHex(n.GetNodeId()),
				Hostname:       n.GetHostname(),
				RayletEndpoint: n.GetRayletEndpoint(),
				Error:          errs[i].Error(),
			})
			continue
		}
		got = append(got, replies[i])
	}
	r := buildMemoryReport(got, nodeErrs...)
	for i := range r.Nodes {
		if n := byID[r.Nodes[i].NodeID]; n != nil {
			r.Nodes[i].Hostname, r.Nodes[i].IsHead, r.Nodes[i].RayletEndpoint = n.GetHostname(), n.GetIsHead(), n.GetRayletEndpoint()
		}
	}
	if len(got) == 0 && len(nodeErrs) > 0 {
		return r, fmt.Errorf("no raylet answered: node %s: %s", shortHex(nodeErrs[0].NodeID, 8), nodeErrs[0].Error)
	}
	return r, nil
}

// objAcc gathers what the replies say about one object.
type objAcc struct {
	id        protos.ObjectID
	locations []state.ObjectLocation
	// storeOwner is the owner worker id a store recorded.
	storeOwner []byte
	refs       []*protos.RefInfo
	holders    []state.ProcessIdent
}

// buildMemoryReport joins the raylets' answers (nodes that did not answer
// in errs) into a report. It is a pure function of its input.
func buildMemoryReport(replies []*protos.MemorySummaryReply, errs ...state.NodeError) *state.MemoryReport {
	r := &state.MemoryReport{Nodes: []state.NodeMemory{}, Objects: []state.ObjectMemory{}, Errors: errs}
	objs := map[protos.ObjectID]*objAcc{}
	acc := func(b []byte) *objAcc {
		id, _ := protos.ObjectIDFromBytes(b)
		a := objs[id]
		if a == nil {
			a = &objAcc{id: id}
			objs[id] = a
		}
		return a
	}
	// Every process that sent its table, by worker id: owners' pids and
	// nodes come from here when a ref carries only the worker id.
	procs := map[string]state.ProcessIdent{}
	seenProc := map[string]bool{}
	for _, rep := range replies {
		node := idHex(rep.GetNodeId())
		r.Nodes = append(r.Nodes, state.NodeMemory{NodeID: node, Store: storeUsage(rep.GetStats()), Processes: len(rep.GetProcesses())})
		for _, o := range rep.GetObjects() {
			a := acc(o.GetObjectId())
			a.locations = append(a.locations, state.ObjectLocation{
				NodeID:    node,
				Size:      o.GetSize(),
				InMemory:  o.GetInMemory(),
				Spilled:   o.GetSpilled(),
				SpillPath: o.GetSpillPath(),
				Pins:      int(o.GetPins()),
				Sealed:    o.GetSealed(),
			})
			if len(a.storeOwner) == 0 {
				a.storeOwner = o.GetOwnerWorkerId()
			}
		}
		for _, p := range rep.GetProcesses() {
			who := processIdent(p.GetProcess())
			if who.NodeID == "" {
				who.NodeID = node
			}
			// A process talks to one raylet; should two report it, its
			// table counts once.
			if who.WorkerID != "" {
				if seenProc[who.WorkerID] {
					continue
				}
				seenProc[who.WorkerID] = true
				procs[who.WorkerID] = who
			}
			for _, ref := range p.GetRefs() {
				a := acc(ref.GetObjectId())
				a.refs = append(a.refs, ref)
				a.holders = append(a.holders, who)
			}
		}
	}
	for _, a := range objs {
		r.Objects = append(r.Objects, buildObject(a, procs))
	}
	r.SortObjects(state.SortBySize)
	return r
}

func buildObject(a *objAcc, procs map[string]state.ProcessIdent) state.ObjectMemory {
	o := state.ObjectMemory{ID: a.id.String(), Locations: a.locations, RefTypes: []state.RefReason{}}
	slices.SortFunc(o.Locations, func(x, y state.ObjectLocation) int { return cmp.Compare(x.NodeID, y.NodeID) })

	// The owner: the process whose entry says it owns the object, else
	// the owner address the refs carry, else the worker the store noted.
	var ownerRef *protos.RefInfo
	for i, ref := range a.refs {
		if ref.GetOwned() {
			ownerRef, o.Owner = ref, a.holders[i]
			break
		}
	}
	if ownerRef == nil {
		for _, ref := range a.refs {
			if ref.GetOwner() != nil {
				o.Owner = processIdent(ref.GetOwner())
				break
			}
		}
		if o.Owner.WorkerID == "" && len(a.storeOwner) > 0 {
			o.Owner.WorkerID = idHex(a.storeOwner)
		}
		if p, ok := procs[o.Owner.WorkerID]; ok && o.Owner.WorkerID != "" {
			o.Owner = fillIdent(o.Owner, p)
		}
	}

	// Size, state, where.
	inStoreNode := ""
	for _, ref := range a.refs {
		o.Size = max(o.Size, ref.GetSize())
		if ref.GetInStore() && inStoreNode == "" {
			inStoreNode = idHex(ref.GetNodeId())
		}
	}
	sealed := false
	for _, l := range a.locations {
		o.Size = max(o.Size, l.Size)
		o.Pins += l.Pins
		o.InMemory = o.InMemory || l.InMemory
		o.Spilled = o.Spilled || l.Spilled
		sealed = sealed || l.Sealed
	}
	switch {
	case ownerRef != nil:
		o.State = ownerRef.GetState()
	case len(a.refs) > 0:
		o.State = a.refs[0].GetState()
	case sealed:
		o.State = "ready"
	default:
		o.State = "pending"
	}
	o.Inline = len(a.locations) == 0 && inStoreNode == "" && o.State != "pending"
	o.Where = whereString(o, inStoreNode)

	// Holders and the reasons the object is alive.
	counts := map[state.RefType]int{}
	pids := map[state.RefType][]int32{}
	add := func(t state.RefType, n int, pid int32) {
		counts[t] += n
		if pid != 0 && !slices.Contains(pids[t], pid) {
			pids[t] = append(pids[t], pid)
		}
	}
	ownerBorrowers, borrowingProcs := 0, 0
	for i, ref := range a.refs {
		who := a.holders[i]
		owner := ref.GetOwned()
		pr := state.ProcessRef{
			Process:       who,
			Owner:         owner,
			LocalRefs:     int(ref.GetLocalRefs()),
			SubmittedRefs: int(ref.GetSubmittedRefs()),
			ContainedRefs: int(ref.GetContainedRefs()),
			Borrowers:     int(ref.GetBorrowers()),
			Pinned:        ref.GetPinned(),
			Escaped:       ref.GetEscaped(),
		}
		o.Holders = append(o.Holders, pr)
		if pr.LocalRefs > 0 {
			add(state.LocalReference, pr.LocalRefs, who.PID)
		}
		if pr.SubmittedRefs > 0 {
			add(state.UsedByPendingTask, pr.SubmittedRefs, who.PID)
		}
		if pr.ContainedRefs > 0 {
			add(state.CapturedInObject, pr.ContainedRefs, who.PID)
		}
		if pr.Pinned {
			add(state.PinnedInMemory, 0, who.PID)
		}
		if pr.Escaped {
			add(state.Escaped, 1, who.PID)
		}
		if owner {
			ownerBorrowers += pr.Borrowers
		} else if pr.LocalRefs > 0 || pr.SubmittedRefs > 0 || pr.ContainedRefs > 0 || pr.Pinned {
			borrowingProcs++
			add(state.Borrowed, 0, who.PID)
		}
	}
	// The owner counts its registered borrowers; the borrowers' own
	// tables name them. Either may be missing (a borrower on a node that
	// did not answer, a registration still in flight).
	if n := max(ownerBorrowers, borrowingProcs); n > 0 {
		counts[state.Borrowed] = n
	}
	// Store pins include the views processes hold; a pin without a
	// holder here is one taken by a process whose table is missing.
	if n := max(o.Pins, len(pids[state.PinnedInMemory])); n > 0 {
		counts[state.PinnedInMemory] = n
	}
	for _, t := range state.RefTypeOrder {
		if counts[t] == 0 {
			continue
		}
		p := pids[t]
		slices.Sort(p)
		o.RefTypes = append(o.RefTypes, state.RefReason{Type: t, Count: counts[t], PIDs: p})
	}
	slices.SortStableFunc(o.Holders, func(x, y state.ProcessRef) int {
		if x.Owner != y.Owner {
			if x.Owner {
				return -1
			}
			return 1
		}
		return cmp.Compare(x.Process.PID, y.Process.PID)
	})
	return o
}

// whereString says where an object's bytes are.
func whereString(o state.ObjectMemory, inStoreNode string) string {
	if len(o.Locations) == 0 {
		switch {
		case o.State == "pending":
			return "pending"
		case inStoreNode != "":
			// The owner says it is in a store that did not list it (a node
			// that did not answer, or a copy freed meanwhile).
			return shortHex(inStoreNode, 8) + " shared memory (not reported)"
		case o.State == "failed":
			return "inline in owner (error)"
		}
		return "inline in owner"
	}
	var parts []string
	for _, l := range o.Locations {
		var s string
		switch {
		case !l.Sealed:
			s = "being created"
		case l.InMemory && l.Spilled:
			s = "shared memory, spilled: " + l.SpillPath
		case l.Spilled:
			s = "spilled: " + l.SpillPath
		default:
			s = "shared memory"
		}
		parts = append(parts, shortHex(l.NodeID, 8)+" "+s)
	}
	return strings.Join(parts, "; ")
}

func storeUsage(st *protos.StoreStats) state.StoreUsage {
	u := state.StoreUsage{
		CapacityBytes:        st.GetCapacity(),
		UsedBytes:            st.GetUsed(),
		PinnedBytes:          st.GetPinned(),
		LargestFreeBytes:     st.GetLargestFree(),
		NumObjects:           st.GetNumObjects(),
		SpilledObjects:       st.GetNumSpilled(),
		SpilledBytes:         st.GetSpilledBytes(),
		SpillFiles:           st.GetSpillFiles(),
		SpillDir:             st.GetSpillDir(),
		SpilledObjectsTotal:  st.GetSpilledObjectsTotal(),
		SpilledBytesTotal:    st.GetSpilledBytesTotal(),
		RestoredObjectsTotal: st.GetRestoredObjectsTotal(),
		RestoredBytesTotal:   st.GetRestoredBytesTotal(),
		SpillTime:            time.Duration(st.GetSpillNanos()),
		RestoreTime:          time.Duration(st.GetRestoreNanos()),
	}
	u.SpillBytesPerSec = throughput(u.SpilledBytesTotal, u.SpillTime)
	u.RestoreBytesPerSec = throughput(u.RestoredBytesTotal, u.RestoreTime)
	return u
}

func throughput(bytes uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / d.Seconds()
}

func processIdent(a *protos.Address) state.ProcessIdent {
	if a == nil {
		return state.ProcessIdent{}
	}
	return state.ProcessIdent{WorkerID: idHex(a.GetWorkerId()), PID: a.GetPid(), NodeID: idHex(a.GetNodeId()), Endpoint: a.GetEndpoint()}
}

// fillIdent completes the blanks of a from b.
func fillIdent(a, b state.ProcessIdent) state.ProcessIdent {
	if a.PID == 0 {
		a.PID = b.PID
	}
	if a.NodeID == "" {
		a.NodeID = b.NodeID
	}
	if a.Endpoint == "" {
		a.Endpoint = b.Endpoint
	}
	return a
}

func idHex(b []byte) string { return hex.EncodeToString(b) }

// shortHex cuts a hex id to n digits.
func shortHex(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
