package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// Every test removes its segments; a leftover is a bug in a test or a
	// transfer that outlived its Pull.
	if left, _ := filepath.Glob(segmentPrefix() + "*"); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "segment files left behind:", left)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func segmentPrefix() string {
	return fmt.Sprintf("/dev/shm/goray-transfer-test-%d-", os.Getpid())
}

var segmentSeq atomic.Uint64

// newStore makes a store on a segment of its own, unmapped and unlinked
// when the test ends. With spillDir it spills there.
func newStore(tb testing.TB, capacity uint64, spillDir string) *objstore.Store {
	tb.Helper()
	path := fmt.Sprintf("%s%d", segmentPrefix(), segmentSeq.Add(1))
	seg, err := objstore.CreateSegment(path, capacity)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := seg.Close(); err != nil {
			tb.Error(err)
		}
		if err := seg.Remove(); err != nil {
			tb.Error(err)
		}
	})
	store, err := objstore.NewStoreWithOptions(seg, objstore.Options{SpillDir: spillDir, MinSpillBytes: 1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	return store
}

func oid(i uint32) protos.ObjectID { return protos.ObjectIDFor(protos.TaskID{7, 7, 7}, i) }

var owner = protos.WorkerID{9}

// pattern returns size bytes that differ from every other position of the
// object at 1 MiB granularity (a random MiB stamped with its index), cheap
// to make even under the race detector.
func pattern(size int, seed uint64) []byte {
	const block = 1 << 20
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	one := make([]byte, min(size, block))
	for i := range one {
		one[i] = byte(r.Uint32())
	}
	b := make([]byte, size)
	for i := 0; i < size; i += block {
		n := copy(b[i:], one)
		stamp := fmt.Appendf(nil, "%d:%d", seed, i/block)
		copy(b[i:i+n], stamp)
	}
	return b
}

// put stores data in store as id, sealed.
func put(tb testing.TB, store *objstore.Store, id protos.ObjectID, data []byte) {
	tb.Helper()
	if err := store.Put(id, data); err != nil {
		tb.Fatal(err)
	}
}

// check fails unless store holds id, sealed, with exactly want.
func check(tb testing.TB, store *objstore.Store, id protos.ObjectID, want []byte) {
	tb.Helper()
	off, size, ok := store.Get(id)
	if !ok {
		tb.Fatalf("%s not sealed in the destination store", id)
	}
	if size != uint64(len(want)) {
		tb.Fatalf("%s has %d bytes, want %d", id, size, len(want))
	}
	if got := store.Segment().Slice(off, size); !bytes.Equal(got, want) {
		i := 0
		for i < len(want) && got[i] == want[i] {
			i++
		}
		tb.Fatalf("%s differs from the source from byte %d on", id, i)
	}
}

// checkEmpty fails unless store holds nothing at all, neither objects nor
// blocks awaiting release.
func checkEmpty(tb testing.TB, store *objstore.Store) {
	tb.Helper()
	st := store.Stats()
	if st.NumObjects != 0 || st.Used != 0 || st.NumDeleting != 0 {
		tb.Fatalf("destination store not empty: %+v", st)
	}
}

// startServer serves store on a fresh loopback port; the server is closed
// when the test ends. hook, if set, runs before each chunk is served.
func startServer(tb testing.TB, store *objstore.Store, opts ServerOptions, hook func(*protos.PullChunkRequest)) (*Server, string) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := NewServer(store, opts)
	srv.testHookServe = hook
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	tb.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			tb.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv, l.Addr().String()
}

func newPuller(tb testing.TB, store *objstore.Store, opts PullerOptions) *Puller {
	tb.Helper()
	p := NewPuller(store, opts)
	tb.Cleanup(func() { p.Close() })
	return p
}

