package scheduling

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, so callers branch with errors.Is and still get a message naming the
// node, demand or bundle at fault.
var (
	// ErrInfeasible: no alive node's Total can ever satisfy the request (in
	// Ray this is the "infeasible task" warning and the autoscaler's cue).
	ErrInfeasible = errors.New("scheduling: infeasible")
	// ErrUnschedulable: a hard constraint (node affinity) names a node that is
	// dead, unknown, excluded by the label selector, or too small.
	ErrUnschedulable = errors.New("scheduling: unschedulable")
	// ErrInvalidBundle: a placement-group bundle list is malformed.
	ErrInvalidBundle = errors.New("scheduling: invalid bundle")
	// ErrInvalidDemand: a task demand has a negative amount or empty name.
	ErrInvalidDemand = errors.New("scheduling: invalid demand")
	// ErrWait: placement groups only; the bundles fit the cluster's totals but
	// not what is available now, so the caller should retry after resources
	// are released. (Pick reports the same condition as a Decision of kind
	// Wait with a nil error.)
	ErrWait = errors.New("scheduling: not enough available resources now, retry later")
)
