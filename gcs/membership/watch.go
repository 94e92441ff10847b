package membership

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// EventKind says what happened to a member.
type EventKind int

const (
	// Joined: a member not seen before (or seen leaving or expiring since)
	// has a record.
	Joined EventKind = iota + 1
	// Updated: a known member wrote a different record. Refreshes that
	// rewrite the same bytes are not reported.
	Updated
	// Left: the member deleted its record (a clean Leave).
	Left
	// Expired: the record was removed without a Leave: the member stopped
	// refreshing and the server expired it after TTL (or an operator
	// purged the key, which the KV API reports the same way).
	Expired
	// Synced: the events before it described the members present when the
	// watch started; every later event is a change. Sent once per Watch.
	Synced
)

func (k EventKind) String() string {
	switch k {
	case Joined:
		return "Joined"
	case Updated:
		return "Updated"
	case Left:
		return "Left"
	case Expired:
		return "Expired"
	case Synced:
		return "Synced"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one change of the member table.
type Event struct {
	Kind EventKind
	// ID is the member id; empty for Synced.
	ID string
	// Value is the new record for Joined and Updated, and the last known
	// record for Left and Expired (so a consumer knows who went without
	// keeping its own copy).
	Value []byte
	// Revision is the stream sequence of the change; 0 for Synced and for
	// an expiry found by resynchronisation.
	Revision uint64
	// Time is when the server stored the change: for Expired, when the
	// server wrote its expiry marker.
	Time time.Time
}

func (e Event) String() string {
	if e.Kind == Synced {
		return "Synced"
	}
	return fmt.Sprintf("%s %s rev=%d", e.Kind, e.ID, e.Revision)
}

// resyncEvery is how often a watch compares what it knows with a fresh
// snapshot of the bucket; a variable so tests can shorten it.
var resyncEvery = func(ttl time.Duration) time.Duration { return 3 * ttl }

// Watch delivers the current members (Joined each), then Synced, then
// every change until ctx ends or the Registry closes, when the channel
// closes. It also closes if the underlying NATS watcher ends (the
// connection closed for good); a consumer that must keep watching calls
// Watch again and gets a fresh view.
//
// Expiry is detected by the server: when a record reaches the bucket's
// MaxAge (TTL) it is removed and a marker with Nats-Marker-Reason: MaxAge
// is written in its place, which the KV watcher reports as a purge and
// Watch as Expired. A clean Leave is a KV delete and arrives as Left.
//
// A watcher cut off from NATS for longer than the marker lives (TTL) could
// miss an expiry: its consumer resumes after the marker was removed. So
// every 3 TTL it compares its known members with a snapshot and reports
// members gone from the bucket as Expired (or Left, when the delete is
// still there to say so).
//
// The channel is unbuffered beyond a few events: a consumer that stops
// reading holds the watch (and its NATS subscription) back.
func (r *Registry) Watch(ctx context.Context) (<-chan Event, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	r.wg.Add(1)
	r.mu.Unlock()
	w, err := r.kv.WatchAll(ctx)
	if err != nil {
		r.wg.Done()
		return nil, fmt.Errorf("membership: watch bucket %s: %w", r.opts.Bucket, err)
	}
	out := make(chan Event, 16)
	go r.watchLoop(ctx, w, out)
	return out, nil
}

func (r *Registry) watchLoop(ctx context.Context, w jetstream.KeyWatcher, out chan<- Event) {
	defer r.wg.Done()
	defer close(out)
	defer stopWatcher(w)
	send := func(ev Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
		case <-r.done:
		}
		return false
	}
	st := newWatchState()
	resync := time.NewTicker(resyncEvery(r.opts.TTL))
	defer resync.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() == nil {
					r.log.Warn().Msg("KV watcher closed; watch ends")
				}
				return
			}
			if e == nil {
				if !send(Event{Kind: Synced}) {
					return
				}
				continue
			}
			if ev, ok := st.apply(e); ok && !send(ev) {
				return
			}
		case <-resync.C:
			sctx, cancel := context.WithTimeout(ctx, r.opTimeout())
			snap, maxRev, err := r.snapshot(sctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn().Err(err).Msg("resync snapshot failed; trying again later")
				}
				continue
			}
			for _, ev := range st.reconcile(snap, maxRev, time.Now()) {
				r.log.Warn().Str("member", ev.ID).Stringer("kind", ev.Kind).Msg("watch missed a removal (NATS connection gap?); reported by resync")
				if !send(ev) {
					return
				}
			}
		case <-ctx.Done():
			return
		case <-r.done:
			return
		}
	}
}

// watchState is what one watch knows: the members it reported and the
// last record and revision of each. Tracking them is what tells a join
// from an update, hides refreshes, and drops the markers of members never
// reported (the expiry of a deleted key's tombstone, or markers replayed
// in the initial snapshot).
type watchState struct {
	known map[string]*known
}

type known struct {
	value []byte
	rev   uint64
}

func newWatchState() *watchState { return &watchState{known: make(map[string]*known)} }

func (s *watchState) apply(e jetstream.KeyValueEntry) (Event, bool) {
	id := e.Key()
	k := s.known[id]
	if k != nil && e.Revision() <= k.rev {
		return Event{}, false
	}
	ev := Event{ID: id, Revision: e.Revision(), Time: e.Created()}
	switch e.Operation() {
	case jetstream.KeyValuePut:
		if k == nil {
			s.known[id] = &known{value: slices.Clone(e.Value()), rev: e.Revision()}
			ev.Kind, ev.Value = Joined, e.Value()
			return ev, true
		}
		k.rev = e.Revision()
		if bytes.Equal(k.value, e.Value()) {
			return Event{}, false // a refresh
		}
		k.value = slices.Clone(e.Value())
		ev.Kind, ev.Value = Updated, e.Value()
		return ev, true
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		if k == nil {
			return Event{}, false
		}
		delete(s.known, id)
		ev.Kind, ev.Value = removalKind(e.Operation()), k.value
		return ev, true
	}
	return Event{}, false
}

// removalKind maps how a record went to the event kind. nats.go reports a
// KV delete (KV-Operation: DEL, written by Leave) as KeyValueDelete, and
// the server's MaxAge marker (Nats-Marker-Reason: MaxAge) as
// KeyValuePurge.
func removalKind(op jetstream.KeyValueOp) EventKind {
	if op == jetstream.KeyValueDelete {
		return Left
	}
	return Expired
}

// reconcile reports the known members that snap (the bucket's latest
// entries, complete up to revision maxRev) shows gone although this watch
// saw no removal. Members learned after maxRev are not judged: the
// snapshot predates them.
func (s *watchState) reconcile(snap map[string]jetstream.KeyValueEntry, maxRev uint64, now time.Time) []Event {
	var evs []Event
	for id, k := range s.known {
		if k.rev > maxRev {
			continue
		}
		e, ok := snap[id]
		if ok && e.Operation() == jetstream.KeyValuePut {
			continue // present; a newer record, if any, arrives on the watch
		}
		ev := Event{Kind: Expired, ID: id, Value: k.value, Time: now}
		if ok {
			ev.Kind, ev.Revision, ev.Time = removalKind(e.Operation()), e.Revision(), e.Created()
		}
		delete(s.known, id)
		evs = append(evs, ev)
	}
	slices.SortFunc(evs, func(a, b Event) int { return strings.Compare(a.ID, b.ID) })
	return evs
}