// waitFor polls cond for up to 10 s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPullSizes(t *testing.T) {
	const chunk = 256 << 10
	src := newStore(t, 16<<20, "")
	dst := newStore(t, 16<<20, "")
	var served sync.Map
	_, addr := startServer(t, src, ServerOptions{OnServe: func(id protos.ObjectID, puller string) {
		served.Store(id, puller)
	}}, nil)
	p := newPuller(t, dst, PullerOptions{ChunkSize: chunk, Streams: 3, Name: "node-b"})
	sizes := []int{0, 1, chunk - 1, chunk, chunk + 1, 3*chunk + 17, 7 * chunk}
	for i, size := range sizes {
		id := oid(uint32(i + 1))
		data := pattern(size, uint64(i))
		put(t, src, id, data)
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			if err := p.Pull(context.Background(), id, addr, owner); err != nil {
				t.Fatal(err)
			}
			check(t, dst, id, data)
			// OnServe runs once the chunk is written, maybe after Pull
			// returned.
			waitFor(t, "OnServe", func() bool { _, ok := served.Load(id); return ok })
			if got, _ := served.Load(id); got != "node-b" {
				t.Errorf("OnServe saw puller %v, want node-b", got)
			}
			for _, o := range dst.Objects() {
				if o.Owner != owner {
					t.Errorf("destination object %+v, want owner %s", o, owner)
				}
			}
			// Already local: no request at all.
			before := p.Stats()
			if err := p.Pull(context.Background(), id, addr, owner); err != nil {
				t.Fatal(err)
			}
			if after := p.Stats(); after.Pulls != before.Pulls {
				t.Errorf("second pull of a local object transferred it again")
			}
		})
	}
	st := p.Stats()
	if st.Pulls != uint64(len(sizes)) || st.Failed != 0 {
		t.Errorf("puller stats %+v, want %d pulls", st, len(sizes))
	}
	// The pool serves all pulls with one set of connections.
	if st.Dials > 3 || st.IdleConns != int(st.Dials) {
		t.Errorf("puller stats %+v: want at most 3 dials, all pooled", st)
	}
	// The server unpins once writev returns, which may be a moment after
	// the puller has read the last byte.
	waitFor(t, "the source to release its pins", func() bool { return src.Stats().NumPinned == 0 })
}

// TestPullLarge moves 200 MB with the default chunk size and streams.
func TestPullLarge(t *testing.T) {
	const size = 200_000_000
	src := newStore(t, 256<<20, "")
	dst := newStore(t, 256<<20, "")
	srv, addr := startServer(t, src, ServerOptions{}, nil)
	p := newPuller(t, dst, PullerOptions{})
	id := oid(1)
	data := pattern(size, 42)
	put(t, src, id, data)
	t0 := time.Now()
	if err := p.Pull(context.Background(), id, addr, owner); err != nil {
		t.Fatal(err)
	}
	t.Logf("pulled %d bytes in %v", size, time.Since(t0))
	check(t, dst, id, data)
	chunks := uint64((size + DefaultChunkSize - 1) / DefaultChunkSize)
	if st := srv.Stats(); st.Requests != chunks || st.Bytes != size || st.Objects != 1 {
		t.Errorf("server stats %+v, want %d requests of %d bytes in all", st, chunks, size)
	}
	if st := p.Stats(); st.Dials != DefaultStreams {
		t.Errorf("puller dialled %d connections, want %d", st.Dials, DefaultStreams)
	}
}

func TestConcurrentPullsShareOneTransfer(t *testing.T) {
	const (
		chunk   = 64 << 10
		size    = 10*chunk + 5
		pullers = 8
	)
	src := newStore(t, 4<<20, "")
	dst := newStore(t, 4<<20, "")
	id := oid(1)
	data := pattern(size, 1)
	put(t, src, id, data)
	var p *Puller
	release := make(chan struct{})
	srv, addr := startServer(t, src, ServerOptions{}, func(req *protos.PullChunkRequest) {
		if req.Offset == 0 {
			<-release
		}
	})
	p = newPuller(t, dst, PullerOptions{ChunkSize: chunk})
	var wg sync.WaitGroup
	errs := make([]error, pullers)
	for i := range pullers {
		wg.Go(func() { errs[i] = p.Pull(context.Background(), id, addr, owner) })
	}
	waitFor(t, "all pulls to join", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		op := p.ops[id]
		return op != nil && op.waiters == pullers
	})
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("pull %d: %v", i, err)
		}
	}
	check(t, dst, id, data)
	if st := srv.Stats(); st.Objects != 1 || st.Requests != 11 {
		t.Errorf("server stats %+v: want one transfer of 11 chunks", st)
	}
	if st := p.Stats(); st.Pulls != 1 {
		t.Errorf("puller stats %+v: want one transfer", st)
	}
}

