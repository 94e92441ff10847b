package serve

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

type unitInner struct{}

type unitOuter struct{}

func (unitOuter) ServeHTTP(w http.ResponseWriter, r *http.Request) {}

type unitOuterArgs struct {
	Inner Handle[unitInner]
	Note  string
}

var (
	unitInnerDep = Register("unit-inner", func(ctx context.Context, n int) (*unitInner, error) { return &unitInner{}, nil })
	unitOuterDep = Register("unit-outer", func(ctx context.Context, a unitOuterArgs) (*unitOuter, error) { return &unitOuter{}, nil }, NumReplicas(3))
)

func TestBindFindsHandles(t *testing.T) {
	inner := unitInnerDep.Bind(7)
	outer := unitOuterDep.Bind(unitOuterArgs{Inner: HandleOf(inner), Note: "x"})
	if len(outer.spec.deps) != 1 || outer.spec.deps[0] != &inner.spec {
		t.Fatalf("deps: %v", outer.spec.deps)
	}
	if outer.spec.opts.NumReplicas != 3 || outer.spec.err != nil {
		t.Fatalf("spec: %+v", outer.spec)
	}
	if unitInnerDep.Bind(7).spec.deps != nil {
		t.Fatal("a handle-free argument has deps")
	}
}

func TestCheckSpec(t *testing.T) {
	ok := AppSpec{Name: "a", RoutePrefix: "/a", Ingress: "unit-outer", Deployments: []DeploymentSpec{{Name: "unit-outer", Options: defaultOptions()}}}
	if err := checkSpec(ok); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*AppSpec)
		want string
	}{
		{"bad name", func(s *AppSpec) { s.Name = "a/b" }, "application name"},
		{"bad prefix", func(s *AppSpec) { s.RoutePrefix = "a" }, "route prefix"},
		{"unknown deployment", func(s *AppSpec) { s.Deployments[0].Name = "nope"; s.Ingress = "nope" }, "no such deployment"},
		{"ingress missing", func(s *AppSpec) { s.Ingress = "unit-inner" }, "is not among"},
		{"no HTTP", func(s *AppSpec) {
			s.Ingress = "unit-inner"
			s.Deployments = []DeploymentSpec{{Name: "unit-inner", Options: defaultOptions()}}
		}, "does not serve HTTP"},
		{"zero replicas", func(s *AppSpec) { s.Deployments[0].Options.NumReplicas = 0 }, "NumReplicas"},
	} {
		s := ok
		s.Deployments = append([]DeploymentSpec(nil), ok.Deployments...)
		tc.mod(&s)
		if err := checkSpec(s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestVersionFollowsArgsAndOptions(t *testing.T) {
	a := DeploymentSpec{Name: "d", Args: []byte{1}, Options: defaultOptions()}
	b := a
	if a.version() != b.version() {
		t.Fatal("equal specs, different versions")
	}
	b.Args = []byte{2}
	c := a
	c.Options.MaxOngoingRequests = 5
	if a.version() == b.version() || a.version() == c.version() {
		t.Fatal("a changed argument or option keeps the version")
	}
	// Scaling is no new version: the replicas stay.
	d := a
	d.Options.NumReplicas = 7
	d.Options.Autoscaling = &AutoscalingConfig{MaxReplicas: 3}
	if a.version() != d.version() {
		t.Fatal("a new number of replicas makes a new version")
	}
}

func TestAutoscaleDecisions(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	st := &depState{app: "a", want: 1, version: "v1", spec: DeploymentSpec{Name: "d", Options: DeploymentOptions{
		Autoscaling: &AutoscalingConfig{MinReplicas: 1, MaxReplicas: 4, TargetOngoingRequests: 2, UpscaleDelay: time.Second, DownscaleDelay: 3 * time.Second}}}}
	load := func(ongoing ...int) {
		st.replicas = nil
		for _, n := range ongoing {
			st.replicas = append(st.replicas, &replicaState{version: "v1", ready: true, ongoing: n})
		}
	}
	load(9) // wants ceil(9/2) = 5, capped at 4
	st.autoscale(t0)
	if st.want != 1 {
		t.Fatal("scaled up before the delay")
	}
	st.autoscale(t0.Add(500 * time.Millisecond))
	if st.want != 1 {
		t.Fatal("scaled up before the delay")
	}
	st.autoscale(t0.Add(1100 * time.Millisecond))
	if st.want != 4 || len(st.decisions) != 1 {
		t.Fatalf("after the delay: want %d, decisions %v", st.want, st.decisions)
	}
	load(0, 0, 0, 0) // idle: wants the minimum, after the longer delay
	st.autoscale(t0.Add(2 * time.Second))
	st.autoscale(t0.Add(4 * time.Second))
	if st.want != 4 {
		t.Fatal("scaled down before the delay")
	}
	load(4, 4, 0, 0) // busy again (8 in flight: 4 replicas): the idle spell is over
	st.autoscale(t0.Add(4500 * time.Millisecond))
	load(0, 0, 0, 0)
	st.autoscale(t0.Add(5 * time.Second))
	st.autoscale(t0.Add(7 * time.Second))
	if st.want != 4 {
		t.Fatal("an interrupted idle spell counted")
	}
	st.autoscale(t0.Add(8100 * time.Millisecond))
	if st.want != 1 {
		t.Fatalf("after the delay: want %d", st.want)
	}
}

func TestProxyRoutes(t *testing.T) {
	p := &proxy{routes: []Route{{Prefix: "/api/v2", App: "v2"}, {Prefix: "/api", App: "v1"}, {Prefix: "/", App: "root"}}}
	for path, want := range map[string]string{"/api/v2/x": "v2", "/api/v2": "v2", "/api/v20": "v1", "/api": "v1", "/other": "root"} {
		if r, ok := p.route(path); !ok || r.App != want {
			t.Errorf("%s -> %v %v, want %s", path, r.App, ok, want)
		}
	}
	p.routes = p.routes[:2]
	if _, ok := p.route("/other"); ok {
		t.Error("/other routed without a / route")
	}
}
