package serve

import (
	"context"
	"net/http"
	"strings"
	"testing"
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
	c.Options.NumReplicas = 5
	if a.version() == b.version() || a.version() == c.version() {
		t.Fatal("a changed argument or option keeps the version")
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