func TestPullNotFound(t *testing.T) {
	src := newStore(t, 1<<20, "")
	dst := newStore(t, 1<<20, "")
	_, addr := startServer(t, src, ServerOptions{}, nil)
	p := newPuller(t, dst, PullerOptions{})
	id := oid(5)
	err := p.Pull(context.Background(), id, addr, owner)
	if !errors.Is(err, objstore.ErrObjectNotFound) || !errors.Is(err, ErrRemote) {
		t.Fatalf("Pull of a missing object: %v; want ErrObjectNotFound and ErrRemote", err)
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != protos.TransferErrorCode_TRANSFER_NOT_FOUND {
		t.Fatalf("Pull error %v is not a not-found *RemoteError", err)
	}
	if msg := err.Error(); !strings.Contains(msg, id.String()) || !strings.Contains(msg, addr) {
		t.Errorf("error %q does not name the object and the address", msg)
	}
	checkEmpty(t, dst)
	// The connection stays usable after an error reply.
	put(t, src, id, []byte("now it exists"))
	if err := p.Pull(context.Background(), id, addr, owner); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Dials != 1 {
		t.Errorf("dialled %d times, want 1 (the connection survives error replies)", st.Dials)
	}
}

func TestPullLargerThanStore(t *testing.T) {
	src := newStore(t, 8<<20, "")
	dst := newStore(t, 4<<20, "")
	srv, addr := startServer(t, src, ServerOptions{}, nil)
	p := newPuller(t, dst, PullerOptions{ChunkSize: 1 << 20})
	id := oid(1)
	put(t, src, id, pattern(5<<20, 3))
	err := p.Pull(context.Background(), id, addr, owner)
	if !errors.Is(err, objstore.ErrStoreFull) {
		t.Fatalf("Pull of an object larger than the store: %v; want ErrStoreFull", err)
	}
	if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(5<<20)) || !strings.Contains(msg, fmt.Sprint(4<<20)) {
		t.Errorf("error %q does not name size and capacity", msg)
	}
	if st := srv.Stats(); st.Requests != 1 {
		t.Errorf("server saw %d requests, want only the first", st.Requests)
	}
	checkEmpty(t, dst)
}

func TestAdmissionWaits(t *testing.T) {
	const size = 3 << 20
	src := newStore(t, 8<<20, "")
	dst := newStore(t, 8<<20, "")
	a, b := oid(1), oid(2)
	da, db := pattern(size, 1), pattern(size, 2)
	put(t, src, a, da)
	put(t, src, b, db)
	release := make(chan struct{})
	_, addr := startServer(t, src, ServerOptions{}, func(req *protos.PullChunkRequest) {
		// Hold a's last chunk until b is queued behind it.
		if protos.ObjectID(req.ObjectId) == a && req.Offset == 2<<20 {
			<-release
		}
	})
	p := newPuller(t, dst, PullerOptions{ChunkSize: 1 << 20, MaxInFlightBytes: 5 << 20})
	errA := make(chan error, 1)
	go func() { errA <- p.Pull(context.Background(), a, addr, owner) }()
	waitFor(t, "a to be admitted", func() bool { return p.Stats().InFlightBytes == size })
	errB := make(chan error, 1)
	go func() { errB <- p.Pull(context.Background(), b, addr, owner) }()
	waitFor(t, "b to wait for admission", func() bool { return p.Stats().Waiting == 1 })
	if dst.Contains(b) {
		t.Fatal("b was created before it was admitted")
	}
	close(release)
	for _, ch := range []chan error{errA, errB} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	check(t, dst, a, da)
	check(t, dst, b, db)
	if st := p.Stats(); st.AdmissionWaits != 1 || st.InFlightBytes != 0 || st.Waiting != 0 {
		t.Errorf("puller stats %+v: want one admission wait, nothing in flight", st)
	}
}

func TestAdmissionFIFO(t *testing.T) {
	a := admission{limit: 10}
	waiting := func(n int) func() bool {
		return func() bool { _, w := a.stats(); return w == n }
	}
	if !a.tryAcquire(6) {
		t.Fatal("empty budget refused 6")
	}
	got := make(chan uint64, 2)
	for i, size := range []uint64{8, 1} {
		go func() {
			if err := a.acquire(context.Background(), size); err != nil {
				t.Error(err)
			}
			got <- size
		}()
		waitFor(t, fmt.Sprintf("%d to queue", size), waiting(i+1))
	}
	// 1 would fit, but 8 came first.
	if a.tryAcquire(1) {
		t.Fatal("tryAcquire jumped the queue")
	}
	select {
	case s := <-got:
		t.Fatalf("%d admitted while 6 of 10 are in flight ahead of 8", s)
	case <-time.After(20 * time.Millisecond):
	}
	a.release(6)
	if s1, s2 := <-got, <-got; s1+s2 != 9 {
		t.Fatalf("admitted %d and %d, want 8 and 1", s1, s2)
	}
	// 9 of 10 in flight. A cancelled waiter at the head lets those behind
	// it in.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.acquire(ctx, 5) }()
	waitFor(t, "5 to queue", waiting(1))
	go func() { _ = a.acquire(context.Background(), 1) }()
	waitFor(t, "1 to queue", waiting(2))
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	waitFor(t, "1 to be admitted", func() bool { f, w := a.stats(); return w == 0 && f == 10 })
	// Larger than the whole budget: admitted once alone.
	for _, size := range []uint64{8, 1, 1} {
		a.release(size)
	}
	if !a.tryAcquire(25) {
		t.Fatal("a pull larger than the budget was refused with nothing in flight")
	}
}

