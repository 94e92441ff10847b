package membership

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// testTTL is short so expiries happen within a test's patience, and the
// margin covers the server's expiry scan (it fires on the oldest record's
// due time, at least 250 ms apart) and a busy -race run.
const (
	testTTL    = time.Second
	testMargin = 1500 * time.Millisecond
)

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Bucket != DefaultBucket || o.TTL != DefaultTTL || o.Heartbeat != DefaultTTL/3 || o.Replicas != 1 {
		t.Errorf("defaults = %+v", o)
	}
	if got := (Options{TTL: 1500 * time.Millisecond}).markerTTL(); got != 2*time.Second {
		t.Errorf("markerTTL(1.5s) = %s, want 2s (whole seconds)", got)
	}
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts Options
		want string // in the message
	}{
		{"ttl too small", Options{TTL: 500 * time.Millisecond}, "TTL 500ms is below the minimum 1s"},
		{"negative ttl", Options{TTL: -time.Second}, "below the minimum"},
		{"heartbeat equals ttl", Options{TTL: 2 * time.Second, Heartbeat: 2 * time.Second}, "Heartbeat 2s must be shorter than TTL 2s"},
		{"heartbeat above ttl", Options{Heartbeat: time.Minute}, "Heartbeat 1m0s must be shorter than TTL 10s"},
		{"negative heartbeat", Options{Heartbeat: -time.Second}, "Heartbeat -1s is negative"},
		{"bad bucket", Options{Bucket: "a.b"}, `bucket name "a.b"`},
		{"too many replicas", Options{Replicas: 7}, "Replicas 7: want 1 to 5"},
		{"negative replicas", Options{Replicas: -1}, "Replicas -1"},
	}
	for _, c := range cases {
		// Open validates before touching NATS, so no server is needed.
		_, err := Open(context.Background(), nil, c.opts)
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrInvalidOptions with %q", c.name, err, c.want)
		}
	}
}

