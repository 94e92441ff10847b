package membership

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Registry is one process's handle on the member table: it keeps this
// process's memberships alive and watches everyone's.
type Registry struct {
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	opts Options
	log  zerolog.Logger

	mu      sync.Mutex
	closed  bool
	members map[string]*Membership

	// done is closed by Close; every goroutine of the Registry selects on
	// it, and wg counts them so Close returns once they are gone.
	done chan struct{}
	wg   sync.WaitGroup
}

// Open creates the member bucket or binds to an existing one. ctx bounds
// only the setup; the Registry lives until Close.
//
// The bucket's MaxAge is opts.TTL, so every record (each refresh writes a
// new one) disappears TTL after it was written unless refreshed, and its
// limit markers make the server announce that removal to watchers. An
// existing bucket must agree on both, or members would expire at a pace
// other than the one they refresh at: Open fails with ErrBucketMismatch
// rather than silently reconfiguring a bucket other processes rely on.
func Open(ctx context.Context, js jetstream.JetStream, opts Options) (*Registry, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	kv, err := openBucket(ctx, js, opts)
	if err != nil {
		return nil, err
	}
	return &Registry{
		js:      js,
		kv:      kv,
		opts:    opts,
		log:     opts.Logger.With().Str("component", "membership").Str("bucket", opts.Bucket).Logger(),
		members: make(map[string]*Membership),
		done:    make(chan struct{}),
	}, nil
}

func bucketConfig(opts Options) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      opts.Bucket,
		Description: "goray cluster members: member id -> record, removed TTL after the last refresh",
		// Only the latest record matters, and one message per key is what
		// makes a refresh replace the previous record instead of adding to
		// what expires.
		History:        1,
		TTL:            opts.TTL,
		LimitMarkerTTL: opts.markerTTL(),
		// File storage survives a NATS restart: the stream, and with it the
		// watchers' consumers and the members' revisions, stay valid, where
		// a memory bucket would vanish and every refresh would fail.
		Storage:  jetstream.FileStorage,
		Replicas: opts.Replicas,
	}
}

func openBucket(ctx context.Context, js jetstream.JetStream, opts Options) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, opts.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, bucketConfig(opts))
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Another process created it first, maybe with other options:
			// bind and check like any existing bucket.
			kv, err = js.KeyValue(ctx, opts.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("membership: open bucket %s: %w", opts.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("membership: status of bucket %s: %w", opts.Bucket, err)
	}
	switch {
	case st.TTL() != opts.TTL:
		return nil, fmt.Errorf("%w: bucket %s has TTL %s, options ask for %s (all members must use one TTL; remove the bucket to change it)",
			ErrBucketMismatch, opts.Bucket, st.TTL(), opts.TTL)
	case st.LimitMarkerTTL() == 0:
		return nil, fmt.Errorf("%w: bucket %s has no limit markers, so expiries would not reach watchers", ErrBucketMismatch, opts.Bucket)
	case st.History() != 1:
		return nil, fmt.Errorf("%w: bucket %s keeps %d values per key, want 1", ErrBucketMismatch, opts.Bucket, st.History())
	}
	return kv, nil
}

// Options returns the options in force, defaults filled in.
func (r *Registry) Options() Options { return r.opts }

// KeyValue exposes the bucket, e.g. for inspection in tests or tools.
func (r *Registry) KeyValue() jetstream.KeyValue { return r.kv }

// Close stops every membership's heartbeat and every watch (their channels
// close) and waits for them. It deletes nothing: a member that did not
// Leave expires TTL later, as after a crash. The JetStream connection is
// the caller's and stays open. Safe to call repeatedly.
func (r *Registry) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.done)
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// opTimeout bounds one write: a refresh that takes longer than TTL is too
// late to keep the member alive anyway.
func (r *Registry) opTimeout() time.Duration { return r.opts.TTL }

