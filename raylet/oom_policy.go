package raylet

import "sort"

// oomCandidate is a worker holding a lease that the memory monitor may
// kill.
type oomCandidate struct {
	// Owner is who asked for the lease (a driver or a worker): the tasks
	// of one owner form a group, as Ray groups them by their caller.
	Owner string
	// Granted orders leases by grant: higher is newer.
	Granted uint64
	// Retriable: the lease's tasks may be retried (MaxRetries != 0).
	Retriable bool
	// Actor: a dedicated lease, the process of an actor.
	Actor bool
	// Detached: a detached (named) actor, which outlives its driver.
	Detached bool
}

// oomChoice is the policy's answer: the candidate to kill, and whether
// its task may be retried (false: it was the last task of its owner's
// group, or not retriable, so retrying would only loop; Ray's
// should_retry).
type oomChoice struct {
	Index int
	Retry bool
}

// pickOOMVictim is the memory monitor's worker killing policy, Ray's
// group-by-owner policy with goray's order for actors:
//
//  1. Task workers before actors. Among tasks, retriable groups first; a
//     group is the retriable tasks of one owner (the non-retriable tasks of
//     every owner form one group), the largest group first, then the group
//     whose oldest lease is newest; within the group, the newest lease.
//     Its task is retried only if its group keeps another task running
//     here: each owner keeps one task making progress, and a task that
//     alone needs more memory than the node has fails instead of looping.
//  2. Actors only when no task worker is left: non-detached ones first,
//     detached (named) actors last, newest first. Whether an actor comes
//     back is its MaxRestarts' business, not the policy's.
//
// ok is false when there is no candidate.
func pickOOMVictim(cands []oomCandidate) (c oomChoice, ok bool) {
	type group struct {
		retriable bool
		members   []int
		oldest    uint64
	}
	groups := map[string]*group{}
	var order []string
	var actors []int
	for i, x := range cands {
		if x.Actor {
			actors = append(actors, i)
			continue
		}
		key := "\x00non-retriable"
		if x.Retriable {
			key = "r:" + x.Owner
		}
		g, seen := groups[key]
		if !seen {
			g = &group{retriable: x.Retriable, oldest: x.Granted}
			groups[key] = g
			order = append(order, key)
		}
		g.members = append(g.members, i)
		g.oldest = min(g.oldest, x.Granted)
	}
	if len(order) > 0 {
		sort.SliceStable(order, func(a, b int) bool {
			ga, gb := groups[order[a]], groups[order[b]]
			if ga.retriable != gb.retriable {
				return ga.retriable
			}
			if len(ga.members) != len(gb.members) {
				return len(ga.members) > len(gb.members)
			}
			return ga.oldest > gb.oldest
		})
		g := groups[order[0]]
		best := g.members[0]
		for _, i := range g.members[1:] {
			if cands[i].Granted > cands[best].Granted {
				best = i
			}
		}
		return oomChoice{Index: best, Retry: g.retriable && len(g.members) > 1}, true
	}
	if len(actors) == 0 {
		return oomChoice{}, false
	}
	best := actors[0]
	for _, i := range actors[1:] {
		a, b := cands[i], cands[best]
		if a.Detached != b.Detached {
			if !a.Detached {
				best = i
			}
			continue
		}
		if a.Granted > b.Granted {
			best = i
		}
	}
	return oomChoice{Index: best, Retry: true}, true
}