func TestBucketConfig(t *testing.T) {
	t.Parallel()
	js := connect(t, startNATS(t))
	r := open(t, js, Options{TTL: 2 * time.Second})
	st, err := r.KeyValue().Status(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != DefaultBucket || st.TTL() != 2*time.Second || st.LimitMarkerTTL() != 2*time.Second || st.History() != 1 {
		t.Errorf("bucket %s: TTL %s, marker TTL %s, history %d", st.Bucket(), st.TTL(), st.LimitMarkerTTL(), st.History())
	}
	if st.Config().Storage != jetstream.FileStorage {
		t.Errorf("storage %v, want file", st.Config().Storage)
	}
	// A second process with the same options binds to it.
	open(t, js, Options{TTL: 2 * time.Second})
}

func TestBucketMismatch(t *testing.T) {
	t.Parallel()
	js := connect(t, startNATS(t))
	open(t, js, Options{TTL: 2 * time.Second})
	_, err := Open(ctxT(t), js, Options{TTL: 3 * time.Second})
	if !errors.Is(err, ErrBucketMismatch) || !strings.Contains(err.Error(), "TTL 2s") {
		t.Errorf("other TTL: %v", err)
	}
	// A bucket made without limit markers would never report expiries.
	if _, err := js.CreateKeyValue(ctxT(t), jetstream.KeyValueConfig{Bucket: "plain", TTL: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctxT(t), js, Options{Bucket: "plain", TTL: 2 * time.Second})
	if !errors.Is(err, ErrBucketMismatch) || !strings.Contains(err.Error(), "no limit markers") {
		t.Errorf("no markers: %v", err)
	}
}

func TestJoinUpdateLeave(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	r := open(t, connect(t, s), Options{TTL: testTTL})
	events := watch(t, r)
	expect(t, events, 5*time.Second, Synced, "")

	m, err := r.Join(ctxT(t), "node-a", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, events, 2*time.Second, Joined, "node-a"); string(ev.Value) != "v1" || ev.Revision == 0 || ev.Time.IsZero() {
		t.Errorf("joined: %+v", ev)
	}
	if err := m.Update([]byte("v2")); err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, events, 2*time.Second, Updated, "node-a"); string(ev.Value) != "v2" {
		t.Errorf("updated value %q", ev.Value)
	}
	members, err := r.Members(ctxT(t))
	if err != nil || len(members) != 1 || string(members["node-a"]) != "v2" {
		t.Fatalf("Members = %q, %v", members, err)
	}

	start := time.Now()
	if err := m.Leave(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ev := expect(t, events, time.Second, Left, "node-a")
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Left took %s", d)
	}
	if string(ev.Value) != "v2" {
		t.Errorf("Left carries %q, want the last record", ev.Value)
	}
	// The delete's tombstone expires after TTL too, and the server writes a
	// MaxAge marker for it; that must not be reported as a second removal.
	quiet(t, events, testTTL+testMargin)
	if members, err := r.Members(ctxT(t)); err != nil || len(members) != 0 {
		t.Errorf("Members after Leave = %q, %v", members, err)
	}

	if err := m.Leave(ctxT(t)); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if err := m.Update([]byte("v3")); !errors.Is(err, ErrNotJoined) {
		t.Errorf("Update after Leave: %v", err)
	}
	// The id is free again.
	m2, err := r.Join(ctxT(t), "node-a", []byte("v4"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, events, 2*time.Second, Joined, "node-a")
	_ = m2.Leave(ctxT(t))
}

// lastWrites records, per key, when the server stored each put, so expiry
// latency can be measured against the record's real age.
type lastWrites struct {
	mu  sync.Mutex
	put map[string]time.Time
}

func recordWrites(t *testing.T, r *Registry) *lastWrites {
	w, err := r.KeyValue().WatchAll(ctxT(t), jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	lw := &lastWrites{put: make(map[string]time.Time)}
	go func() {
		for e := range w.Updates() {
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				lw.mu.Lock()
				lw.put[e.Key()] = e.Created()
				lw.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { stopWatcher(w) })
	return lw
}

func (lw *lastWrites) get(id string) time.Time {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.put[id]
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	watcher := open(t, connect(t, s), Options{TTL: testTTL})
	writes := recordWrites(t, watcher)
	events := watch(t, watcher)
	expect(t, events, 5*time.Second, Synced, "")

	// Each member is another process with a connection of its own.
	const n = 3
	cancels := make([]context.CancelFunc, n)
	for i := range n {
		r := open(t, connect(t, s), Options{TTL: testTTL})
		life, cancel := context.WithCancel(ctxT(t))
		cancels[i] = cancel
		id := fmt.Sprintf("node-%d", i)
		if _, err := r.Join(life, id, []byte(id)); err != nil {
			t.Fatal(err)
		}
		expect(t, events, 2*time.Second, Joined, id)
	}
	// Several heartbeats pass: refreshes are neither joins nor updates.
	quiet(t, events, 3*testTTL/2)

	// Crash them one after another, a third of a TTL apart, so each expiry
	// is timed on its own.
	crashed := make(map[string]time.Time)
	for i, cancel := range cancels {
		cancel()
		crashed[fmt.Sprintf("node-%d", i)] = time.Now()
		time.Sleep(testTTL / 3)
	}
	var worst time.Duration
	for range n {
		ev := next(t, events, testTTL+testMargin)
		if ev.Kind != Expired {
			t.Fatalf("got %v, want Expired", ev)
		}
		if string(ev.Value) != ev.ID {
			t.Errorf("Expired %s carries %q, want its last record", ev.ID, ev.Value)
		}
		sinceCrash := time.Since(crashed[ev.ID])
		// The marker's server time against the last refresh's: how long
		// after TTL the server noticed.
		late := ev.Time.Sub(writes.get(ev.ID)) - testTTL
		t.Logf("%s expired %s after its crash; marker written %s after TTL ran out", ev.ID, sinceCrash.Round(time.Millisecond), late.Round(time.Millisecond))
		if late < 0 {
			t.Errorf("%s expired %s before its TTL", ev.ID, -late)
		}
		if sinceCrash > testTTL+testMargin {
			t.Errorf("%s expired %s after its crash, want within TTL %s + %s", ev.ID, sinceCrash, testTTL, testMargin)
		}
		worst = max(worst, late)
	}
	t.Logf("worst expiry latency beyond TTL: %s", worst.Round(time.Millisecond))
	checkFor(t, 2*time.Second, 50*time.Millisecond, func() error {
		m, err := watcher.Members(ctxT(t))
		if err != nil || len(m) != 0 {
			return fmt.Errorf("members %q, %v", m, err)
		}
		return nil
	})
}

func TestLateWatcherGetsCurrentMembersFirst(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	r := open(t, connect(t, s), Options{TTL: testTTL})
	for _, id := range []string{"a", "b", "gone"} {
		if _, err := r.Join(ctxT(t), id, []byte("v-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	gone := r.members["gone"]
	r.mu.Unlock()
	if err := gone.Leave(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// Let a few refreshes happen so the bucket holds rewritten records.
	time.Sleep(testTTL / 2)

	late := open(t, connect(t, s), Options{TTL: testTTL})
	events := watch(t, late)
	seen := map[string]string{}
	for {
		ev := next(t, events, 5*time.Second)
		if ev.Kind == Synced {
			break
		}
		if ev.Kind != Joined {
			t.Fatalf("before Synced: %v", ev)
		}
		seen[ev.ID] = string(ev.Value)
	}
	if len(seen) != 2 || seen["a"] != "v-a" || seen["b"] != "v-b" {
		t.Errorf("initial members %v, want a and b", seen)
	}
	quiet(t, events, testTTL)
}

func TestRejoinAfterPause(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	watcher := open(t, connect(t, s), Options{TTL: testTTL})
	events := watch(t, watcher)
	expect(t, events, 5*time.Second, Synced, "")

	r := open(t, connect(t, s), Options{TTL: testTTL})
	m, err := r.Join(ctxT(t), "sleepy", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, events, 2*time.Second, Joined, "sleepy")

	// Holding the write lock stalls every refresh, as a stopped process
	// (SIGSTOP, a long GC pause, a frozen VM) would.
	m.mu.Lock()
	expect(t, events, testTTL+testMargin, Expired, "sleepy")
	m.mu.Unlock()

	// The next refresh finds the expiry marker and writes the record again.
	if ev := expect(t, events, testTTL, Joined, "sleepy"); string(ev.Value) != "v" {
		t.Errorf("rejoined with %q", ev.Value)
	}
	quiet(t, events, testTTL)
	if err := m.Leave(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	expect(t, events, time.Second, Left, "sleepy")
}

func TestRecordTakenBack(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	r := open(t, connect(t, s), Options{TTL: testTTL})
	events := watch(t, r)
	expect(t, events, 5*time.Second, Synced, "")
	if _, err := r.Join(ctxT(t), "x", []byte("mine")); err != nil {
		t.Fatal(err)
	}
	expect(t, events, 2*time.Second, Joined, "x")
	// Another writer overwrites the record; the live member writes it back
	// on its next refresh.
	if _, err := r.KeyValue().Put(ctxT(t), "x", []byte("theirs")); err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, events, time.Second, Updated, "x"); string(ev.Value) != "theirs" {
		t.Fatalf("got %q", ev.Value)
	}
	if ev := expect(t, events, testTTL, Updated, "x"); string(ev.Value) != "mine" {
		t.Fatalf("got %q", ev.Value)
	}
}

func TestJoinErrors(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	r := open(t, connect(t, s), Options{TTL: testTTL})
	for _, id := range []string{"", "a b", "a.*", "a..b", ".a", "ü"} {
		if _, err := r.Join(ctxT(t), id, nil); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Join(%q): %v", id, err)
		}
	}
	if _, err := r.Join(ctxT(t), "dup", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Join(ctxT(t), "dup", nil); !errors.Is(err, ErrAlreadyJoined) {
		t.Errorf("second Join: %v", err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Join(cancelled, "late", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Join with a cancelled context: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Join(ctxT(t), "after", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Close: %v", err)
	}
	if _, err := r.Watch(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Watch after Close: %v", err)
	}
}

func TestCloseEndsWatchesAndHeartbeats(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	watcher := open(t, connect(t, s), Options{TTL: testTTL})
	events := watch(t, watcher)
	expect(t, events, 5*time.Second, Synced, "")

	r := open(t, connect(t, s), Options{TTL: testTTL})
	own := watch(t, r)
	m, err := r.Join(ctxT(t), "closing", nil)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, events, 2*time.Second, Joined, "closing")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// Close drops the membership without a Leave: it expires.
	expect(t, events, testTTL+testMargin, Expired, "closing")
	for range own { // closes
	}
	if err := m.Update(nil); !errors.Is(err, ErrNotJoined) {
		t.Errorf("Update after Close: %v", err)
	}
}

func TestWatchEndsWithContext(t *testing.T) {
	t.Parallel()
	r := open(t, connect(t, startNATS(t)), Options{TTL: testTTL})
	ctx, cancel := context.WithCancel(ctxT(t))
	events, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, events, 5*time.Second, Synced, "")
	cancel()
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("event after cancel")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

// entry is a KeyValueEntry for reconcile's unit test.
type entry struct {
	key string
	rev uint64
	op  jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return "b" }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return nil }
func (e entry) Revision() uint64                { return e.rev }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Created() time.Time              { return time.Unix(int64(e.rev), 0) }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

func TestReconcile(t *testing.T) {
	t.Parallel()
	st := newWatchState()
	for i, id := range []string{"alive", "ghost", "deleted", "newer"} {
		st.apply(entry{key: id, rev: uint64(i + 1), op: jetstream.KeyValuePut})
	}
	st.known["newer"].rev = 20 // learned after the snapshot below
	snap := map[string]jetstream.KeyValueEntry{
		"alive":   entry{key: "alive", rev: 10, op: jetstream.KeyValuePut},
		"deleted": entry{key: "deleted", rev: 11, op: jetstream.KeyValueDelete},
		// "ghost": its expiry marker was removed before this watch saw it.
	}
	evs := st.reconcile(snap, 11, time.Unix(100, 0))
	if len(evs) != 2 || evs[0].ID != "deleted" || evs[0].Kind != Left || evs[1].ID != "ghost" || evs[1].Kind != Expired {
		t.Fatalf("reconcile = %v", evs)
	}
	if _, ok := st.known["ghost"]; ok {
		t.Error("ghost still known")
	}
	// The delete arriving late on the live watch is not reported twice.
	if ev, ok := st.apply(entry{key: "deleted", rev: 11, op: jetstream.KeyValueDelete}); ok {
		t.Errorf("late delete reported: %v", ev)
	}
	if evs := st.reconcile(snap, 11, time.Now()); len(evs) != 0 {
		t.Errorf("second reconcile = %v", evs)
	}
}

func TestApplyIgnoresStaleAndRefreshes(t *testing.T) {
	t.Parallel()
	st := newWatchState()
	put := func(rev uint64, v string) (Event, bool) {
		return st.apply(valueEntry{entry{key: "k", rev: rev, op: jetstream.KeyValuePut}, []byte(v)})
	}
	if ev, ok := put(1, "a"); !ok || ev.Kind != Joined {
		t.Fatalf("first put: %v %v", ev, ok)
	}
	if _, ok := put(2, "a"); ok {
		t.Error("refresh reported")
	}
	if _, ok := put(2, "b"); ok {
		t.Error("stale revision reported")
	}
	if ev, ok := put(3, "b"); !ok || ev.Kind != Updated {
		t.Errorf("change: %v %v", ev, ok)
	}
	if ev, ok := st.apply(entry{key: "k", rev: 4, op: jetstream.KeyValuePurge}); !ok || ev.Kind != Expired || string(ev.Value) != "b" {
		t.Errorf("purge: %v %v", ev, ok)
	}
	if _, ok := st.apply(entry{key: "k", rev: 5, op: jetstream.KeyValuePurge}); ok {
		t.Error("marker of an unknown key reported")
	}
}

type valueEntry struct {
	entry
	v []byte
}

func (e valueEntry) Value() []byte { return e.v }
