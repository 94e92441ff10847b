package scheduling

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func cpu(n float64) Resources { return Resources{"CPU": int64(n * Unit)} }

func res(kv ...any) Resources {
	r := Resources{}
	for i := 0; i < len(kv); i += 2 {
		r[kv[i].(string)] = int64(kv[i+1].(float64) * Unit)
	}
	return r
}

// node is an alive node with total and avail.
func node(id string, total, avail Resources) Node {
	return Node{ID: id, Total: total, Available: avail, Alive: true}
}

func dead(n Node) Node { n.Alive = false; return n }

func labelled(n Node, kv ...string) Node {
	n.Labels = map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		n.Labels[kv[i]] = kv[i+1]
	}
	return n
}

// cloneView deep-copies v so tests can check functions leave it untouched.
func cloneView(v View) View {
	c := View{Local: v.Local}
	for _, n := range v.Nodes {
		n.Total, n.Available, n.Labels = n.Total.Clone(), n.Available.Clone(), maps.Clone(n.Labels)
		c.Nodes = append(c.Nodes, n)
	}
	return c
}

func TestResources(t *testing.T) {
	if Unit != 10000 {
		t.Fatalf("Unit = %d, must match raylet's resourceUnit 10000", Unit)
	}
	if !cpu(1).Fits(cpu(1)) || cpu(1.5).Fits(cpu(1)) || res("GPU", 1.0).Fits(cpu(8)) || !(Resources{}).Fits(nil) {
		t.Fatal("Fits wrong")
	}
	r := cpu(4)
	r.Sub(cpu(1.5))
	r.Add(res("GPU", 1.0))
	if want := res("CPU", 2.5, "GPU", 1.0); !reflect.DeepEqual(r, want) {
		t.Fatalf("got %v want %v", r, want)
	}
	if got := r.String(); got != "{CPU: 2.5, GPU: 1}" {
		t.Fatalf("String = %q", got)
	}
	if u := Utilisation(res("CPU", 8.0, "GPU", 2.0), res("CPU", 8.0, "GPU", 2.0), res("GPU", 1.0)); u != 0.5 {
		t.Fatalf("Utilisation = %v, want critical resource GPU 0.5", u)
	}
	if u := Utilisation(nil, nil, nil); u != 0 {
		t.Fatalf("Utilisation(empty) = %v", u)
	}
}

