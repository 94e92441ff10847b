package gcs

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/auth"
)

// startAndServe starts a GCS on a fresh store and returns once a client
// outside the process (over TCP) has had its first request answered: the
// part of cluster init the GCS is responsible for.
func startAndServe(tb testing.TB, dir string) (*Server, *Client, time.Duration) {
	t0 := time.Now()
	srv, err := NewServer(Options{StoreDir: dir, Logger: zerolog.Nop(), Credentials: testCreds})
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, srv.ClientURL(), zerolog.Nop(), natsOpts(tb, auth.RoleNode)...)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.ListNodes(ctx); err != nil {
		tb.Fatal(err)
	}
	return srv, c, time.Since(t0)
}

// BenchmarkStart measures NewServer + Start (embedded NATS, JetStream,
// actors, four buckets) + Dial + the first request served.
func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		srv, c, _ := startAndServe(b, dir)
		b.StopTimer()
		c.Close()
		srv.Shutdown()
		b.StartTimer()
	}
}

// TestStartupTime keeps GCS start on a budget: cluster init (of which this
// is the larger part) targets 0.3 s. The bound is loose for slow, -race
// or loaded CI machines; the benchmark gives the real figure.
func TestStartupTime(t *testing.T) {
	t.Parallel()
	srv, c, d := startAndServe(t, t.TempDir())
	defer srv.Shutdown()
	defer c.Close()
	t.Logf("start to first served request: %s", d)
	if d > 2*time.Second {
		t.Errorf("GCS start took %s", d)
	}
	// Restarting on an existing store must be as quick.
	dir := srv.opts.StoreDir
	c.Close()
	srv.Shutdown()
	srv2, c2, d2 := startAndServe(t, dir)
	defer srv2.Shutdown()
	defer c2.Close()
	t.Logf("restart on existing store to first served request: %s", d2)
	if d2 > 2*time.Second {
		t.Errorf("GCS restart took %s", d2)
	}
}
