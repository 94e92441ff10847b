package transfer

import (
	"context"
	"slices"
	"sync"
)

// admission limits the bytes of pulls being written into the store at
// once, as Ray's pull manager does: a node that starts every requested pull
// at once fills its store with half-written objects, none of which can be
// used, and spills or fails the objects it already had. Pulls are admitted
// in arrival order; one that does not fit waits, and so do all after it,
// so a large pull is not starved by a stream of small ones.
type admission struct {
	mu       sync.Mutex
	limit    uint64
	inFlight uint64 // bytes of admitted pulls
	n        int    // admitted pulls
	queue    []*admissionWaiter
}

type admissionWaiter struct {
	size     uint64
	ready    chan struct{} // closed when admitted
	admitted bool          // guarded by admission.mu
}

// fitsLocked lets a pull larger than the whole budget in when nothing else
// is in flight; refusing it would make it wait forever.
func (a *admission) fitsLocked(size uint64) bool {
	return a.n == 0 || a.inFlight+size <= a.limit
}

// tryAcquire admits size bytes now if no one is queued and they fit.
func (a *admission) tryAcquire(size uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queue) > 0 || !a.fitsLocked(size) {
		return false
	}
	a.inFlight += size
	a.n++
	return true
}

// acquire waits for its turn and admits size bytes, or gives up with
// ctx's error.
func (a *admission) acquire(ctx context.Context, size uint64) error {
	a.mu.Lock()
	if len(a.queue) == 0 && a.fitsLocked(size) {
		a.inFlight += size
		a.n++
		a.mu.Unlock()
		return nil
	}
	w := &admissionWaiter{size: size, ready: make(chan struct{})}
	a.queue = append(a.queue, w)
	a.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	a.mu.Lock()
	if w.admitted {
		a.mu.Unlock()
		a.release(size)
	} else {
		a.queue = slices.DeleteFunc(a.queue, func(x *admissionWaiter) bool { return x == w })
		// Whoever queued behind this pull may fit now.
		a.grantLocked()
		a.mu.Unlock()
	}
	return context.Cause(ctx)
}

// release returns the bytes of a finished pull and admits waiters.
func (a *admission) release(size uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inFlight -= size
	a.n--
	a.grantLocked()
}

func (a *admission) grantLocked() {
	for len(a.queue) > 0 && a.fitsLocked(a.queue[0].size) {
		w := a.queue[0]
		a.queue = a.queue[1:]
		a.inFlight += w.size
		a.n++
		w.admitted = true
		close(w.ready)
	}
}

func (a *admission) stats() (inFlight uint64, waiting int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inFlight, len(a.queue)
}