func TestPick(t *testing.T) {
	eight := cpu(8)
	gpuNode := node("g", res("CPU", 8.0, "GPU", 1.0), res("CPU", 8.0, "GPU", 1.0))
	tests := []struct {
		name    string
		view    View
		demand  Resources
		s       Strategy
		kind    DecisionKind
		node    string
		err     error
		errHave []string // substrings of the error message
	}{
		{name: "local preferred below threshold",
			view:   View{Local: "b", Nodes: []Node{node("a", eight, eight), node("b", eight, cpu(6)), node("c", eight, eight)}},
			demand: cpu(1), node: "b"},
		{name: "local at threshold goes least loaded",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, cpu(4)), node("b", eight, cpu(6)), node("c", eight, cpu(7))}},
			demand: cpu(1), node: "c"},
		{name: "local under threshold before placing stays local",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, cpu(5)), node("b", eight, cpu(6)), node("c", eight, cpu(7))}},
			demand: cpu(1), node: "a"},
		{name: "idle one-CPU local node is used",
			view:   View{Local: "a", Nodes: []Node{node("a", cpu(1), cpu(1)), node("b", eight, eight)}},
			demand: cpu(1), node: "a"},
		{name: "local above threshold goes least loaded",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, cpu(2)), node("b", eight, cpu(3)), node("c", eight, cpu(1))}},
			demand: cpu(1), node: "b"},
		{name: "ties broken in order from local",
			view:   View{Local: "b", Nodes: []Node{node("a", eight, cpu(6)), node("b", eight, cpu(1)), node("c", eight, cpu(6))}},
			demand: cpu(1), node: "c"},
		{name: "unknown local starts ties at first ID",
			view:   View{Local: "zz", Nodes: []Node{node("c", eight, eight), node("a", eight, eight)}},
			demand: cpu(1), node: "a"},
		{name: "custom threshold",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, cpu(4)), node("b", eight, eight)}},
			demand: cpu(1), s: Strategy{SpreadThreshold: 0.9}, node: "a"},
		{name: "locality preferred node under threshold",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", eight, cpu(7))}},
			demand: cpu(1), s: Strategy{PreferredNode: "b"}, node: "b"},
		{name: "locality preferred node over threshold falls to local",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", eight, cpu(3))}},
			demand: cpu(1), s: Strategy{PreferredNode: "b"}, node: "a"},
		{name: "locality preferred node dead falls to local",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), dead(node("b", eight, eight))}},
			demand: cpu(1), s: Strategy{PreferredNode: "b"}, node: "a"},
		{name: "busy everywhere waits",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, cpu(0.5)), node("b", eight, Resources{})}},
			demand: cpu(1), kind: Wait},
		{name: "GPU only on GPU node",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), gpuNode}},
			demand: res("GPU", 1.0), node: "g"},
		{name: "fractional GPU",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), gpuNode}},
			demand: res("GPU", 0.25), node: "g"},
		{name: "TPU infeasible",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), gpuNode}},
			demand: res("TPU", 1.0), kind: Infeasible, err: ErrInfeasible, errHave: []string{"TPU: 1"}},
		{name: "too big for any total is infeasible even if busy",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, Resources{})}},
			demand: cpu(16), kind: Infeasible, err: ErrInfeasible, errHave: []string{"CPU: 16"}},
		{name: "only fitting node dead is infeasible",
			view:   View{Local: "a", Nodes: []Node{node("a", cpu(1), cpu(1)), dead(gpuNode)}},
			demand: res("GPU", 1.0), kind: Infeasible, err: ErrInfeasible},
		{name: "empty view infeasible",
			view: View{}, demand: cpu(1), kind: Infeasible, err: ErrInfeasible},
		{name: "empty demand schedules locally",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, Resources{}), node("b", eight, eight)}},
			demand: Resources{}, node: "b"},
		{name: "negative demand invalid",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight)}},
			demand: cpu(-1), kind: Infeasible, err: ErrInvalidDemand, errHave: []string{`"CPU"`}},
		{name: "label selector filters out local",
			view: View{Local: "a", Nodes: []Node{labelled(node("a", eight, eight), "zone", "us-a"),
				labelled(node("b", eight, cpu(2)), "zone", "us-b"), labelled(node("c", eight, cpu(4)), "zone", "us-c")}},
			demand: cpu(1), s: Strategy{Labels: LabelSelector{"zone": {"us-b", "us-c"}}}, node: "c"},
		{name: "label selector keeps local with default",
			view: View{Local: "a", Nodes: []Node{labelled(node("a", eight, eight), "zone", "us-a"),
				labelled(node("b", eight, eight), "zone", "us-b")}},
			demand: cpu(1), s: Strategy{Labels: LabelSelector{"zone": {"us-a", "us-b"}}}, node: "a"},
		{name: "label selector missing label infeasible",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight)}},
			demand: cpu(1), s: Strategy{Labels: LabelSelector{"zone": {"us-a"}}}, kind: Infeasible, err: ErrInfeasible, errHave: []string{"zone"}},
		{name: "spread least loaded ignores local",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, cpu(7)), node("b", eight, eight)}},
			demand: cpu(1), s: Strategy{Kind: Spread}, node: "b"},
		{name: "spread index breaks ties",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", eight, eight), node("c", eight, eight)}},
			demand: cpu(1), s: Strategy{Kind: Spread, SpreadIndex: 5}, node: "c"},
		{name: "hard affinity available",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", eight, cpu(1))}},
			demand: cpu(1), s: Strategy{Kind: NodeAffinity, Affinity: Affinity{NodeID: "b"}}, node: "b"},
		{name: "hard affinity busy waits on node",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", eight, Resources{})}},
			demand: cpu(1), s: Strategy{Kind: NodeAffinity, Affinity: Affinity{NodeID: "b"}}, kind: Wait, node: "b"},
		{name: "hard affinity dead",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), dead(node("b", eight, eight))}},
			demand: cpu(1), s: Strategy{Kind: NodeAffinity, Affinity: Affinity{NodeID: "b"}},
			kind: Infeasible, err: ErrUnschedulable, errHave: []string{`"b"`, "dead"}},
		{name: "hard affinity unknown",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight)}},
			demand: cpu(1), s: Strategy{Kind: NodeAffinity, Affinity: Affinity{NodeID: "x"}},
			kind: Infeasible, err: ErrUnschedulable, errHave: []string{`"x"`, "unknown"}},
		{name: "hard affinity never fits",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", cpu(1), cpu(1))}},
			demand: cpu(2), s: Strategy{Kind: NodeAffinity, Affinity: Affinity{NodeID: "b"}},
			kind: Infeasible, err: ErrUnschedulable, errHave: []string{`"b"`, "never fit"}},
		{name: "hard affinity outside labels",
			view:   View{Local: "a", Nodes: []Node{labelled(node("b", eight, eight), "zone", "x")}},
			demand: cpu(1), s: Strategy{Kind: NodeAffinity, Affinity: Affinity{NodeID: "b"}, Labels: LabelSelector{"zone": {"y"}}},
			kind: Infeasible, err: ErrUnschedulable, errHave: []string{"labels"}},
		{name: "soft affinity dead falls back to default",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), dead(node("b", eight, eight))}},
			demand: cpu(1), s: Strategy{Kind: NodeAffinity, Affinity: Affinity{NodeID: "b", Soft: true}}, node: "a"},
		{name: "soft affinity too small falls back to default",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", cpu(1), cpu(1))}},
			demand: cpu(2), s: Strategy{Kind: NodeAffinity, Affinity: Affinity{NodeID: "b", Soft: true}}, node: "a"},
		{name: "soft affinity fallback still infeasible",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight)}},
			demand: cpu(9), s: Strategy{Kind: NodeAffinity, Affinity: Affinity{NodeID: "b", Soft: true}}, kind: Infeasible, err: ErrInfeasible},
		{name: "soft affinity busy waits on node",
			view:   View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", eight, Resources{})}},
			demand: cpu(1), s: Strategy{Kind: NodeAffinity, Affinity: Affinity{NodeID: "b", Soft: true}}, kind: Wait, node: "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneView(tc.view)
			d, err := Pick(tc.view, tc.demand, tc.s)
			if !reflect.DeepEqual(before, tc.view) {
				t.Fatal("Pick modified the view")
			}
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			for _, s := range tc.errHave {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if d.Kind != tc.kind || d.NodeID != tc.node {
				t.Fatalf("decision = %+v, want %v on %q", d, tc.kind, tc.node)
			}
			// Determinism: the snapshot's order must not matter.
			rev := cloneView(tc.view)
			slices.Reverse(rev.Nodes)
			if d2, _ := Pick(rev, tc.demand, tc.s); d2 != d {
				t.Fatalf("reversed view gave %+v, want %+v", d2, d)
			}
		})
	}
}