// stall returns a server hook that blocks the chunk at offset (of any
// object) until the returned release is called, and a channel closed when
// the chunk is reached.
func stall(offset uint64) (hook func(*protos.PullChunkRequest), reached <-chan struct{}, release func()) {
	r, rel := make(chan struct{}), make(chan struct{})
	var once, relOnce sync.Once
	hook = func(req *protos.PullChunkRequest) {
		if req.Offset == offset {
			once.Do(func() { close(r) })
			<-rel
		}
	}
	return hook, r, func() { relOnce.Do(func() { close(rel) }) }
}

func TestCancelMidTransfer(t *testing.T) {
	const (
		chunk = 1 << 20
		size  = 6*chunk + 100
	)
	src := newStore(t, 16<<20, "")
	dst := newStore(t, 16<<20, "")
	hook, reached, release := stall(4 * chunk)
	defer release()
	_, addr := startServer(t, src, ServerOptions{}, hook)
	p := newPuller(t, dst, PullerOptions{ChunkSize: chunk, Streams: 2})
	id := oid(1)
	data := pattern(size, 7)
	put(t, src, id, data)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Pull(ctx, id, addr, owner) }()
	<-reached
	if !dst.Contains(id) {
		t.Fatal("no partial object while the transfer is under way")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Pull: %v", err)
	}
	checkEmpty(t, dst)
	if st := p.Stats(); st.Failed != 1 || st.InFlightBytes != 0 {
		t.Errorf("puller stats %+v: want one failed pull, nothing in flight", st)
	}
	release()
	// The pool still works: the interrupted connection was dropped.
	if err := p.Pull(context.Background(), id, addr, owner); err != nil {
		t.Fatal(err)
	}
	check(t, dst, id, data)
	waitFor(t, "the source to release its pins", func() bool { return src.Stats().NumPinned == 0 })
}

func TestCancelWaitingPullKeepsTransfer(t *testing.T) {
	const chunk = 64 << 10
	src := newStore(t, 4<<20, "")
	dst := newStore(t, 4<<20, "")
	hook, reached, release := stall(chunk)
	defer release()
	_, addr := startServer(t, src, ServerOptions{}, hook)
	p := newPuller(t, dst, PullerOptions{ChunkSize: chunk})
	id := oid(1)
	data := pattern(3*chunk, 8)
	put(t, src, id, data)
	errc := make(chan error, 1)
	go func() { errc <- p.Pull(context.Background(), id, addr, owner) }()
	<-reached
	// A second waiter giving up does not stop the first one's transfer.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Pull(ctx, id, addr, owner); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pull with an expiring context: %v", err)
	}
	release()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	check(t, dst, id, data)
}

func TestServerClosedMidPull(t *testing.T) {
	const chunk = 1 << 20
	src := newStore(t, 16<<20, "")
	dst := newStore(t, 16<<20, "")
	hook, reached, release := stall(3 * chunk)
	defer release()
	srv, addr := startServer(t, src, ServerOptions{}, hook)
	p := newPuller(t, dst, PullerOptions{ChunkSize: chunk, Streams: 2})
	id := oid(1)
	data := pattern(8*chunk, 9)
	put(t, src, id, data)
	errc := make(chan error, 1)
	go func() { errc <- p.Pull(context.Background(), id, addr, owner) }()
	<-reached
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	waitFor(t, "the server to close", srv.isClosed)
	release() // the stalled handler now writes into a closed connection
	err := <-errc
	if err == nil {
		t.Fatal("Pull succeeded although the server closed mid-transfer")
	}
	t.Logf("Pull after server close: %v", err)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	checkEmpty(t, dst)
	if st := p.Stats(); st.Failed != 1 {
		t.Errorf("puller stats %+v: want one failed pull", st)
	}
	waitFor(t, "the source to release its pins", func() bool { return src.Stats().NumPinned == 0 })
}

