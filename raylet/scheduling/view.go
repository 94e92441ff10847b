package scheduling

import (
	"slices"
	"strings"
)

// Node is one raylet's entry in the cluster resource view.
type Node struct {
	ID        string
	Total     Resources // capacity; decides feasibility (can it ever fit?)
	Available Resources // free now; decides placement (does it fit now?)
	Labels    map[string]string
	Alive     bool
}

// View is a snapshot of the cluster resource view as seen by the raylet
// whose node ID is Local. Functions here never modify it: they sort a copy
// of Nodes by ID so that results do not depend on the snapshot's order.
type View struct {
	Local string
	Nodes []Node
}

// sorted returns the view's nodes sorted by ID (a shallow copy).
func (v View) sorted() []Node {
	ns := slices.Clone(v.Nodes)
	slices.SortStableFunc(ns, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return ns
}

// rotate returns the indexes of ns in sorted order starting at start (mod
// len): the deterministic traversal order used to break ties.
func rotate(n, start int) []int {
	order := make([]int, n)
	if n == 0 {
		return order
	}
	start = ((start % n) + n) % n
	for i := range order {
		order[i] = (start + i) % n
	}
	return order
}

// indexOf returns the index of id in ns, or -1.
func indexOf(ns []Node, id string) int {
	return slices.IndexFunc(ns, func(n Node) bool { return n.ID == id })
}

// LabelSelector is a hard node filter: for every key the node's label must
// equal one of the listed values (a missing label never matches). A nil or
// empty selector matches every node.
type LabelSelector map[string][]string

// Matches reports whether labels satisfy s.
func (s LabelSelector) Matches(labels map[string]string) bool {
	for k, allowed := range s {
		v, ok := labels[k]
		if !ok || !slices.Contains(allowed, v) {
			return false
		}
	}
	return true
}