// keyPattern is what NATS KV accepts as a key (no wildcards, no empty
// tokens).
var keyPattern = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)

// ValidID reports whether id can be a member id (a NATS KV key).
func ValidID(id string) bool { return keyPattern.MatchString(id) }

// Membership is one joined member kept alive by this process.
type Membership struct {
	r   *Registry
	id  string
	log zerolog.Logger

	// mu serialises writes to the key: a refresh and an Update must not
	// both use the same expected revision.
	mu    sync.Mutex
	value []byte
	rev   uint64
	ended bool // no more writes: left, context ended, or registry closed
	left  bool

	stop     chan struct{} // closed by Leave to end the heartbeat loop
	stopOnce sync.Once
	loopDone chan struct{}
}

// Join writes this member's record and keeps it alive by refreshing it
// every Heartbeat until Leave, the end of ctx or Close. ctx is the
// membership's lifetime, not a timeout for the first write: ending it
// stops refreshing without deleting the record, which then expires TTL
// later, which is how a crash looks to the others.
//
// An existing record under id (a restarted process reusing its id) is
// replaced. Refresh failures are logged and retried on the next beat; a
// refresh that finds the record gone (it expired while this process was
// paused, or someone deleted it) writes it again, so watchers see Expired
// and then Joined.
func (r *Registry) Join(ctx context.Context, id string, value []byte) (*Membership, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: %q: want NATS KV key characters [-/_=.a-zA-Z0-9] without empty '.' tokens", ErrInvalidID, id)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("membership: join %s: %w", id, err)
	}
	m := &Membership{
		r:        r,
		id:       id,
		log:      r.log.With().Str("member", id).Logger(),
		value:    slices.Clone(value),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if _, ok := r.members[id]; ok {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrAlreadyJoined, id)
	}
	r.members[id] = m
	r.mu.Unlock()

	wctx, cancel := context.WithTimeout(ctx, r.opTimeout())
	rev, err := r.kv.Put(wctx, id, m.value)
	cancel()
	if err != nil {
		r.forget(m)
		return nil, fmt.Errorf("membership: join %s: %w", id, err)
	}
	m.rev = rev

	r.mu.Lock()
	if r.closed {
		// Close ran during the write and will not wait for a loop started
		// now; the record expires like any other after Close.
		r.mu.Unlock()
		m.end()
		close(m.loopDone)
		r.forget(m)
		return nil, ErrClosed
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go m.heartbeat(ctx)
	m.log.Debug().Uint64("revision", rev).Msg("joined")
	return m, nil
}

func (r *Registry) forget(m *Membership) {
	r.mu.Lock()
	if r.members[m.id] == m {
		delete(r.members, m.id)
	}
	r.mu.Unlock()
}

// ID is the member id (the record's key).
func (m *Membership) ID() string { return m.id }

// Value returns the record last written.
func (m *Membership) Value() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.value)
}

func (m *Membership) heartbeat(ctx context.Context) {
	defer m.r.wg.Done()
	defer close(m.loopDone)
	defer m.r.forget(m)
	t := time.NewTicker(m.r.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.end()
			m.log.Debug().Msg("stopped refreshing: context ended")
			return
		case <-m.r.done:
			m.end()
			return
		case <-m.stop:
			return
		case <-t.C:
			m.refresh(ctx)
		}
	}
}

func (m *Membership) end() {
	m.mu.Lock()
	m.ended = true
	m.mu.Unlock()
}

func (m *Membership) refresh(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, m.r.opTimeout())
	defer cancel()
	if err := m.writeLocked(ctx, m.value); err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return // the membership is ending; the loop sees it next
		}
		m.log.Warn().Err(err).Msg("refresh failed; retrying on the next heartbeat")
	}
}

