package tests

import (
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// TestCLINodeJoinAndStop: `goray start --address` starts a node daemon that
// joins the head's cluster, goray status shows it, and goray stop on the
// machine makes it leave cleanly before stopping the cluster.
func TestCLINodeJoinAndStop(t *testing.T) {
	bin := sharedGoray(t)
	tmp := t.TempDir()
	env := cliEnv(tmp)
	headDir, nodeDir := t.TempDir(), t.TempDir()
	var pids []int
	t.Cleanup(func() {
		for _, pid := range pids {
			if processAlive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	out, err := runGoray(bin, env, "start", "--head", "--num-cpus", "0", "--port", "0", "--session-dir", headDir, "--object-store-memory", "64MiB")
	if err != nil {
		t.Fatalf("goray start --head: %v\n%s", err, out)
	}
	addr := field(out, "Address:")
	headPID, _ := strconv.Atoi(field(out, "Daemon pid:"))
	pids = append(pids, headPID)

	out, err = runGoray(bin, env, "start", "--address", addr, "--num-cpus", "1", "--labels", "zone=a", "--session-dir", nodeDir, "--object-store-memory", "64MiB")
	if err != nil {
		t.Fatalf("goray start --address: %v\n%s", err, out)
	}
	nodeID := field(out, "Node id:")
	nodePID, _ := strconv.Atoi(field(out, "Daemon pid:"))
	pids = append(pids, nodePID)
	if len(nodeID) != 32 || nodePID <= 0 || !processAlive(nodePID) {
		t.Fatalf("goray start --address printed node id %q, pid %d:\n%s", nodeID, nodePID, out)
	}

	nodes := clusterStatusAt(t, addr, headDir).Nodes
	var joined *sdk.Node
	for i, n := range nodes {
		if n.ID.String() == nodeID {
			joined = &nodes[i]
		}
	}
	if len(nodes) != 2 || joined == nil || !joined.Alive || joined.Labels["zone"] != "a" || joined.IsHead || joined.Total["CPU"] != 1 {
		t.Fatalf("nodes %+v; want the head and the joined node %s (alive, zone=a, 1 CPU)", nodes, nodeID)
	}
	out, err = runGoray(bin, env, "status", "--address", addr)
	if err != nil || !strings.Contains(out, nodeID[:8]) {
		t.Errorf("goray status: %v; want it to list node %s:\n%s", err, nodeID[:8], out)
	}

	out, err = runGoray(bin, env, "stop")
	if err != nil {
		t.Fatalf("goray stop: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Stopped goray node process "+strconv.Itoa(nodePID)) {
		t.Errorf("goray stop did not say it stopped the node:\n%s", out)
	}
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, pid := range []int{headPID, nodePID} {
			if processAlive(pid) {
				return errorf("process %d still runs after goray stop", pid)
			}
		}
		return nil
	})
	for _, pid := range []int{headPID, nodePID} {
		if segs, _ := filepath.Glob("/dev/shm/goray-" + strconv.Itoa(pid) + "-*"); len(segs) > 0 {
			t.Errorf("segments of %d left: %v", pid, segs)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(tmp, "goray", "nodes", "*")); len(files) > 0 {
		t.Errorf("node records left: %v", files)
	}
}