// applyPicks simulates a raylet applying decisions: it picks n times with s,
// subtracting each demand, and counts placements per node.
func applyPicks(t *testing.T, v View, n int, demand Resources, s Strategy) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		d, err := Pick(v, demand, s)
		if err != nil || d.Kind != Scheduled {
			t.Fatalf("Pick = %+v, %v", d, err)
		}
		counts[d.NodeID]++
		s.SpreadIndex = d.NextSpreadIndex
		v.Nodes[indexOf(v.Nodes, d.NodeID)].Available.Sub(demand)
	}
	return counts
}

func TestSpreadRepeated(t *testing.T) {
	v := View{Local: "a", Nodes: []Node{node("a", cpu(8), cpu(8)), node("b", cpu(8), cpu(8))}}
	if got := applyPicks(t, v, 8, cpu(1), Strategy{Kind: Spread}); got["a"] != 4 || got["b"] != 4 {
		t.Fatalf("8 spread placements landed %v, want 4 and 4", got)
	}
	if got := applyPicks(t, v, 8, cpu(1), Strategy{Kind: Spread}); got["a"] != 4 || got["b"] != 4 {
		t.Fatalf("next 8 spread placements landed %v, want 4 and 4", got)
	}
	if d, _ := Pick(v, cpu(1), Strategy{Kind: Spread}); d.Kind != Wait {
		t.Fatalf("full cluster: %+v, want wait", d)
	}
	// Without subtraction the cursor alone rotates.
	v = View{Local: "a", Nodes: []Node{node("a", cpu(8), cpu(8)), node("b", cpu(8), cpu(8))}}
	s := Strategy{Kind: Spread}
	var got []string
	for range 4 {
		d, _ := Pick(v, cpu(1), s)
		got = append(got, d.NodeID)
		s.SpreadIndex = d.NextSpreadIndex
	}
	if want := []string{"a", "b", "a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("round robin = %v, want %v", got, want)
	}
}

