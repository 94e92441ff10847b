package memreport

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/state"
)

const mib = 1 << 20

// memFixture is a two-node cluster as its raylets would describe it:
//
//	node A: driver (pid 100), worker (pid 300); store: big (pinned), spilled
//	node B: worker (pid 200); store: a copy of big, orphan (owner gone)
//
// plus objects known only to process tables: inline (owned by the worker
// on B, captured in an object by the driver), pending and failed.
type memFixture struct {
	nodeA, nodeB, nodeC                           protos.NodeID
	driver, workerB, workerA, gone                protos.WorkerID
	big, spilled, inline, pending, failed, orphan protos.ObjectID
}

func newMemFixture() memFixture {
	id := func(b byte) protos.UniqueID {
		var u protos.UniqueID
		for i := range u {
			u[i] = b
		}
		return u
	}
	put := id(0xd0) // the driver's put task: its objects share it
	return memFixture{
		nodeA: id(0xaa), nodeB: id(0xbb), nodeC: id(0xcc),
		driver: id(0x01), workerB: id(0x02), workerA: id(0x03), gone: id(0x09),
		big:     protos.ObjectIDFor(put, 1),
		spilled: protos.ObjectIDFor(put, 2),
		inline:  protos.ObjectIDFor(id(0xe0), 1),
		pending: protos.ObjectIDFor(id(0xe1), 1),
		failed:  protos.ObjectIDFor(id(0xe2), 1),
		orphan:  protos.ObjectIDFor(id(0xe3), 1),
	}
}

func (f memFixture) addr(w protos.WorkerID, node protos.NodeID, pid int32) *protos.Address {
	return &protos.Address{WorkerId: w.Bytes(), NodeId: node.Bytes(), Pid: pid, Endpoint: "unix:/tmp/w" + w.Short()}
}

func (f memFixture) replies() []*protos.MemorySummaryReply {
	driver := f.addr(f.driver, f.nodeA, 100)
	workerB := f.addr(f.workerB, f.nodeB, 200)
	workerA := f.addr(f.workerA, f.nodeA, 300)
	a := &protos.MemorySummaryReply{
		NodeId: f.nodeA.Bytes(),
		Stats: &protos.StoreStats{
			Capacity: 256 * mib, Used: 64 * mib, Pinned: 64 * mib, NumObjects: 2, LargestFree: 192 * mib,
			NumSpilled: 1, SpilledBytes: 32 * mib, SpillFiles: 1, SpillDir: "/tmp/spill",
			SpilledBytesTotal: 96 * mib, SpilledObjectsTotal: 3, SpillNanos: uint64(100 * time.Millisecond),
			RestoredBytesTotal: 64 * mib, RestoredObjectsTotal: 2, RestoreNanos: uint64(50 * time.Millisecond),
		},
		Objects: []*protos.StoreObjectInfo{
			{ObjectId: f.big.Bytes(), OwnerWorkerId: f.driver.Bytes(), Size: 64 * mib, InMemory: true, Pins: 1, Sealed: true},
			{ObjectId: f.spilled.Bytes(), OwnerWorkerId: f.driver.Bytes(), Size: 32 * mib, Spilled: true, SpillPath: "/tmp/spill/0001", Sealed: true},
		},
		Processes: []*protos.GetRefsReply{
			{Process: driver, Refs: []*protos.RefInfo{
				{ObjectId: f.big.Bytes(), Owner: driver, Owned: true, State: "ready", Size: 64 * mib, InStore: true, LocalRefs: 1, Borrowers: 1, Pinned: true, NodeId: f.nodeA.Bytes()},
				{ObjectId: f.spilled.Bytes(), Owner: driver, Owned: true, State: "ready", Size: 32 * mib, InStore: true, SubmittedRefs: 2, NodeId: f.nodeA.Bytes()},
				{ObjectId: f.inline.Bytes(), Owner: workerB, State: "ready", Size: 100, ContainedRefs: 1},
				{ObjectId: f.pending.Bytes(), Owner: driver, Owned: true, State: "pending", LocalRefs: 2},
				{ObjectId: f.failed.Bytes(), Owner: driver, Owned: true, State: "failed", Size: 300, LocalRefs: 1},
			}},
			{Process: workerA, Refs: []*protos.RefInfo{
				{ObjectId: f.spilled.Bytes(), Owner: driver, State: "ready", Size: 32 * mib, InStore: true, NodeId: f.nodeA.Bytes()},
			}},
		},
	}
	b := &protos.MemorySummaryReply{
		NodeId: f.nodeB.Bytes(),
		Stats:  &protos.StoreStats{Capacity: 128 * mib, Used: 72 * mib, NumObjects: 2, LargestFree: 56 * mib},
		Objects: []*protos.StoreObjectInfo{
			{ObjectId: f.big.Bytes(), OwnerWorkerId: f.driver.Bytes(), Size: 64 * mib, InMemory: true, Sealed: true},
			{ObjectId: f.orphan.Bytes(), OwnerWorkerId: f.gone.Bytes(), Size: 8 * mib, InMemory: true, Sealed: true},
		},
		Processes: []*protos.GetRefsReply{
			{Process: workerB, Refs: []*protos.RefInfo{
				{ObjectId: f.big.Bytes(), Owner: driver, State: "ready", Size: 64 * mib, InStore: true, LocalRefs: 1, NodeId: f.nodeA.Bytes()},
				{ObjectId: f.inline.Bytes(), Owner: workerB, Owned: true, State: "ready", Size: 100, LocalRefs: 1, Borrowers: 1, Escaped: true},
			}},
		},
	}
	return []*protos.MemorySummaryReply{a, b}
}

