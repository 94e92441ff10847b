// Package scheduling is the raylet's cluster scheduling policy: pure,
// deterministic, I/O-free functions that pick a node for a task or actor
// lease and place placement-group bundles, following Ray's policies
// (hybrid/DEFAULT, SPREAD, node affinity, label selectors; PACK, SPREAD,
// STRICT_PACK, STRICT_SPREAD) in the style of Nomad's scheduler: a pipeline
// of small steps, eligible -> feasible (fits Total) -> available (fits
// Available) -> score -> pick, each easy to table-test.
//
// Keeping the policy free of RPCs, locks and clocks means the raylet owns
// all state: it snapshots its cluster resource view, asks for a decision and
// applies it (subtracting the demand, forwarding the lease, queueing on
// Wait). It does not import package raylet, which imports it; Resources
// uses the same fixed-point Unit as raylet.ResourceSet.
//
// Usage:
//
//	v := scheduling.View{Local: "a", Nodes: []scheduling.Node{
//		{ID: "a", Alive: true, Total: scheduling.Resources{"CPU": 8 * scheduling.Unit}, Available: ...},
//		{ID: "b", Alive: true, ...},
//	}}
//	d, err := scheduling.Pick(v, scheduling.Resources{"CPU": 1 * scheduling.Unit}, scheduling.Strategy{})
//	switch {
//	case errors.Is(err, scheduling.ErrInfeasible): // warn, tell the autoscaler
//	case err != nil: // e.g. ErrUnschedulable: fail the task
//	case d.Kind == scheduling.Wait: // queue, retry when resources free up
//	default: // lease on d.NodeID
//	}
//
//	nodes, err := scheduling.PlaceBundles(v, []scheduling.Resources{{"GPU": scheduling.Unit}, {"GPU": scheduling.Unit}}, scheduling.PGStrictSpread)
//	// errors.Is(err, scheduling.ErrWait): retry later; nothing was reserved.
package scheduling
