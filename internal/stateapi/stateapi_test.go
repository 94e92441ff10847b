package stateapi

import (
	"errors"
	"testing"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/state"
)

func TestByIDPrefix(t *testing.T) {
	rows := []state.Actor{{ActorID: "abcd0001"}, {ActorID: "abcd0002"}, {ActorID: "ef000003"}}
	id := func(a state.Actor) string { return a.ActorID }
	if a, err := ByIDPrefix(rows, "ef00", id); err != nil || a.ActorID != "ef000003" {
		t.Errorf("ef00: %v %v", a, err)
	}
	if a, err := ByIDPrefix(rows, "ABCD0002", id); err != nil || a.ActorID != "abcd0002" {
		t.Errorf("upper case: %v %v", a, err)
	}
	if _, err := ByIDPrefix(rows, "abcd", id); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("abcd: %v, want ErrAmbiguous", err)
	}
	if _, err := ByIDPrefix(rows, "1234", id); !errors.Is(err, ErrNoMatch) {
		t.Errorf("1234: %v, want ErrNoMatch", err)
	}
	for _, bad := range []string{"ab", "zzzz"} {
		if _, err := ByIDPrefix(rows, bad, id); err == nil || errors.Is(err, ErrNoMatch) {
			t.Errorf("%q: %v, want a refusal", bad, err)
		}
	}
}

func TestConversions(t *testing.T) {
	node, job := protos.NewUniqueID(), protos.NewUniqueID()
	a := actor(&protos.ActorInfo{ActorId: protos.NewUniqueID().Bytes(), State: protos.ActorState_ALIVE,
		Spec:    &protos.ActorSpec{ClassName: "main.C", JobId: job.Bytes(), Options: &protos.ActorOptions{Name: "n", Namespace: "ns", Detached: true}},
		Address: &protos.Address{NodeId: node.Bytes(), Pid: 42}, StartTimeUnixMs: 1000})
	if a.NodeID != node.String() || a.PID != 42 || a.JobID != job.String() || a.State != "ALIVE" || !a.Detached || a.StartTime.UnixMilli() != 1000 {
		t.Errorf("actor: %+v", a)
	}
	j := job0(t)
	if j.Status != "FINISHED" || len(j.RuntimeEnvVars) != 1 || j.RuntimeEnvVars[0] != "SECRET_NAME" || j.Platforms[0] != "linux/arm64" {
		t.Errorf("job: %+v", j)
	}
	g := placementGroup(&protos.PlacementGroupInfo{State: protos.PlacementGroupState_PG_CREATED,
		Spec:        &protos.PlacementGroupSpec{Strategy: protos.PlacementStrategy_STRICT_SPREAD, Bundles: []*protos.Resources{{Amounts: map[string]float64{"CPU": 1}}, {}}},
		BundleNodes: [][]byte{node.Bytes()}})
	if g.State != "CREATED" || g.Strategy != "STRICT_SPREAD" || len(g.Bundles) != 2 || g.Bundles[0].NodeID != node.String() || g.Bundles[1].NodeID != "" {
		t.Errorf("placement group: %+v", g)
	}
}

// job0 is a finished job whose runtime env holds a variable: only its name
// is shown.
func job0(t *testing.T) state.Job {
	t.Helper()
	return job(&protos.JobInfo{JobId: protos.NewUniqueID().Bytes(), Finished: true,
		Binaries:   []*protos.JobBinary{{Goos: "linux", Goarch: "arm64"}},
		RuntimeEnv: &protos.RuntimeEnv{EnvVars: []string{"SECRET_NAME=hunter2"}}})
}
