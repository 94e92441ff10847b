// Package state holds snapshots of a goray cluster's state as goray's own Go
// types, shared by the sdk and the goray CLI: the memory report
// (sdk.MemorySummary, goray memory) and the state API's nodes, jobs,
// actors, placement groups and workers (sdk.ListActors and the others,
// goray list, get and summary), with their filters and how they print.
package state

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// MemoryReport is a snapshot of the cluster's objects and object stores:
// what `goray memory` prints (Ray's `ray memory`). Every alive node's raylet
// reports its store and the object tables of the processes connected to it;
// the report joins them into one row per object, saying where the object
// is, who owns it and why it is still alive.
type MemoryReport struct {
	// Nodes that answered, in the order they were asked.
	Nodes []NodeMemory `json:"nodes"`
	// Objects, largest first (then by id).
	Objects []ObjectMemory `json:"objects"`
	// Errors lists the nodes that did not answer.
	Errors []NodeError `json:"errors,omitempty"`
}

// NodeMemory is one node's object store.
type NodeMemory struct {
	NodeID   string `json:"node_id"` // hex
	Hostname string `json:"hostname,omitempty"`
	IsHead   bool   `json:"is_head,omitempty"`
	// RayletEndpoint is the raylet's address ("unix:/path" or "tcp:host:port").
	RayletEndpoint string     `json:"raylet_endpoint,omitempty"`
	Store          StoreUsage `json:"store"`
	// Processes is how many drivers and workers on the node sent their
	// object table.
	Processes int `json:"processes"`
}

// StoreUsage is a store's occupancy and spill/restore statistics.
type StoreUsage struct {
	CapacityBytes    uint64 `json:"capacity_bytes"`
	UsedBytes        uint64 `json:"used_bytes"`
	PinnedBytes      uint64 `json:"pinned_bytes"`
	LargestFreeBytes uint64 `json:"largest_free_bytes"`
	NumObjects       uint64 `json:"num_objects"`

	// Spilled now: objects whose bytes are in spill files only.
	SpilledObjects uint64 `json:"spilled_objects"`
	SpilledBytes   uint64 `json:"spilled_bytes"`
	SpillFiles     uint64 `json:"spill_files"`
	SpillDir       string `json:"spill_dir,omitempty"`

	// Totals since the node started.
	SpilledObjectsTotal  uint64        `json:"spilled_objects_total"`
	SpilledBytesTotal    uint64        `json:"spilled_bytes_total"`
	RestoredObjectsTotal uint64        `json:"restored_objects_total"`
	RestoredBytesTotal   uint64        `json:"restored_bytes_total"`
	SpillTime            time.Duration `json:"spill_time_ns"`
	RestoreTime          time.Duration `json:"restore_time_ns"`
	// Throughputs in bytes per second: total bytes over the time spent
	// spilling (restoring); zero when nothing took time yet.
	SpillBytesPerSec   float64 `json:"spill_bytes_per_sec"`
	RestoreBytesPerSec float64 `json:"restore_bytes_per_sec"`
}

// UsedFraction is UsedBytes over CapacityBytes (0 for an empty store).
func (u StoreUsage) UsedFraction() float64 {
	if u.CapacityBytes == 0 {
		return 0
	}
	return float64(u.UsedBytes) / float64(u.CapacityBytes)
}

// NodeError is a node whose raylet did not answer.
type NodeError struct {
	NodeID         string `json:"node_id"`
	Hostname       string `json:"hostname,omitempty"`
	RayletEndpoint string `json:"raylet_endpoint,omitempty"`
	Error          string `json:"error"`
}

// ObjectMemory is one object of the cluster.
type ObjectMemory struct {
	// ID is the object id in hex.
	ID    string       `json:"object_id"`
	Owner ProcessIdent `json:"owner"`
	Size  uint64       `json:"size"`
	// State is the owner's view: pending (not created yet), ready or
	// failed; for an object only a store knows, ready once sealed.
	State string `json:"state,omitempty"`
	// Inline: the value lives in its owner's (and borrowers') memory, not
	// in an object store (small values and errors).
	Inline bool `json:"inline"`
	// Locations are the copies in the nodes' stores.
	Locations []ObjectLocation `json:"locations,omitempty"`
	// Where says it in words, as the table prints it.
	Where string `json:"where"`
	// Pins is the number of store pins over all copies: the object can be
	// neither spilled nor freed while pinned.
	Pins int `json:"pins"`
	// InMemory: a store holds a copy in shared memory. Spilled: a store
	// holds it in a spill file.
	InMemory bool `json:"in_memory"`
	Spilled  bool `json:"spilled"`
	// RefTypes are the reasons the object is alive (Ray's reference
	// types), aggregated over the processes holding it.
	RefTypes []RefReason `json:"reference_types"`
	// Holders are the processes whose object tables have the object.
	Holders []ProcessRef `json:"holders,omitempty"`
}