func TestDefaultRepeatedPacksThenSpreads(t *testing.T) {
	v := View{Local: "a", Nodes: []Node{node("a", cpu(8), cpu(8)), node("b", cpu(8), cpu(8))}}
	// Local takes placements while utilisation after stays < 0.5 (3 of 8),
	// then the least-loaded node wins, alternating.
	if got := applyPicks(t, v, 8, cpu(1), Strategy{}); got["a"] != 4 || got["b"] != 4 {
		t.Fatalf("landed %v", got)
	}
	v = View{Local: "a", Nodes: []Node{node("a", cpu(8), cpu(8)), node("b", cpu(8), cpu(8))}}
	if got := applyPicks(t, v, 3, cpu(1), Strategy{}); got["a"] != 3 {
		t.Fatalf("first 3 should stay local: %v", got)
	}
}

func TestPlaceBundles(t *testing.T) {
	eight := cpu(8)
	two := View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", eight, eight)}}
	three := View{Local: "b", Nodes: []Node{node("a", eight, eight), node("b", eight, eight), node("c", eight, eight)}}
	tests := []struct {
		name    string
		view    View
		bundles []Resources
		s       PGStrategy
		want    []string
		err     error
		errHave []string
	}{
		{name: "pack on local", view: three, bundles: []Resources{cpu(2), cpu(2), cpu(4)}, s: PGPack, want: []string{"b", "b", "b"}},
		{name: "pack prefers one node over local",
			view:    View{Local: "a", Nodes: []Node{node("a", eight, cpu(2)), node("b", eight, eight)}},
			bundles: []Resources{cpu(2), cpu(2)}, s: PGPack, want: []string{"b", "b"}},
		{name: "pack spills to more nodes", view: two, bundles: []Resources{cpu(4), cpu(4), cpu(4)}, s: PGPack, want: []string{"a", "a", "b"}},
		{name: "pack waits", view: View{Local: "a", Nodes: []Node{node("a", eight, cpu(1))}},
			bundles: []Resources{cpu(2)}, s: PGPack, err: ErrWait},
		{name: "pack infeasible", view: two, bundles: []Resources{cpu(8), cpu(8), cpu(1)}, s: PGPack, err: ErrInfeasible},
		{name: "spread distinct", view: three, bundles: []Resources{cpu(1), cpu(1), cpu(1)}, s: PGSpread, want: []string{"b", "c", "a"}},
		{name: "spread reuses", view: two, bundles: []Resources{cpu(1), cpu(1), cpu(1), cpu(1)}, s: PGSpread, want: []string{"a", "b", "a", "b"}},
		{name: "spread skips full node",
			view:    View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", eight, Resources{}), node("c", eight, eight)}},
			bundles: []Resources{cpu(1), cpu(1)}, s: PGSpread, want: []string{"a", "c"}},
		{name: "strict pack missing resource infeasible",
			view:    View{Local: "a", Nodes: []Node{node("a", eight, cpu(3)), node("b", eight, eight)}},
			bundles: []Resources{cpu(2), cpu(2), res("CPU", 1.0, "memory", 0.0001)}, s: PGStrictPack, err: ErrInfeasible},
		{name: "strict pack on one node with room",
			view:    View{Local: "a", Nodes: []Node{node("a", eight, cpu(3)), node("b", eight, eight)}},
			bundles: []Resources{cpu(2), cpu(2), cpu(1)}, s: PGStrictPack, want: []string{"b", "b", "b"}},
		{name: "strict pack waits", view: View{Local: "a", Nodes: []Node{node("a", eight, cpu(4)), node("b", eight, cpu(4))}},
			bundles: []Resources{cpu(3), cpu(3)}, s: PGStrictPack, err: ErrWait},
		{name: "strict pack infeasible", view: two, bundles: []Resources{cpu(5), cpu(5)}, s: PGStrictPack, err: ErrInfeasible, errHave: []string{"STRICT_PACK"}},
		{name: "strict spread", view: three, bundles: []Resources{cpu(8), cpu(8), cpu(8)}, s: PGStrictSpread, want: []string{"b", "c", "a"}},
		{name: "strict spread more bundles than nodes", view: two, bundles: []Resources{cpu(1), cpu(1), cpu(1)}, s: PGStrictSpread,
			err: ErrInfeasible, errHave: []string{"3 bundles", "2 alive nodes"}},
		{name: "strict spread needs matching",
			view:    View{Local: "a", Nodes: []Node{node("a", res("CPU", 8.0, "GPU", 1.0), res("CPU", 8.0, "GPU", 1.0)), node("b", eight, eight)}},
			bundles: []Resources{cpu(1), res("GPU", 1.0)}, s: PGStrictSpread, want: []string{"b", "a"}},
		{name: "strict spread waits", view: View{Local: "a", Nodes: []Node{node("a", eight, eight), node("b", eight, Resources{})}},
			bundles: []Resources{cpu(1), cpu(1)}, s: PGStrictSpread, err: ErrWait},
		{name: "dead nodes excluded",
			view:    View{Local: "a", Nodes: []Node{dead(node("a", eight, eight)), node("b", eight, eight), dead(node("c", eight, eight))}},
			bundles: []Resources{cpu(1), cpu(1)}, s: PGStrictSpread, err: ErrInfeasible},
		{name: "custom resource bundle", view: View{Local: "a", Nodes: []Node{node("a", eight, eight), node("g", res("GPU", 2.0), res("GPU", 2.0))}},
			bundles: []Resources{cpu(1), res("GPU", 1.0), res("GPU", 1.0)}, s: PGPack, want: []string{"a", "g", "g"}},
		{name: "TPU bundle infeasible", view: two, bundles: []Resources{res("TPU", 1.0)}, s: PGSpread, err: ErrInfeasible, errHave: []string{"TPU"}},
		{name: "no bundles", view: two, bundles: nil, s: PGPack, err: ErrInvalidBundle, errHave: []string{"no bundles"}},
		{name: "empty bundle", view: two, bundles: []Resources{cpu(1), {}}, s: PGPack, err: ErrInvalidBundle, errHave: []string{"bundle 1 is empty"}},
		{name: "zero amount", view: two, bundles: []Resources{cpu(1), {"CPU": 0}}, s: PGPack, err: ErrInvalidBundle, errHave: []string{"bundle 1", `"CPU"`}},
		{name: "negative amount", view: two, bundles: []Resources{cpu(1), cpu(1), {"GPU": 1, "CPU": -1}}, s: PGSpread, err: ErrInvalidBundle, errHave: []string{"bundle 2", `"CPU"`, "-0.0001"}},
		{name: "empty name", view: two, bundles: []Resources{{"": 1}}, s: PGSpread, err: ErrInvalidBundle, errHave: []string{"bundle 0"}},
		{name: "unknown strategy", view: two, bundles: []Resources{cpu(1)}, s: PGStrategy(9), err: ErrInvalidBundle},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneView(tc.view)
			got, err := PlaceBundles(tc.view, tc.bundles, tc.s)
			if !reflect.DeepEqual(before, tc.view) {
				t.Fatal("PlaceBundles modified the view")
			}
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			for _, s := range tc.errHave {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if err != nil && got != nil {
				t.Fatal("failure must reserve nothing and return no nodes")
			}
			// The assignment must be realisable: sum per node fits Available.
			used := map[string]Resources{}
			for i, id := range got {
				if used[id] == nil {
					used[id] = Resources{}
				}
				used[id].Add(tc.bundles[i])
			}
			for _, n := range tc.view.Nodes {
				if u := used[n.ID]; u != nil && (!n.Alive || !u.Fits(n.Available)) {
					t.Fatalf("node %s overbooked: %v > %v", n.ID, u, n.Available)
				}
			}
			rev := cloneView(tc.view)
			slices.Reverse(rev.Nodes)
			if got2, _ := PlaceBundles(rev, tc.bundles, tc.s); !slices.Equal(got2, got) {
				t.Fatalf("reversed view gave %v, want %v", got2, got)
			}
		})
	}
}

func TestStringers(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Default.String(), "DEFAULT"}, {Spread.String(), "SPREAD"}, {NodeAffinity.String(), "NODE_AFFINITY"},
		{Scheduled.String(), "scheduled"}, {Wait.String(), "wait"}, {Infeasible.String(), "infeasible"},
		{PGPack.String(), "PACK"}, {PGSpread.String(), "SPREAD"}, {PGStrictPack.String(), "STRICT_PACK"}, {PGStrictSpread.String(), "STRICT_SPREAD"},
	} {
		if c.got != c.want {
			t.Errorf("%q != %q", c.got, c.want)
		}
	}
}