// writeLocked writes value as the member's record, expecting the record to
// be the one this Membership wrote last: a plain Put would also "succeed"
// after the record expired, but then nobody would learn why the member
// vanished and came back. m.mu must be held.
func (m *Membership) writeLocked(ctx context.Context, value []byte) error {
	rev, err := m.r.kv.Update(ctx, m.id, value, m.rev)
	if err == nil {
		m.rev = rev
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("membership: refresh %s: %w", m.id, err)
	}
	// The latest message for the key is not ours: the server's expiry
	// marker, a delete, or another writer's record. Create succeeds in
	// the first two cases only.
	rev, err = m.r.kv.Create(ctx, m.id, value)
	if err == nil {
		m.log.Warn().Uint64("revision", rev).Msg("membership had expired or been deleted (process paused or NATS unreachable for longer than TTL?); joined again")
		m.rev = rev
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("membership: re-create %s: %w", m.id, err)
	}
	// Someone else wrote a live record under our id. This process is
	// alive and owns the id, so it takes the record back; the log says
	// there is a second writer to hunt down.
	rev, err = m.r.kv.Put(ctx, m.id, value)
	if err != nil {
		return fmt.Errorf("membership: take back %s: %w", m.id, err)
	}
	m.log.Error().Uint64("revision", rev).Msg("another writer replaced this member's record; wrote it back")
	m.rev = rev
	return nil
}

// Update replaces the member's record, e.g. with new labels. Watchers see
// Updated. It fails with ErrNotJoined once the membership ended.
func (m *Membership) Update(value []byte) error {
	value = slices.Clone(value)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return fmt.Errorf("%w: %s", ErrNotJoined, m.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.r.opTimeout())
	defer cancel()
	if err := m.writeLocked(ctx, value); err != nil {
		return err
	}
	m.value = value
	return nil
}

// Leave stops refreshing and deletes the record at once, so watchers see
// Left now instead of Expired after TTL. It also cleans up after a
// membership that ended with its context or Close. A record that another
// writer replaced is left alone. Calling Leave again does nothing.
func (m *Membership) Leave(ctx context.Context) error {
	m.stopOnce.Do(func() { close(m.stop) })
	<-m.loopDone // no refresh may re-create the record after the delete
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ended = true
	if m.left {
		return nil
	}
	err := m.r.kv.Delete(ctx, m.id, jetstream.LastRevision(m.rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// Expired, deleted or taken over meanwhile: nothing of ours left.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("membership: leave %s: %w", m.id, err)
	}
	m.left = true
	m.log.Debug().Msg("left")
	return nil
}

// Members returns the current members' records by id.
func (r *Registry) Members(ctx context.Context) (map[string][]byte, error) {
	snap, _, err := r.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(snap))
	for id, e := range snap {
		if e.Operation() == jetstream.KeyValuePut {
			out[id] = e.Value()
		}
	}
	return out, nil
}

// snapshot reads the latest entry of every key, deletes and expiry
// markers included, and the highest revision among them: every change up
// to that revision is reflected in the snapshot.
func (r *Registry) snapshot(ctx context.Context) (map[string]jetstream.KeyValueEntry, uint64, error) {
	w, err := r.kv.WatchAll(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("membership: list bucket %s: %w", r.opts.Bucket, err)
	}
	defer stopWatcher(w)
	out := make(map[string]jetstream.KeyValueEntry)
	var maxRev uint64
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, 0, fmt.Errorf("membership: list bucket %s: watcher closed", r.opts.Bucket)
			}
			if e == nil {
				return out, maxRev, nil
			}
			out[e.Key()] = e
			maxRev = max(maxRev, e.Revision())
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("membership: list bucket %s: %w", r.opts.Bucket, ctx.Err())
		case <-r.done:
			return nil, 0, ErrClosed
		}
	}
}

// stopWatcher stops w and drains it: nats.go's watcher blocks its
// subscription goroutine on a full channel, and only after that goroutine
// ends does it close the channel.
func stopWatcher(w jetstream.KeyWatcher) {
	_ = w.Stop()
	go func() {
		for range w.Updates() {
		}
	}()
}