// ObjectLocation is a copy of an object in a node's store.
type ObjectLocation struct {
	NodeID    string `json:"node_id"` // hex
	Size      uint64 `json:"size"`
	InMemory  bool   `json:"in_memory"`
	Spilled   bool   `json:"spilled"`
	SpillPath string `json:"spill_path,omitempty"`
	Pins      int    `json:"pins"`
	Sealed    bool   `json:"sealed"`
}

// ProcessIdent names a driver or worker process.
type ProcessIdent struct {
	WorkerID string `json:"worker_id,omitempty"` // hex
	PID      int32  `json:"pid,omitempty"`
	NodeID   string `json:"node_id,omitempty"` // hex
	Endpoint string `json:"endpoint,omitempty"`
}

// ProcessRef is one process's entry for an object.
type ProcessRef struct {
	Process       ProcessIdent `json:"process"`
	Owner         bool         `json:"owner"`
	LocalRefs     int          `json:"local_refs"`
	SubmittedRefs int          `json:"submitted_refs"`
	ContainedRefs int          `json:"contained_refs"`
	// Borrowers is the number of other processes registered as borrowers
	// (the owner's entry only).
	Borrowers int `json:"borrowers"`
	// Pinned: the process holds a zero-copy view that pins the object.
	Pinned  bool `json:"pinned"`
	Escaped bool `json:"escaped"`
}

// RefType is a reason an object is alive, named as in Ray's `ray memory`.
type RefType string

const (
	// LocalReference: a process holds a ref (a variable in its program).
	LocalReference RefType = "LOCAL_REFERENCE"
	// UsedByPendingTask: the ref is an argument of a task not finished yet.
	UsedByPendingTask RefType = "USED_BY_PENDING_TASK"
	// CapturedInObject: the ref is nested in another object's value.
	CapturedInObject RefType = "CAPTURED_IN_OBJECT"
	// Borrowed: processes other than the owner hold the ref.
	Borrowed RefType = "BORROWED"
	// PinnedInMemory: a process reads the object in place (a View or a
	// zero-copy Get), so the store keeps it in memory.
	PinnedInMemory RefType = "PINNED_IN_MEMORY"
	// Escaped: the ref was serialised outside goray's tracking; the owner
	// keeps the object until it exits.
	Escaped RefType = "ESCAPED"
)

// RefTypeOrder is the order reasons are listed in.
// RefTypeOrder is the order reference types print in.
var RefTypeOrder = []RefType{LocalReference, UsedByPendingTask, CapturedInObject, Borrowed, PinnedInMemory, Escaped}

// RefReason is one reason an object is alive and the processes behind it.
type RefReason struct {
	Type RefType `json:"type"`
	// Count is how many references of the type there are: refs, pending
	// tasks, containing objects, borrowers or pins.
	Count int `json:"count"`
	// PIDs of the processes holding them, where known.
	PIDs []int32 `json:"pids,omitempty"`
}

func (r RefReason) String() string {
	var parts []string
	if len(r.PIDs) > 0 {
		pids := make([]string, len(r.PIDs))
		for i, p := range r.PIDs {
			pids[i] = fmt.Sprint(p)
		}
		parts = append(parts, "pid "+strings.Join(pids, ","))
	}
	if len(r.PIDs) == 0 || r.Count > len(r.PIDs) {
		parts = append(parts, fmt.Sprintf("x%d", r.Count))
	}
	return string(r.Type) + "(" + strings.Join(parts, " ") + ")"
}