func (f memFixture) report() *state.MemoryReport {
	return buildMemoryReport(f.replies(), state.NodeError{NodeID: f.nodeC.String(), Hostname: "hostc", Error: "wire: dial unix:/x: connection refused"})
}

func findObject(t *testing.T, r *state.MemoryReport, id protos.ObjectID) state.ObjectMemory {
	t.Helper()
	for _, o := range r.Objects {
		if o.ID == id.String() {
			return o
		}
	}
	t.Fatalf("object %s not in the report", id)
	return state.ObjectMemory{}
}

func refTypes(o state.ObjectMemory) string {
	s := make([]string, len(o.RefTypes))
	for i, r := range o.RefTypes {
		s[i] = r.String()
	}
	return strings.Join(s, " ")
}

func TestBuildMemoryReportObjects(t *testing.T) {
	f := newMemFixture()
	r := f.report()

	if len(r.Objects) != 6 {
		t.Fatalf("%d objects; want 6: %+v", len(r.Objects), r.Objects)
	}
	// Largest first, ties by id.
	var order []string
	for _, o := range r.Objects {
		order = append(order, o.ID)
	}
	want := []string{f.big.String(), f.spilled.String(), f.orphan.String(), f.failed.String(), f.inline.String(), f.pending.String()}
	if !slices.Equal(order, want) {
		t.Errorf("order %v; want %v", order, want)
	}

	tests := []struct {
		id       protos.ObjectID
		ownerPID int32
		owner    protos.WorkerID
		size     uint64
		where    string
		pins     int
		spilled  bool
		inline   bool
		state    string
		types    string
	}{
		{f.big, 100, f.driver, 64 * mib, "aaaaaaaa shared memory; bbbbbbbb shared memory", 1, false, false, "ready",
			"LOCAL_REFERENCE(pid 100,200) BORROWED(pid 200) PINNED_IN_MEMORY(pid 100)"},
		{f.spilled, 100, f.driver, 32 * mib, "aaaaaaaa spilled: /tmp/spill/0001", 0, true, false, "ready",
			// The worker on A has an entry with no refs left: not a borrower.
			"USED_BY_PENDING_TASK(pid 100 x2)"},
		{f.inline, 200, f.workerB, 100, "inline in owner", 0, false, true, "ready",
			"LOCAL_REFERENCE(pid 200) CAPTURED_IN_OBJECT(pid 100) BORROWED(pid 100) ESCAPED(pid 200)"},
		{f.pending, 100, f.driver, 0, "pending", 0, false, false, "pending", "LOCAL_REFERENCE(pid 100 x2)"},
		{f.failed, 100, f.driver, 300, "inline in owner (error)", 0, false, true, "failed", "LOCAL_REFERENCE(pid 100)"},
		// Owner gone: no process table names it; the store's owner id stays.
		{f.orphan, 0, f.gone, 8 * mib, "bbbbbbbb shared memory", 0, false, false, "ready", ""},
	}
	for _, tc := range tests {
		o := findObject(t, r, tc.id)
		if o.Owner.PID != tc.ownerPID || o.Owner.WorkerID != tc.owner.String() {
			t.Errorf("%s: owner %+v; want pid %d, worker %s", tc.id, o.Owner, tc.ownerPID, tc.owner)
		}
		if o.Size != tc.size || o.Where != tc.where || o.Pins != tc.pins || o.Spilled != tc.spilled || o.Inline != tc.inline || o.State != tc.state {
			t.Errorf("%s: size %d, where %q, pins %d, spilled %v, inline %v, state %q; want %d, %q, %d, %v, %v, %q",
				tc.id, o.Size, o.Where, o.Pins, o.Spilled, o.Inline, o.State, tc.size, tc.where, tc.pins, tc.spilled, tc.inline, tc.state)
		}
		if got := refTypes(o); got != tc.types {
			t.Errorf("%s: reference types %q; want %q", tc.id, got, tc.types)
		}
	}

	for id, want := range map[protos.ObjectID]bool{f.big: true, f.spilled: false, f.orphan: true, f.inline: false, f.pending: false} {
		if o := findObject(t, r, id); o.InMemory != want {
			t.Errorf("%s: in memory %v; want %v", id, o.InMemory, want)
		}
	}
	big := findObject(t, r, f.big)
	if len(big.Locations) != 2 || big.Locations[0].NodeID != f.nodeA.String() || big.Locations[0].Pins != 1 || big.Locations[1].NodeID != f.nodeB.String() {
		t.Errorf("big: locations %+v; want A (1 pin) and B", big.Locations)
	}
	if len(big.Holders) != 2 || !big.Holders[0].Owner || big.Holders[0].Process.PID != 100 || big.Holders[1].Process.PID != 200 || big.Holders[1].Process.NodeID != f.nodeB.String() {
		t.Errorf("big: holders %+v; want the driver (owner) then pid 200 on B", big.Holders)
	}
	if o := findObject(t, r, f.big); o.Owner.NodeID != f.nodeA.String() {
		t.Errorf("big: owner node %s; want %s", o.Owner.NodeID, f.nodeA)
	}
}

