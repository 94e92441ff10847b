package scheduling

import (
	"fmt"
	"slices"
)

// Bundle is one placement-group bundle: a set of resources that must be
// reserved on a single node.
type Bundle = Resources

// PGStrategy is a placement-group strategy, as Ray's. The zero value is
// PGPack, Ray's default.
type PGStrategy int

const (
	// PGPack places bundles on as few nodes as possible, the local node
	// first; when no single node fits them all it spills to more nodes.
	PGPack PGStrategy = iota
	// PGSpread places bundles on distinct nodes when possible, then reuses
	// the nodes holding the fewest bundles.
	PGSpread
	// PGStrictPack places all bundles on one node, or fails.
	PGStrictPack
	// PGStrictSpread places every bundle on a distinct node, or fails.
	PGStrictSpread
)

func (s PGStrategy) String() string {
	switch s {
	case PGPack:
		return "PACK"
	case PGSpread:
		return "SPREAD"
	case PGStrictPack:
		return "STRICT_PACK"
	case PGStrictSpread:
		return "STRICT_SPREAD"
	}
	return fmt.Sprintf("PGStrategy(%d)", int(s))
}

// PlaceBundles assigns a node ID to every bundle (result[i] for bundles[i])
// among alive nodes, reserving against a working copy of Available so the
// bundles of one group never double-book a node. It is atomic and pure: it
// returns all assignments or none, and never modifies v.
//
// When the bundles do not fit what is available now, the same placement is
// tried against the nodes' Totals: if that succeeds the error wraps ErrWait
// (retry when resources are released), otherwise ErrInfeasible. PACK and
// SPREAD are greedy in bundle order, so they may rarely call infeasible a
// group that a cleverer packing would fit; STRICT_SPREAD uses an exact
// bipartite matching and STRICT_PACK is exact.
func PlaceBundles(v View, bundles []Resources, strategy PGStrategy) ([]string, error) {
	if err := validateBundles(bundles); err != nil {
		return nil, err
	}
	if strategy < PGPack || strategy > PGStrictSpread {
		return nil, fmt.Errorf("%w: unknown strategy %v", ErrInvalidBundle, strategy)
	}
	var nodes []Node
	for _, n := range v.sorted() {
		if n.Alive {
			nodes = append(nodes, n)
		}
	}
	// Traversal order: ID order starting at the local node.
	start := max(indexOf(nodes, v.Local), 0)
	order := rotate(len(nodes), start)
	caps := func(f func(Node) Resources) []Resources {
		out := make([]Resources, len(order))
		for i, j := range order {
			out[i] = f(nodes[j]).Clone()
		}
		return out
	}
	if idx := place(caps(func(n Node) Resources { return n.Available }), bundles, strategy); idx != nil {
		out := make([]string, len(idx))
		for b, i := range idx {
			out[b] = nodes[order[i]].ID
		}
		return out, nil
	}
	if place(caps(func(n Node) Resources { return n.Total }), bundles, strategy) != nil {
		return nil, fmt.Errorf("%w: %d bundles (%v) with %v do not fit available resources", ErrWait, len(bundles), strategy, bundles)
	}
	return nil, fmt.Errorf("%w: %d bundles %v with %v cannot fit the cluster's %d alive nodes", ErrInfeasible, len(bundles), bundles, strategy, len(nodes))
}

func validateBundles(bundles []Resources) error {
	if len(bundles) == 0 {
		return fmt.Errorf("%w: no bundles", ErrInvalidBundle)
	}
	for i, b := range bundles {
		if len(b) == 0 {
			return fmt.Errorf("%w: bundle %d is empty", ErrInvalidBundle, i)
		}
		for _, k := range b.names() {
			if k == "" {
				return fmt.Errorf("%w: bundle %d: resource with empty name", ErrInvalidBundle, i)
			}
			if b[k] <= 0 {
				return fmt.Errorf("%w: bundle %d: resource %q: amount %g must be positive", ErrInvalidBundle, i, k, float64(b[k])/Unit)
			}
		}
	}
	return nil
}

// place assigns each bundle an index into caps (nodes in traversal order),
// subtracting from caps; it returns nil when the strategy cannot be met.
func place(caps []Resources, bundles []Resources, s PGStrategy) []int {
	switch s {
	case PGStrictPack:
		return strictPack(caps, bundles)
	case PGPack:
		if out := strictPack(caps, bundles); out != nil {
			return out
		}
		return greedy(caps, bundles, packPick)
	case PGSpread:
		return greedy(caps, bundles, spreadPick)
	default:
		return strictSpread(caps, bundles)
	}
}

// strictPack puts everything on the first node that fits the sum.
func strictPack(caps []Resources, bundles []Resources) []int {
	sum := Resources{}
	for _, b := range bundles {
		sum.Add(b)
	}
	for i, c := range caps {
		if sum.Fits(c) {
			c.Sub(sum)
			out := make([]int, len(bundles))
			for b := range out {
				out[b] = i
			}
			return out
		}
	}
	return nil
}

// greedy places bundles in order, each on the node chosen by pick among
// those it fits (count[i] is the number of bundles already on node i);
// pick returns -1 for none.
func greedy(caps []Resources, bundles []Resources, pick func(caps []Resources, b Resources, count []int) int) []int {
	count := make([]int, len(caps))
	out := make([]int, len(bundles))
	for bi, b := range bundles {
		i := pick(caps, b, count)
		if i < 0 {
			return nil
		}
		caps[i].Sub(b)
		count[i]++
		out[bi] = i
	}
	return out
}

// packPick prefers a node already in use (first in traversal order), then
// the first unused node that fits.
func packPick(caps []Resources, b Resources, count []int) int {
	for _, used := range []bool{true, false} {
		for i, c := range caps {
			if (count[i] > 0) == used && b.Fits(c) {
				return i
			}
		}
	}
	return -1
}

// spreadPick prefers the fitting node with the fewest bundles, ties broken
// in traversal order.
func spreadPick(caps []Resources, b Resources, count []int) int {
	best := -1
	for i, c := range caps {
		if b.Fits(c) && (best < 0 || count[i] < count[best]) {
			best = i
		}
	}
	return best
}

// strictSpread finds a bundle -> distinct node assignment by augmenting
// paths (Kuhn's bipartite matching), trying nodes in traversal order. It is
// exact: it fails only if no one-bundle-per-node assignment exists.
func strictSpread(caps []Resources, bundles []Resources) []int {
	if len(bundles) > len(caps) {
		return nil
	}
	holder := slices.Repeat([]int{-1}, len(caps)) // node -> bundle
	var try func(b int, seen []bool) bool
	try = func(b int, seen []bool) bool {
		// A free node first (plain greedy, keeps the traversal order).
		for i, c := range caps {
			if holder[i] < 0 && !seen[i] && bundles[b].Fits(c) {
				seen[i] = true
				holder[i] = b
				return true
			}
		}
		// Else displace a bundle that can move elsewhere.
		for i, c := range caps {
			if seen[i] || !bundles[b].Fits(c) {
				continue
			}
			seen[i] = true
			if holder[i] < 0 || try(holder[i], seen) {
				holder[i] = b
				return true
			}
		}
		return false
	}
	for b := range bundles {
		if !try(b, make([]bool, len(caps))) {
			return nil
		}
	}
	out := make([]int, len(bundles))
	for i, b := range holder {
		if b >= 0 {
			out[b] = i
			caps[i].Sub(bundles[b])
		}
	}
	return out
}
