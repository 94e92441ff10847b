package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
	"github.com/goray/goray/state"
)

// memoryObjects makes what goray memory should explain: a large []byte in
// shared memory that this process holds, reads in place (Get pins it) and
// passes to a task that cannot run (no GPU), and a small inline value.
// cancel ends the task.
func memoryObjects(ctx context.Context, t *testing.T) (big sdk.Ref[[]byte], small sdk.Ref[int], cancel func()) {
	t.Helper()
	big, err := sdk.Put(ctx, bytes.Repeat([]byte{7}, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := big.Get(ctx); err != nil || len(b) != 4<<20 {
		t.Fatalf("Get(big): %d bytes, %v", len(b), err)
	}
	if small, err = sdk.Put(ctx, 42); err != nil {
		t.Fatal(err)
	}
	pending := SumBytes.Options(sdk.NumGPUs(1)).RemoteArgs(ctx, big)
	return big, small, func() { _ = sdk.Cancel(ctx, pending, sdk.Force()) }
}

func findMemoryObject(r *state.MemoryReport, ref sdk.ObjectRef) *state.ObjectMemory {
	for i := range r.Objects {
		if r.Objects[i].ID == ref.ID().String() {
			return &r.Objects[i]
		}
	}
	return nil
}

func hasRefType(o *state.ObjectMemory, typ state.RefType, pid int) bool {
	for _, r := range o.RefTypes {
		if r.Type == typ && slices.Contains(r.PIDs, int32(pid)) {
			return true
		}
	}
	return false
}

// checkMemoryReport checks the report's view of memoryObjects' objects,
// owned by this process.
func checkMemoryReport(r *state.MemoryReport, big, small sdk.ObjectRef, storeCapacity uint64) error {
	pid := os.Getpid()
	if len(r.Nodes) != 1 || len(r.Errors) != 0 {
		return fmt.Errorf("nodes %+v, errors %+v; want one node answering", r.Nodes, r.Errors)
	}
	n := r.Nodes[0]
	if n.Store.CapacityBytes != storeCapacity || n.Store.UsedBytes < 4<<20 || n.Store.NumObjects < 1 || n.Processes < 1 || !n.IsHead || n.Hostname == "" {
		return fmt.Errorf("node %+v; want the head, its store of %d bytes holding 4 MiB or more, this process reporting", n, storeCapacity)
	}
	o := findMemoryObject(r, big)
	if o == nil {
		return fmt.Errorf("big object %s not in the report", big.ID())
	}
	if o.Owner.PID != int32(pid) || o.Size < 4<<20 || o.Inline || len(o.Locations) != 1 || !o.Locations[0].InMemory || o.Pins < 1 ||
		!strings.HasSuffix(o.Where, " shared memory") {
		return fmt.Errorf("big object %+v; want owned by pid %d, 4 MiB in shared memory, pinned", *o, pid)
	}
	for _, typ := range []state.RefType{state.LocalReference, state.PinnedInMemory, state.UsedByPendingTask} {
		if !hasRefType(o, typ, pid) {
			return fmt.Errorf("big object: reference types %+v lack %s of pid %d", o.RefTypes, typ, pid)
		}
	}
	s := findMemoryObject(r, small)
	if s == nil {
		return fmt.Errorf("small object %s not in the report", small.ID())
	}
	if s.Owner.PID != int32(pid) || !s.Inline || s.Where != "inline in owner" || s.Pins != 0 || !hasRefType(s, state.LocalReference, pid) {
		return fmt.Errorf("small object %+v; want inline in pid %d with a local reference", *s, pid)
	}
	return nil
}

func TestMemorySummary(t *testing.T) {
	ctx := startCluster(t)
	big, small, cancel := memoryObjects(ctx, t)
	defer cancel()

	var r *state.MemoryReport
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		var err error
		if r, err = sdk.MemorySummary(ctx); err != nil {
			return err
		}
		return checkMemoryReport(r, big.Untyped(), small.Untyped(), 256<<20)
	})
	var out bytes.Buffer
	if err := r.Print(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("goray memory:\n%s", out.String())
	pid := os.Getpid()
	row := regexp.MustCompile(fmt.Sprintf(`(?m)^%s\S*\s+pid %d\s+4\.0 MiB\s+\S+ shared memory\s+[1-9]\d*\s+.*LOCAL_REFERENCE\(pid [\d,]*%d`,
		big.ID().String()[:16], pid, pid))
	if !row.MatchString(out.String()) {
		t.Errorf("Print lacks the big object's row (%s):\n%s", row, out.String())
	}
}

func TestCLIMemory(t *testing.T) {
	// A head (goray start) the CLI can reach by address, and this
	// process as its driver.
	const capacity = 128 << 20
	ctx, c := startMultiNode(t, []string{"--num-cpus", "2", "--object-store-memory", "128MiB"})
	bin, addr := c.bin, c.addr
	// The CLI finds the token the way an operator's shell would give it.
	env := append(append([]string(nil), c.env...), envTokenFile+"="+tokenFile(c.head.dir))
	big, small, cancel := memoryObjects(ctx, t)
	defer cancel()

	// The table.
	pid := os.Getpid()
	checkFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		out, err := runGoray(bin, env, "memory", "--address", addr)
		if err != nil {
			return fmt.Errorf("goray memory: %v\n%s", err, out)
		}
		for _, re := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^Nodes: 1$`),
			regexp.MustCompile(`(?m)^\s+Store:\s+used \S+ \S*B of 128\.0 MiB \(\d+\.\d%\), pinned `),
			regexp.MustCompile(`(?m)^\s+Spilled:\s+`),
			regexp.MustCompile(`(?m)^REF\s+OWNER\s+SIZE\s+WHERE\s+PINS\s+REFERENCE TYPES$`),
			regexp.MustCompile(fmt.Sprintf(`(?m)^%s\S*\s+pid %d\s+4\.0 MiB\s+\S+ shared memory\s+[1-9]\d*\s+.*LOCAL_REFERENCE\(pid [\d,]*%d.*USED_BY_PENDING_TASK`,
				big.ID().String()[:16], pid, pid)),
			regexp.MustCompile(fmt.Sprintf(`(?m)^%s\S*\s+pid %d\s+\d+ B\s+inline in owner\s+0\s+LOCAL_REFERENCE\(pid %d\)`,
				small.ID().String()[:16], pid, pid)),
		} {
			if !re.MatchString(out) {
				return fmt.Errorf("goray memory lacks %s:\n%s", re, out)
			}
		}
		t.Logf("goray memory:\n%s", out)
		return nil
	})

	// The same as JSON.
	checkFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		out, err := runGoray(bin, env, "memory", "--address", addr, "--json")
		if err != nil {
			return fmt.Errorf("goray memory --json: %v\n%s", err, out)
		}
		var r state.MemoryReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return fmt.Errorf("goray memory --json: %v\n%s", err, out)
		}
		return checkMemoryReport(&r, big.Untyped(), small.Untyped(), capacity)
	})

	// Grouped by owner: one group, this process.
	out, err := runGoray(bin, env, "memory", "--address", addr, "--group-by", "owner", "--sort", "ref")
	if err != nil || !regexp.MustCompile(fmt.Sprintf(`(?m)^--- Owner pid %d \(worker \w+ on node \w+\): [1-9]\d* objects?, `, pid)).MatchString(out) {
		t.Errorf("goray memory --group-by owner: %v\n%s", err, out)
	}
	// A bad flag value is a usage error.
	if out, err := runGoray(bin, env, "memory", "--address", addr, "--group-by", "pid"); err == nil || !strings.Contains(out, "unknown grouping") || !strings.Contains(out, "--help") {
		t.Errorf("goray memory --group-by pid: err %v; want a usage error:\n%s", err, out)
	}
	// No cluster at the address: an error naming it.
	if out, err := runGoray(bin, env, "memory", "--address", "127.0.0.1:1"); err == nil || !strings.Contains(out, "no goray cluster answers at nats://127.0.0.1:1") {
		t.Errorf("goray memory at a dead address: err %v; want an error naming it:\n%s", err, out)
	}
}