func TestBuildMemoryReportBorrowersAndPins(t *testing.T) {
	f := newMemFixture()
	owner := f.addr(f.driver, f.nodeA, 100)
	// The owner counts 3 borrowers, one of whose tables is here; the
	// store has 2 pins, one of them a view of a process not reporting.
	r := buildMemoryReport([]*protos.MemorySummaryReply{{
		NodeId:  f.nodeA.Bytes(),
		Objects: []*protos.StoreObjectInfo{{ObjectId: f.big.Bytes(), Size: 10, InMemory: true, Pins: 2, Sealed: true}},
		Processes: []*protos.GetRefsReply{
			{Process: owner, Refs: []*protos.RefInfo{{ObjectId: f.big.Bytes(), Owner: owner, Owned: true, State: "ready", InStore: true, Borrowers: 3}}},
			{Process: f.addr(f.workerA, f.nodeA, 300), Refs: []*protos.RefInfo{{ObjectId: f.big.Bytes(), Owner: owner, State: "ready", InStore: true, Pinned: true, SubmittedRefs: 1}}},
		},
	}})
	o := findObject(t, r, f.big)
	if got, want := refTypes(o), "USED_BY_PENDING_TASK(pid 300) BORROWED(pid 300 x3) PINNED_IN_MEMORY(pid 300 x2)"; got != want {
		t.Errorf("reference types %q; want %q", got, want)
	}
	// The store did not record the owner; the refs name it.
	if o.Owner.PID != 100 {
		t.Errorf("owner %+v; want pid 100", o.Owner)
	}
}