// TestStalePooledConnection restarts the server on the same address: the
// pooled connections are dead, and the next pull must redial rather than
// fail.
func TestStalePooledConnection(t *testing.T) {
	src := newStore(t, 4<<20, "")
	dst := newStore(t, 4<<20, "")
	srv, addr := startServer(t, src, ServerOptions{}, nil)
	p := newPuller(t, dst, PullerOptions{ChunkSize: 64 << 10})
	put(t, src, oid(1), pattern(1000, 1))
	if err := p.Pull(context.Background(), oid(1), addr, owner); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv2 := NewServer(src, ServerOptions{})
	go srv2.Serve(l)
	defer srv2.Close()
	data := pattern(300<<10, 2)
	put(t, src, oid(2), data)
	if err := p.Pull(context.Background(), oid(2), addr, owner); err != nil {
		t.Fatal(err)
	}
	check(t, dst, oid(2), data)
}

// TestPullSpilled pulls objects the server only has in spill files: one is
// restored, the other's file is gone.
func TestPullSpilled(t *testing.T) {
	const size = 3 << 20
	src := newStore(t, 4<<20, t.TempDir())
	dst := newStore(t, 8<<20, "")
	_, addr := startServer(t, src, ServerOptions{}, nil)
	p := newPuller(t, dst, PullerOptions{ChunkSize: 1 << 20})
	a, b := oid(1), oid(2)
	da := pattern(size, 1)
	put(t, src, a, da)
	put(t, src, b, pattern(size, 2)) // spills a
	if st := src.Stats(); st.NumSpilled != 1 {
		t.Fatalf("source stats %+v: want a spilled", st)
	}
	if err := p.Pull(context.Background(), a, addr, owner); err != nil {
		t.Fatal(err)
	}
	check(t, dst, a, da)
	// Restoring b must be able to spill a again.
	waitFor(t, "the source to release a", func() bool { return src.Stats().NumPinned == 0 })
	// Now b is on disk only; lose its file.
	var path string
	for _, o := range src.Objects() {
		if o.ID == b && !o.InMemory {
			path = o.SpillPath
		}
	}
	if path == "" {
		t.Fatalf("b not spilled after restoring a: %+v", src.Objects())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	err := p.Pull(context.Background(), b, addr, owner)
	if !errors.Is(err, objstore.ErrSpillLost) || !errors.Is(err, ErrRemote) {
		t.Fatalf("Pull of an object whose spill file is gone: %v; want ErrSpillLost from the remote", err)
	}
	if dst.Contains(b) {
		t.Fatal("failed pull left a partial object")
	}
}

func TestPullerClose(t *testing.T) {
	src := newStore(t, 4<<20, "")
	dst := newStore(t, 4<<20, "")
	hook, reached, release := stall(64 << 10)
	defer release()
	_, addr := startServer(t, src, ServerOptions{}, hook)
	p := NewPuller(dst, PullerOptions{ChunkSize: 64 << 10})
	put(t, src, oid(1), pattern(1<<20, 1))
	errc := make(chan error, 1)
	go func() { errc <- p.Pull(context.Background(), oid(1), addr, owner) }()
	<-reached
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Pull cut by Close: %v; want ErrClosed", err)
	}
	checkEmpty(t, dst)
	if err := p.Pull(context.Background(), oid(1), addr, owner); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pull after Close: %v; want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPullDialFails(t *testing.T) {
	dst := newStore(t, 1<<20, "")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := newPuller(t, dst, PullerOptions{})
	err = p.Pull(context.Background(), oid(1), addr, owner)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Pull from a closed port: %v; want an error naming %s", err, addr)
	}
}

// TestServerRejectsGarbage checks that a peer speaking another protocol
// is dropped without the server allocating its bogus length.
func TestServerRejectsGarbage(t *testing.T) {
	src := newStore(t, 1<<20, "")
	srv, addr := startServer(t, src, ServerOptions{}, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("server answered garbage with %d bytes", n)
	}
	waitFor(t, "the connection to go", func() bool { return srv.Stats().Conns == 0 })
}

// fakeServer answers chunk requests with reply, run per request on its
// connection's goroutine; reply writes whatever it likes to c.
func fakeServer(tb testing.TB, reply func(c net.Conn, req *protos.PullChunkRequest)) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				var buf []byte
				for {
					var req protos.PullChunkRequest
					var err error
					if buf, err = readMessage(c, buf, &req); err != nil {
						return
					}
					reply(c, &req)
				}
			})
		}
	})
	return l.Addr().String()
}

