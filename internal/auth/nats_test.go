package auth_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
)

// A real embedded NATS server with the users of a token, as a head runs
// it, and what each role may and may not do there.
func TestNATSRoles(t *testing.T) {
	tok, err := auth.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	users, err := auth.NATSUsers(tok)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := gcs.StartNATS(gcs.NATSOptions{StoreDir: t.TempDir(), Users: users, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	creds := auth.FromToken(tok, nil)

	// Without credentials, or with another cluster's, nobody gets in.
	if _, err := nats.Connect(ns.ClientURL()); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("no credentials: %v, want an authorization violation", err)
	}
	other, _ := auth.GenerateToken()
	opts, _ := auth.FromToken(other, nil).NATSOptions(auth.RoleGCS)
	if _, err := nats.Connect(ns.ClientURL(), opts...); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("another cluster's token: %v, want an authorization violation", err)
	}

	gcsConn := connect(t, ns.ClientURL(), creds, auth.RoleGCS, nil)
	for _, tc := range []struct {
		role   auth.Role
		allow  []string
		refuse []string
	}{
		{auth.RoleNode,
			[]string{"goray.gcs.node.register", "goray_reports.node.abc", "goray.logs.j", "goray.objects.freed", "$KV.goray_members.n1"},
			[]string{"goray.gcs.cluster.shutdown", "goray.events.shutdown", "goray.events.node", "$KV.goray_kv.x", "$KV.goray_jobs.x", "$JS.API.STREAM.DELETE.KV_goray_jobs"}},
		{auth.RoleAdmin,
			[]string{"goray.gcs.cluster.shutdown", "goray.gcs.kv.put", "goray.gcs.node.list"},
			[]string{"goray.gcs.node.register", "goray.events.shutdown", "goray.events.node", "$KV.goray_kv.x"}},
		{auth.RoleDriver,
			[]string{"goray.gcs.kv.put", "goray.gcs.actor.register", "goray.gcs.job.register"},
			[]string{"goray.gcs.cluster.shutdown", "goray.gcs.node.unregister", "goray.events.node", "goray_reports.node.abc", "$KV.goray_actors.x"}},
		{auth.RoleWorker,
			[]string{"goray.gcs.actor.register", "goray.gcs.kv.get"},
			[]string{"goray.gcs.cluster.shutdown", "goray.events.shutdown", "goray.events.node", "goray.objects.freed", "$KV.goray_kv.x"}},
		{auth.RoleOps,
			[]string{"goray.gcs.actor.list", "goray.gcs.kv.get", "goray.gcs.cluster.info", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.INFO.KV_goray_jobs"},
			[]string{"goray.gcs.cluster.shutdown", "goray.gcs.kv.put", "goray.gcs.actor.kill", "goray.events.shutdown", "$KV.goray_kv.x", "$JS.API.STREAM.DELETE.KV_goray_kv", "$JS.API.STREAM.PURGE.KV_goray_kv", "$JS.API.CONSUMER.DURABLE.CREATE.KV_goray_kv.d"}},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			var mu sync.Mutex
			var violations []string
			nc := connect(t, ns.ClientURL(), creds, tc.role, func(err error) {
				mu.Lock()
				violations = append(violations, err.Error())
				mu.Unlock()
			})
			for _, subj := range tc.allow {
				if !delivered(t, gcsConn, nc, subj) {
					t.Errorf("%s may publish %s, but it was not delivered", tc.role, subj)
				}
			}
			for _, subj := range tc.refuse {
				if delivered(t, gcsConn, nc, subj) {
					t.Errorf("%s published %s", tc.role, subj)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, subj := range tc.refuse {
				found := false
				for _, v := range violations {
					if strings.Contains(v, "Permissions Violation") && strings.Contains(v, subj) {
						found = true
					}
				}
				if !found {
					t.Errorf("no permissions violation reported for %s publishing %s (got %q)", tc.role, subj, violations)
				}
			}
		})
	}
}

func connect(t *testing.T, url string, creds *auth.Credentials, role auth.Role, onErr func(error)) *nats.Conn {
	t.Helper()
	opts, err := creds.NATSOptions(role)
	if err != nil {
		t.Fatal(err)
	}
	if onErr != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { onErr(err) }))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// delivered publishes on subject from pub and reports whether sub (which
// may subscribe to anything) received it.
func delivered(t *testing.T, sub, pub *nats.Conn, subject string) bool {
	t.Helper()
	s, err := sub.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(subject, []byte("x")); err != nil {
		t.Fatal(err)
	}
	// The round trip makes sure the server handled the publish (and sent
	// its -ERR, if it refused) before we look.
	_ = pub.Flush()
	_, err = s.NextMsg(200 * time.Millisecond)
	return err == nil
}