func TestBuildMemoryReportNotReported(t *testing.T) {
	// The owner says the object is in node B's store, which did not answer.
	f := newMemFixture()
	owner := f.addr(f.driver, f.nodeA, 100)
	r := buildMemoryReport([]*protos.MemorySummaryReply{{
		NodeId: f.nodeA.Bytes(),
		Processes: []*protos.GetRefsReply{{Process: owner, Refs: []*protos.RefInfo{
			{ObjectId: f.big.Bytes(), Owner: owner, Owned: true, State: "ready", Size: 5 * mib, InStore: true, LocalRefs: 1, NodeId: f.nodeB.Bytes()},
		}}},
	}}, state.NodeError{NodeID: f.nodeB.String(), Error: "timeout"})
	o := findObject(t, r, f.big)
	if o.Inline || o.Where != "bbbbbbbb shared memory (not reported)" {
		t.Errorf("inline %v, where %q; want a store copy on bbbbbbbb not reported", o.Inline, o.Where)
	}
}

func TestBuildMemoryReportNodes(t *testing.T) {
	f := newMemFixture()
	r := f.report()
	if len(r.Nodes) != 2 || r.Nodes[0].NodeID != f.nodeA.String() || r.Nodes[1].NodeID != f.nodeB.String() {
		t.Fatalf("nodes %+v; want A, B", r.Nodes)
	}
	a := r.Nodes[0]
	if a.Processes != 2 || a.Store.UsedBytes != 64*mib || a.Store.SpilledObjects != 1 || a.Store.SpillFiles != 1 || a.Store.SpillTime != 100*time.Millisecond {
		t.Errorf("node A: %+v", a)
	}
	if got, want := a.Store.SpillBytesPerSec, float64(960*mib); got != want {
		t.Errorf("spill throughput %v; want %v (96 MiB in 100ms)", got, want)
	}
	if got, want := a.Store.RestoreBytesPerSec, float64(1280*mib); got != want {
		t.Errorf("restore throughput %v; want %v (64 MiB in 50ms)", got, want)
	}
	if got := a.Store.UsedFraction(); got != 0.25 {
		t.Errorf("used fraction %v; want 0.25", got)
	}
	if b := r.Nodes[1].Store; b.SpillBytesPerSec != 0 || b.RestoreBytesPerSec != 0 {
		t.Errorf("node B throughputs %v, %v; want 0 (no time spent)", b.SpillBytesPerSec, b.RestoreBytesPerSec)
	}
	if len(r.Errors) != 1 || r.Errors[0].NodeID != f.nodeC.String() {
		t.Errorf("errors %+v; want node C", r.Errors)
	}
}

func TestBuildMemoryReportEmpty(t *testing.T) {
	r := buildMemoryReport(nil)
	var out bytes.Buffer
	if err := r.Print(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Objects: 0 objects, 0 B") {
		t.Errorf("empty report:\n%s", out.String())
	}
	b, err := json.Marshal(r)
	if err != nil || !strings.Contains(string(b), `"objects":[]`) {
		t.Errorf("JSON %s, %v; want an empty objects list", b, err)
	}
}

