package membership

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// testWriter sends log lines to t.Log until the test ends; lines logged
// later (goroutines winding down in a cleanup) are dropped rather than
// making the testing package panic.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testLogger logs at warn level, or at GORAY_TEST_LOG's level when set.
func testLogger(t testing.TB) zerolog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	level := zerolog.WarnLevel
	if s := os.Getenv("GORAY_TEST_LOG"); s != "" {
		if l, err := zerolog.ParseLevel(s); err == nil {
			level = l
		}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// startNATS runs an embedded nats-server with JetStream, a random port and
// its store in t.TempDir(), stopped when the test ends.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoSigs:    true,
		NoLog:     true,
	})
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready within 5s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// connect opens a client connection of its own, as a separate process
// would have, closed when the test ends.
func connect(t testing.TB, s *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

func open(t testing.TB, js jetstream.JetStream, opts Options) *Registry {
	t.Helper()
	opts.Logger = testLogger(t)
	r, err := Open(ctxT(t), js, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkFor polls cond until it returns nil or timeout passes, then fails
// the test with cond's last error.
func checkFor(t testing.TB, timeout, interval time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

func watch(t testing.TB, r *Registry) <-chan Event {
	t.Helper()
	ch, err := r.Watch(ctxT(t))
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	return ch
}

// next returns the next event, failing the test if none comes in time.
func next(t testing.TB, ch <-chan Event, timeout time.Duration) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %s", timeout)
		panic("unreachable")
	}
}

func expect(t testing.TB, ch <-chan Event, timeout time.Duration, kind EventKind, id string) Event {
	t.Helper()
	ev := next(t, ch, timeout)
	if ev.Kind != kind || ev.ID != id {
		t.Fatalf("got %v, want %s %s", ev, kind, id)
	}
	return ev
}

// quiet fails the test if an event arrives within d.
func quiet(t testing.TB, ch <-chan Event, d time.Duration) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if ok {
			t.Fatalf("unexpected event %v", ev)
		}
		t.Fatal("watch channel closed")
	case <-time.After(d):
	}
}
