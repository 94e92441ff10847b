package gcs

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// A read-only request whose connection drops while it waits (the head
// died with it unanswered) is sent again once the connection is back,
// rather than waited for until its context ends.
func TestReadOnlyRequestSentAgainAfterDrop(t *testing.T) {
	dir := t.TempDir()
	ns, err := StartNATS(NATSOptions{StoreDir: dir, Logger: testLogger(t)})
	must(t, err)
	u, err := url.Parse(ns.ClientURL())
	must(t, err)
	port, err := strconv.Atoi(u.Port())
	must(t, err)

	// The GCS stand-in: it swallows the first request, as a head killed
	// before answering does, and answers the others.
	responder, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	must(t, err)
	defer responder.Close()
	var seen atomic.Int32
	first := make(chan struct{})
	_, err = responder.Subscribe("goray.gcs.test.get", func(m *nats.Msg) {
		if seen.Add(1) == 1 {
			close(first)
			return
		}
		_ = m.Respond([]byte("ok"))
	})
	must(t, err)
	must(t, responder.Flush())

	c := dial(t, ns.ClientURL())
	c.SetOutageWait(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		m, err := c.request(ctx, "goray.gcs.test.get", nil)
		if err == nil && string(m.Data) != "ok" {
			err = fmt.Errorf("answer %q", m.Data)
		}
		got <- err
	}()
	<-first
	ns.Shutdown()
	ns2, err := StartNATS(NATSOptions{StoreDir: dir, Port: port, Logger: testLogger(t)})
	must(t, err)
	defer ns2.Shutdown()
	if err := <-got; err != nil {
		t.Fatalf("the request after the drop: %v", err)
	}
	if n := seen.Load(); n < 2 {
		t.Errorf("the GCS saw the request %d times, want it sent again", n)
	}
}