// row matches a table row: its cells in order, separated by spaces.
func row(cells ...string) *regexp.Regexp {
	for i, c := range cells {
		cells[i] = regexp.QuoteMeta(c)
	}
	return regexp.MustCompile(`(?m)^` + strings.Join(cells, `\s+`) + `\s*$`)
}

func TestMemoryReportPrint(t *testing.T) {
	f := newMemFixture()
	r := f.report()
	var buf bytes.Buffer
	if err := r.Print(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("\n%s", out)
	// The table prints the start of the creating task's id and the index.
	short := func(id protos.ObjectID) string { s := id.String(); return s[:16] + ".." + s[32:] }
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Nodes: 2 answered, 1 did not$`),
		regexp.MustCompile(`(?m)^  aaaaaaaa$`),
		regexp.MustCompile(`(?m)^    Store:     used 64\.0 MiB of 256\.0 MiB \(25\.0%\), pinned 64\.0 MiB, 2 objects, largest free 192\.0 MiB$`),
		regexp.MustCompile(`(?m)^    Spilled:   1 object / 32\.0 MiB in 1 file under /tmp/spill$`),
		regexp.MustCompile(`(?m)^    Totals:    spilled 3 objects / 96\.0 MiB \(960\.0 MiB/s over 100ms\), restored 2 objects / 64\.0 MiB \(1\.2 GiB/s over 50ms\)$`),
		regexp.MustCompile(`(?m)^    Spilled:   none$`),
		regexp.MustCompile(`(?m)^    Totals:    spilled 0 objects / 0 B, restored 0 objects / 0 B$`),
		regexp.MustCompile(`(?m)^  cccccccc  hostc  unreachable: wire: dial unix:/x: connection refused$`),
		regexp.MustCompile(`(?m)^Objects: 6 objects, 104\.0 MiB \(72\.0 MiB in shared memory, 32\.0 MiB spilled, 400 B inline\)$`),
		row("REF", "OWNER", "SIZE", "WHERE", "PINS", "REFERENCE TYPES"),
		row(short(f.big), "pid 100@aaaaaaaa", "64.0 MiB", "aaaaaaaa shared memory; bbbbbbbb shared memory", "1",
			"LOCAL_REFERENCE(pid 100,200) BORROWED(pid 200) PINNED_IN_MEMORY(pid 100)"),
		row(short(f.spilled), "pid 100@aaaaaaaa", "32.0 MiB", "aaaaaaaa spilled: /tmp/spill/0001", "0", "USED_BY_PENDING_TASK(pid 100 x2)"),
		row(short(f.orphan), "worker 09090909", "8.0 MiB", "bbbbbbbb shared memory", "0", "-"),
		row(short(f.inline), "pid 200@bbbbbbbb", "100 B", "inline in owner", "0",
			"LOCAL_REFERENCE(pid 200) CAPTURED_IN_OBJECT(pid 100) BORROWED(pid 100) ESCAPED(pid 200)"),
		row(short(f.pending), "pid 100@aaaaaaaa", "0 B", "pending", "0", "LOCAL_REFERENCE(pid 100 x2)"),
		row(short(f.failed), "pid 100@aaaaaaaa", "300 B", "inline in owner (error)", "0", "LOCAL_REFERENCE(pid 100)"),
	} {
		if !re.MatchString(out) {
			t.Errorf("output lacks %s", re)
		}
	}
	// Rows come largest first.
	if i, j := strings.Index(out, short(f.big)), strings.Index(out, short(f.spilled)); i < 0 || j < i {
		t.Errorf("big (64 MiB) is not listed before spilled (32 MiB)")
	}
}

func TestMemoryReportPrintGrouped(t *testing.T) {
	f := newMemFixture()
	r := f.report()
	// The table prints the start of the creating task's id and the index.
	short := func(id protos.ObjectID) string { s := id.String(); return s[:16] + ".." + s[32:] }

	var buf bytes.Buffer
	if err := r.PrintWith(&buf, state.MemoryPrintOptions{GroupBy: state.GroupByNode, SortBy: state.SortByRef, FullIDs: true}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("\n%s", out)
	// Node A: big, spilled, and the driver's pending and failed objects;
	// node B: big's copy, the orphan and the inline object of its worker.
	secA := regexp.MustCompile(`(?s)--- Node aaaaaaaa: 4 objects, [^\n]*---\n(.*?)\n\n`).FindStringSubmatch(out)
	secB := regexp.MustCompile(`(?s)--- Node bbbbbbbb: 3 objects, [^\n]*---\n(.*)`).FindStringSubmatch(out)
	if secA == nil || secB == nil {
		t.Fatalf("no section per node:\n%s", out)
	}
	for _, id := range []protos.ObjectID{f.big, f.spilled, f.pending, f.failed} {
		if !strings.Contains(secA[1], id.String()) {
			t.Errorf("node A's section lacks %s", id)
		}
	}
	for _, id := range []protos.ObjectID{f.big, f.orphan, f.inline} {
		if !strings.Contains(secB[1], id.String()) {
			t.Errorf("node B's section lacks %s", id)
		}
	}
	// By ref: ids in ascending order within a section.
	if i, j := strings.Index(secA[1], f.big.String()), strings.Index(secA[1], f.pending.String()); i < 0 || j < i {
		t.Errorf("sorted by ref, %s (0xd0...) should follow %s (0xe1...)", f.big, f.pending)
	}

	buf.Reset()
	if err := r.PrintWith(&buf, state.MemoryPrintOptions{GroupBy: state.GroupByOwner}); err != nil {
		t.Fatal(err)
	}
	out = buf.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		"--- Owner pid 100 (worker 01010101 on node aaaaaaaa): 4 objects, 96.0 MiB",
		"--- Owner pid 200 (worker 02020202 on node bbbbbbbb): 1 object, 100 B",
		"--- Owner worker 09090909: 1 object, 8.0 MiB",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !strings.Contains(out, short(f.big)) {
		t.Errorf("output lacks %s", short(f.big))
	}

	if err := r.PrintWith(&buf, state.MemoryPrintOptions{GroupBy: "pid"}); err == nil {
		t.Errorf("PrintWith accepted grouping by pid")
	}
}

func TestMemoryReportJSON(t *testing.T) {
	f := newMemFixture()
	b, err := json.Marshal(f.report())
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Nodes []struct {
			NodeID string `json:"node_id"`
			Store  struct {
				SpillBytesPerSec float64 `json:"spill_bytes_per_sec"`
			} `json:"store"`
		} `json:"nodes"`
		Objects []struct {
			ID       string `json:"object_id"`
			Where    string `json:"where"`
			RefTypes []struct {
				Type string  `json:"type"`
				PIDs []int32 `json:"pids"`
			} `json:"reference_types"`
		} `json:"objects"`
		Errors []struct {
			Error string `json:"error"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var full state.MemoryReport
	if err := json.Unmarshal(b, &full); err != nil {
		t.Fatal(err)
	}
	if want := f.report(); !reflect.DeepEqual(&full, want) {
		t.Errorf("JSON round trip changed the report:\n got %+v\nwant %+v", full, *want)
	}
	if len(back.Nodes) != 2 || back.Nodes[0].Store.SpillBytesPerSec != 960*mib || len(back.Objects) != 6 || len(back.Errors) != 1 {
		t.Fatalf("JSON round trip: %s", b)
	}
	o := back.Objects[0]
	if o.ID != f.big.String() || len(o.RefTypes) != 3 || o.RefTypes[0].Type != "LOCAL_REFERENCE" || !slices.Equal(o.RefTypes[0].PIDs, []int32{100, 200}) {
		t.Errorf("first object in JSON: %+v", o)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 256 * mib: "256.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := state.FormatBytes(n); got != want {
			t.Errorf("state.FormatBytes(%d) = %q; want %q", n, got, want)
		}
	}
}