func writeReply(c net.Conn, reply *protos.PullChunkReply, data []byte) {
	b, _ := appendMessage(nil, reply)
	c.Write(append(b, data...))
}

// TestCancelMidChunk cancels a pull while a chunk's bytes are half
// received: the partial object goes and the connection is not pooled.
func TestCancelMidChunk(t *testing.T) {
	const chunk = 64 << 10
	dst := newStore(t, 1<<20, "")
	data := pattern(3*chunk, 1)
	halfway := make(chan struct{})
	var once sync.Once
	addr := fakeServer(t, func(c net.Conn, req *protos.PullChunkRequest) {
		n := min(req.Length, uint64(len(data))-req.Offset)
		r := &protos.PullChunkReply{ObjectSize: uint64(len(data)), Offset: req.Offset, DataLength: n}
		if req.Offset == 0 {
			writeReply(c, r, data[:n])
			return
		}
		writeReply(c, r, data[req.Offset:req.Offset+n/2])
		once.Do(func() { close(halfway) })
	})
	p := newPuller(t, dst, PullerOptions{ChunkSize: chunk, Streams: 1})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Pull(ctx, oid(1), addr, owner) }()
	<-halfway
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Pull cancelled mid-chunk: %v", err)
	}
	checkEmpty(t, dst)
	if st := p.Stats(); st.IdleConns != 0 {
		t.Errorf("puller stats %+v: the interrupted connection was pooled", st)
	}
}

// TestChunkTimeout: a server that stops sending mid-chunk fails the pull
// after ChunkTimeout even though the caller's context has no deadline.
func TestChunkTimeout(t *testing.T) {
	const chunk = 64 << 10
	dst := newStore(t, 1<<20, "")
	data := pattern(2*chunk, 1)
	addr := fakeServer(t, func(c net.Conn, req *protos.PullChunkRequest) {
		r := &protos.PullChunkReply{ObjectSize: uint64(len(data)), Offset: req.Offset, DataLength: min(req.Length, uint64(len(data))-req.Offset)}
		writeReply(c, r, data[req.Offset:req.Offset+10])
	})
	p := newPuller(t, dst, PullerOptions{ChunkSize: chunk, ChunkTimeout: 50 * time.Millisecond})
	err := p.Pull(context.Background(), oid(1), addr, owner)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Pull from a stalled server: %v; want a timeout", err)
	}
	checkEmpty(t, dst)
}

// TestProtocolErrors: replies that contradict the request or each other
// fail the pull with ErrProtocol and leave nothing behind.
func TestProtocolErrors(t *testing.T) {
	const chunk = 64 << 10
	data := pattern(3*chunk, 1)
	tests := []struct {
		name  string
		reply func(req *protos.PullChunkRequest) *protos.PullChunkReply
	}{
		{"size changes", func(req *protos.PullChunkRequest) *protos.PullChunkReply {
			size := uint64(len(data))
			if req.Offset > 0 {
				size++
			}
			return &protos.PullChunkReply{ObjectSize: size, Offset: req.Offset, DataLength: min(req.Length, uint64(len(data))-req.Offset)}
		}},
		{"wrong offset", func(req *protos.PullChunkRequest) *protos.PullChunkReply {
			return &protos.PullChunkReply{ObjectSize: uint64(len(data)), Offset: req.Offset + 1, DataLength: min(req.Length, uint64(len(data))-req.Offset)}
		}},
		{"short chunk", func(req *protos.PullChunkRequest) *protos.PullChunkReply {
			return &protos.PullChunkReply{ObjectSize: uint64(len(data)), Offset: req.Offset, DataLength: min(req.Length, uint64(len(data))-req.Offset) - 1}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := newStore(t, 1<<20, "")
			addr := fakeServer(t, func(c net.Conn, req *protos.PullChunkRequest) {
				r := tt.reply(req)
				writeReply(c, r, data[req.Offset:min(req.Offset+r.DataLength, uint64(len(data)))])
			})
			p := newPuller(t, dst, PullerOptions{ChunkSize: chunk})
			if err := p.Pull(context.Background(), oid(1), addr, owner); !errors.Is(err, ErrProtocol) {
				t.Fatalf("Pull: %v; want ErrProtocol", err)
			}
			checkEmpty(t, dst)
		})
	}
}
