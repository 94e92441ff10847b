package gcs

import (
	"bytes"
	"context"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/protos"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// testWriter sends log lines to t.Log until the test ends; goroutines that
// log after that (a server shutting down in a cleanup) are dropped rather
// than making the testing package panic.
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

// testLogger logs at warn level, or at GORAY_TEST_LOG's level when set
// (e.g. GORAY_TEST_LOG=trace for nats-server's traffic).
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

// testCreds are the credentials of every test cluster of this package.
var testCreds = func() *auth.Credentials {
	tok, err := auth.GenerateToken()
	if err != nil {
		panic(err)
	}
	return auth.FromToken(tok, nil)
}()

// natsOpts connect to a test cluster's NATS as role.
func natsOpts(t testing.TB, role auth.Role) []nats.Option {
	t.Helper()
	o, err := testCreds.NATSOptions(role)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// runServer starts a GCS on an embedded NATS with a random port and a store
// under t.TempDir() (unless opts says otherwise) and shuts it down when the
// test ends. Its logs go to t.Log.
func runServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.StoreDir == "" && opts.NATSURL == "" {
		opts.StoreDir = t.TempDir()
	}
	opts.Logger = testLogger(t)
	if opts.Credentials == nil {
		opts.Credentials = testCreds
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// dial connects a client to srv and closes it when the test ends.
func dial(t testing.TB, url string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, testLogger(t), natsOpts(t, auth.RoleGCS)...)
	if err != nil {
		t.Fatalf("Dial %s: %v", url, err)
	}
	t.Cleanup(c.Close)
	return c
}

// checkFor polls cond until it returns nil or timeout passes, then fails
// the test with cond's last error. Tests wait on conditions this way
// instead of sleeping for a guessed time.
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

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newNode(host string) *protos.NodeInfo {
	id := protos.NewUniqueID()
	return &protos.NodeInfo{
		NodeId:         id.Bytes(),
		Hostname:       host,
		RayletEndpoint: "unix:/tmp/" + host + ".sock",
		StoreCapacity:  1 << 20,
	}
}

func newJob(exe string) *protos.JobInfo {
	id := protos.NewUniqueID()
	return &protos.JobInfo{JobId: id.Bytes(), Executable: exe, DriverPid: 42, DriverHost: "h"}
}

// subscribeEvents collects events published on subject.
func subscribeEvents[T any, PT message[T]](t testing.TB, nc *nats.Conn, subject string) <-chan PT {
	t.Helper()
	out := make(chan PT, 64)
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		v := PT(new(T))
		if err := DecodeEvent(m.Data, v); err != nil {
			t.Errorf("bad event on %s: %v", subject, err)
			return
		}
		out <- v
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return out
}

func nextEvent[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		panic("unreachable")
	}
}

// goroutinesMatching returns the stacks of live goroutines containing any
// of the patterns.
func goroutinesMatching(patterns ...string) []string {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	var out []string
	for _, g := range strings.Split(buf.String(), "\n\n") {
		for _, p := range patterns {
			if strings.Contains(g, p) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
