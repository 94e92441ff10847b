package gcs

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStartNATS(t *testing.T) {
	t.Parallel()
	ns, err := StartNATS(NATSOptions{StoreDir: t.TempDir(), Logger: testLogger(t)})
	must(t, err)
	if !strings.HasPrefix(ns.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(ns.ClientURL(), ":0") {
		t.Errorf("ClientURL = %q", ns.ClientURL())
	}
	c := dial(t, ns.ClientURL())
	if !c.NATS().IsConnected() {
		t.Fatal("not connected")
	}
	ns.Shutdown()
	ns.Shutdown() // idempotent
	if ns.Server().Running() {
		t.Error("still running after Shutdown")
	}
}

func TestStartNATSPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	start := time.Now()
	_, err = StartNATS(NATSOptions{StoreDir: t.TempDir(), Port: port, Logger: testLogger(t)})
	if err == nil {
		t.Fatal("started on a port in use")
	}
	if !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("error does not name the port: %v", err)
	}
	// The failure is reported as it happens, not after the ready timeout.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s to fail", d)
	}
}

func TestStartNATSNeedsStoreDir(t *testing.T) {
	t.Parallel()
	if _, err := StartNATS(NATSOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("err = %v, want ErrInvalid", err)
	}
}

func TestClientURL(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"127.0.0.1": "nats://127.0.0.1:4222",
		"0.0.0.0":   "nats://127.0.0.1:4222",
		"::":        "nats://127.0.0.1:4222",
		"10.1.2.3":  "nats://10.1.2.3:4222",
		"::1":       "nats://[::1]:4222",
		"headnode":  "nats://headnode:4222",
	}
	for host, want := range cases {
		if got := clientURL(host, 4222); got != want {
			t.Errorf("clientURL(%q) = %q, want %q", host, got, want)
		}
	}
}

var natsKVKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func TestKVKeyEncoding(t *testing.T) {
	t.Parallel()
	cases := [][2]string{
		{"", "k"}, {"ns", ""}, {"", ""}, {"a.b", "c.d"}, {"ü", "∑"},
		{"/", "="}, {"*", ">"}, {"x", "\x00\xff"}, {"long", strings.Repeat("k", 300)},
	}
	for _, c := range cases {
		k := kvKey(c[0], c[1])
		if !natsKVKey.MatchString(k) || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
			t.Errorf("kvKey(%q, %q) = %q: not a valid NATS KV key", c[0], c[1], k)
		}
		ns, key, err := parseKVKey(k)
		if err != nil || ns != c[0] || key != c[1] {
			t.Errorf("parseKVKey(%q) = %q, %q, %v; want %q, %q", k, ns, key, err, c[0], c[1])
		}
	}
	// Distinct pairs never collide.
	if kvKey("a", "bc") == kvKey("ab", "c") {
		t.Error("collision")
	}
	for _, bad := range []string{"nodot", "a.b.c", "!!.x"} {
		if _, _, err := parseKVKey(bad); err == nil {
			t.Errorf("parseKVKey(%q) accepted", bad)
		}
	}
}

func TestDialContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dial(ctx, "nats://127.0.0.1:1", testLogger(t)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Dial with cancelled ctx: %v", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := Dial(ctx2, "nats://127.0.0.1:1", testLogger(t)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Dial to closed port: %v", err)
	}
}

func TestStartNATSBadStoreDir(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "not-a-dir")
	must(t, os.WriteFile(file, []byte("x"), 0o600))
	start := time.Now()
	if _, err := StartNATS(NATSOptions{StoreDir: file, Logger: testLogger(t)}); err == nil {
		t.Fatal("started with a file as store directory")
	} else {
		t.Logf("error: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s to fail", d)
	}
}
