package raylet

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// TestPlacementByPlatform: a job's work goes only to nodes of a platform
// it has a binary for; pinned to another, or with no node able to run
// it, it fails naming both platforms.
func TestPlacementByPlatform(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	host := runtime.GOOS + "/" + runtime.GOARCH
	r := startRaylet(t, 1, 2)
	c := dialRaylet(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	register := func(bins ...*protos.JobBinary) protos.JobID {
		job := protos.NewUniqueID()
		c := dialRaylet(t, r)
		if err := c.Call(ctx, protos.Method_REGISTER_CLIENT, &protos.RegisterClientRequest{JobId: job.Bytes(), Executable: exe, BinaryDigest: exeDigest(t, exe),
			Binaries: bins}, &protos.RegisterClientReply{}); err != nil {
			t.Fatal(err)
		}
		return job
	}
	ask := func(job protos.JobID, st *protos.SchedulingStrategy) (*protos.RequestWorkerLeaseReply, error) {
		rep := &protos.RequestWorkerLeaseReply{}
		err := c.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{
			JobId: job.Bytes(), Function: "f", Resources: &protos.Resources{Amounts: map[string]float64{CPU: 2}}, Strategy: st}, rep)
		return rep, err
	}
	goos, goarch, _ := strings.Cut(host, "/")
	own := &protos.JobBinary{Goos: goos, Goarch: goarch, Digest: exeDigest(t, exe)}
	riscv := &protos.JobBinary{Goos: "linux", Goarch: "riscv64", Digest: strings.Repeat("ab", 32)}

	// Two peers big enough for a 2-CPU task: one of another platform.
	other, same := protos.NewUniqueID(), protos.NewUniqueID()
	r.UpdatePeer(peerInfo(other, 128, map[string]string{PlatformLabel: "linux/riscv64"}))
	r.UpdatePeer(peerInfo(same, 64, nil))
	job := register(own)
	for range 5 {
		rep, err := ask(job, &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_SPREAD})
		if err != nil {
			t.Fatal(err)
		}
		if got := protos.MustUniqueID(rep.GetRetryAt().GetNodeId()); got != same {
			t.Fatalf("the job's task went to %s; want the peer of its platform %s", got.Short(), same.Short())
		}
	}
	// Pinned to the other platform's node: refused, naming both.
	_, err = ask(job, &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_NODE_AFFINITY, NodeId: other.Bytes()})
	var re *wire.RemoteError
	if !errors.As(err, &re) || re.Code != CodePlatformMismatch || !strings.Contains(err.Error(), "linux/riscv64") || !strings.Contains(err.Error(), host) {
		t.Errorf("a task pinned to a linux/riscv64 node: %v; want %s naming both platforms", err, CodePlatformMismatch)
	}
	// A job with a riscv64 build too may go there.
	both := register(own, riscv)
	rep, err := ask(both, &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_NODE_AFFINITY, NodeId: other.Bytes()})
	if err != nil || protos.MustUniqueID(rep.GetRetryAt().GetNodeId()) != other {
		t.Errorf("a job with a riscv64 build pinned to the riscv64 node: %v, %v", rep, err)
	}
	// A job no node can run fails at once.
	none := register(&protos.JobBinary{Goos: "plan9", Goarch: "arm", Digest: strings.Repeat("cd", 32)})
	if _, err := ask(none, nil); !errors.As(err, &re) || re.Code != CodePlatformMismatch {
		t.Errorf("a job no node can run: %v; want %s", err, CodePlatformMismatch)
	}
}