// shortHex cuts a hex id to n digits.
func shortHex(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// shortObjectID keeps the start of the creating task's id and the index
// (objects Put by one process share the task part).
func shortObjectID(s string) string {
	// An object id is a 16-byte task id and a 4-byte index.
	const task = 2 * 16
	if len(s) != 2*20 {
		return s
	}
	return s[:16] + ".." + s[task:]
}

// Sort orders and groupings for MemoryReport.PrintWith.
const (
	SortBySize = "size" // largest first
	SortByRef  = "ref"  // by object id

	GroupByNone  = "none"
	GroupByNode  = "node"  // by node: the objects with a copy in its store, and its processes' inline ones
	GroupByOwner = "owner" // by owner process
)

// MemoryPrintOptions shape MemoryReport.PrintWith's table.
type MemoryPrintOptions struct {
	GroupBy string // GroupByNone (default), GroupByNode or GroupByOwner
	SortBy  string // SortBySize (default) or SortByRef
	// FullIDs prints object ids whole instead of shortened.
	FullIDs bool
}

// Validate reports an unknown grouping or order.
func (o MemoryPrintOptions) Validate() error {
	switch o.GroupBy {
	case "", GroupByNone, GroupByNode, GroupByOwner:
	default:
		return fmt.Errorf("unknown grouping %q (want %s, %s or %s)", o.GroupBy, GroupByNone, GroupByNode, GroupByOwner)
	}
	switch o.SortBy {
	case "", SortBySize, SortByRef:
	default:
		return fmt.Errorf("unknown order %q (want %s or %s)", o.SortBy, SortBySize, SortByRef)
	}
	return nil
}

// SortObjects orders r.Objects by SortBySize (largest first, the order a
// report comes in) or SortByRef (object id).
func (r *MemoryReport) SortObjects(by string) { sortObjects(r.Objects, by) }

func sortObjects(objs []ObjectMemory, by string) {
	slices.SortStableFunc(objs, func(a, b ObjectMemory) int {
		if by != SortByRef {
			if c := cmp.Compare(b.Size, a.Size); c != 0 {
				return c
			}
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Print writes the report as `goray memory` shows it: each node's store,
// then one row per object, largest first.
func (r *MemoryReport) Print(w io.Writer) error { return r.PrintWith(w, MemoryPrintOptions{}) }

// PrintWith is Print with a grouping and order.
func (r *MemoryReport) PrintWith(w io.Writer, o MemoryPrintOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	ew := &errWriter{w: w}
	multiNode := len(r.Nodes)+len(r.Errors) > 1
	objs := slices.Clone(r.Objects)
	sortObjects(objs, o.SortBy)

	fmt.Fprintf(ew, "Nodes: %d", len(r.Nodes))
	if len(r.Errors) > 0 {
		fmt.Fprintf(ew, " answered, %d did not", len(r.Errors))
	}
	fmt.Fprintln(ew)
	for _, n := range r.Nodes {
		printNodeMemory(ew, n)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(ew, "  %s%s  unreachable: %s\n", shortHex(e.NodeID, 8), hostSuffix(e.Hostname, false), e.Error)
	}

	fmt.Fprintf(ew, "\nObjects: %s\n", objectsSummary(objs))
	if len(objs) == 0 {
		return ew.err
	}
	switch o.GroupBy {
	case GroupByNode:
		for _, g := range groupByNode(r, objs) {
			fmt.Fprintf(ew, "\n--- Node %s%s: %s ---\n", shortHex(g.key, 8), hostSuffix(g.host, g.head), objectsSummary(g.objs))
			printObjectTable(ew, g.objs, o.FullIDs, multiNode)
		}
	case GroupByOwner:
		for _, g := range groupByOwner(objs) {
			fmt.Fprintf(ew, "\n--- Owner %s: %s ---\n", g.key, objectsSummary(g.objs))
			printObjectTable(ew, g.objs, o.FullIDs, multiNode)
		}
	default:
		fmt.Fprintln(ew)
		printObjectTable(ew, objs, o.FullIDs, multiNode)
	}
	return ew.err
}

func printNodeMemory(w io.Writer, n NodeMemory) {
	u := n.Store
	fmt.Fprintf(w, "  %s%s\n", shortHex(n.NodeID, 8), hostSuffix(n.Hostname, n.IsHead))
	fmt.Fprintf(w, "    Store:     used %s of %s (%.1f%%), pinned %s, %s, largest free %s\n",
		FormatBytes(u.UsedBytes), FormatBytes(u.CapacityBytes), 100*u.UsedFraction(), FormatBytes(u.PinnedBytes),
		plural(u.NumObjects, "object"), FormatBytes(u.LargestFreeBytes))
	spilled := "none"
	if u.SpilledObjects > 0 || u.SpillFiles > 0 {
		spilled = fmt.Sprintf("%s / %s in %s", plural(u.SpilledObjects, "object"), FormatBytes(u.SpilledBytes), plural(u.SpillFiles, "file"))
		if u.SpillDir != "" {
			spilled += " under " + u.SpillDir
		}
	}
	fmt.Fprintf(w, "    Spilled:   %s\n", spilled)
	fmt.Fprintf(w, "    Totals:    spilled %s / %s%s, restored %s / %s%s\n",
		plural(u.SpilledObjectsTotal, "object"), FormatBytes(u.SpilledBytesTotal), rate(u.SpillBytesPerSec, u.SpillTime),
		plural(u.RestoredObjectsTotal, "object"), FormatBytes(u.RestoredBytesTotal), rate(u.RestoreBytesPerSec, u.RestoreTime))
	fmt.Fprintf(w, "    Processes: %d reporting\n", n.Processes)
}

func rate(bps float64, d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%s/s over %s)", FormatBytes(uint64(bps)), d.Round(time.Microsecond))
}

func hostSuffix(host string, head bool) string {
	s := ""
	if host != "" {
		s += "  " + host
	}
	if head {
		s += "  head"
	}
	return s
}

func plural(n uint64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// objectsSummary is "3 objects, 1.5 MiB (1.0 MiB in shared memory, 512.0 KiB spilled, 10 B inline)".
func objectsSummary(objs []ObjectMemory) string {
	var total, mem, spilled, inline uint64
	for _, o := range objs {
		total += o.Size
		switch {
		case o.Inline:
			inline += o.Size
		case o.Spilled && !o.InMemory:
			spilled += o.Size
		case len(o.Locations) > 0:
			mem += o.Size
		}
	}
	s := fmt.Sprintf("%s, %s", plural(uint64(len(objs)), "object"), FormatBytes(total))
	var parts []string
	if mem > 0 {
		parts = append(parts, FormatBytes(mem)+" in shared memory")
	}
	if spilled > 0 {
		parts = append(parts, FormatBytes(spilled)+" spilled")
	}
	if inline > 0 {
		parts = append(parts, FormatBytes(inline)+" inline")
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

func printObjectTable(w io.Writer, objs []ObjectMemory, fullIDs, multiNode bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tOWNER\tSIZE\tWHERE\tPINS\tREFERENCE TYPES")
	for _, o := range objs {
		id := o.ID
		if !fullIDs {
			id = shortObjectID(id)
		}
		types := make([]string, len(o.RefTypes))
		for i, t := range o.RefTypes {
			types[i] = t.String()
		}
		reasons := strings.Join(types, " ")
		if reasons == "" {
			reasons = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", id, ownerString(o.Owner, multiNode), FormatBytes(o.Size), o.Where, o.Pins, reasons)
	}
	tw.Flush()
}

// ownerString is "pid 123", with the node when the cluster has several;
// an owner whose pid is unknown (gone, or on a node that did not answer)
// shows its worker id.
func ownerString(p ProcessIdent, multiNode bool) string {
	var s string
	switch {
	case p.PID != 0:
		s = fmt.Sprintf("pid %d", p.PID)
	case p.WorkerID != "":
		s = "worker " + shortHex(p.WorkerID, 8)
	default:
		return "?"
	}
	if multiNode && p.NodeID != "" {
		s += "@" + shortHex(p.NodeID, 8)
	}
	return s
}

type objGroup struct {
	key  string
	host string
	head bool
	objs []ObjectMemory
}

// groupByNode lists, per node, the objects with a copy in its store and
// the store-less objects its processes own; objects of no known node come
// last.
func groupByNode(r *MemoryReport, objs []ObjectMemory) []objGroup {
	var groups []objGroup
	index := map[string]int{}
	at := func(node string) *objGroup {
		i, ok := index[node]
		if !ok {
			i = len(groups)
			index[node] = i
			groups = append(groups, objGroup{key: node})
		}
		return &groups[i]
	}
	for _, n := range r.Nodes {
		g := at(n.NodeID)
		g.host, g.head = n.Hostname, n.IsHead
	}
	for _, o := range objs {
		if len(o.Locations) == 0 {
			node := o.Owner.NodeID
			if node == "" {
				node = "unknown"
			}
			g := at(node)
			g.objs = append(g.objs, o)
			continue
		}
		for _, l := range o.Locations {
			g := at(l.NodeID)
			g.objs = append(g.objs, o)
		}
	}
	return slices.DeleteFunc(groups, func(g objGroup) bool { return len(g.objs) == 0 })
}

// groupByOwner lists the objects per owner process, in the order of their
// largest (or first) object.
func groupByOwner(objs []ObjectMemory) []objGroup {
	var groups []objGroup
	index := map[string]int{}
	for _, o := range objs {
		key := ownerString(o.Owner, false)
		if o.Owner.WorkerID != "" && o.Owner.PID != 0 {
			key += " (worker " + shortHex(o.Owner.WorkerID, 8)
			if o.Owner.NodeID != "" {
				key += " on node " + shortHex(o.Owner.NodeID, 8)
			}
			key += ")"
		}
		i, ok := index[key]
		if !ok {
			i = len(groups)
			index[key] = i
			groups = append(groups, objGroup{key: key})
		}
		groups[i].objs = append(groups[i].objs, o)
	}
	return groups
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// FormatBytes prints a byte count as goray's commands do: "512 B",
// "1.5 KiB", "256.0 MiB".
func FormatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}
