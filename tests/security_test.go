package tests

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/goray/goray/sdk"
)

// The security tests attack a real cluster as someone on its network
// would: without the token, with a wrong one, with the read-only NATS
// user. See docs/security.md. The attacks that speak goray's own protocol
// (unauthenticated peers on every endpoint, oversized frames) and read the
// job's record are in internal/securitytest, since they need its
// internals.

// natsBin installs (once, via the Makefile) and returns the stock nats CLI.
func natsBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nats")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the nats CLI is not installed (make tools installs it): %v", err)
	}
	return p
}

// runNATS runs the nats CLI against the cluster at addr.
func runNATS(t *testing.T, bin, addr string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"--server", addr, "--timeout", "2s"}, args...)
	if cert, key, ca, ok := tlsFiles(); ok {
		all = append([]string{"--tlscert", cert, "--tlskey", key, "--tlsca", ca}, all...)
	}
	cmd := exec.CommandContext(ctx, bin, all...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no saved contexts
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSecurityNATS: a NATS client without credentials is refused; the
// read-only user (goray nats-creds --read-only) can read buckets and
// subjects but not write a bucket, ask the GCS to change anything, or stop
// the cluster; the cluster carries on.
func TestSecurityNATS(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "1"})
	nats := natsBin(t)
	if _, err := Add.Remote(ctx, 1, 2).Get(ctx); err != nil {
		t.Fatal(err)
	}

	out, err := runNATS(t, nats, c.addr, "kv", "ls")
	if err == nil || !strings.Contains(out, "Authorization Violation") {
		t.Fatalf("nats kv ls without credentials: %v\n%s", err, out)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.nk")
	// A user nkey of its own, as another cluster's ops key is.
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	if err := os.WriteFile(wrong, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runNATS(t, nats, c.addr, "--nkey", wrong, "kv", "ls"); err == nil || !strings.Contains(out, "Authorization Violation") {
		t.Fatalf("nats with another cluster's ops key: %v\n%s", err, out)
	}

	seedFile := filepath.Join(t.TempDir(), "ops.nk")
	out, err = runGoray(c.bin, c.env, "nats-creds", "--read-only", "--address", c.addr, "--out", seedFile)
	if err != nil || !strings.Contains(out, "nats context save goray-ops --server "+c.addr+" --nkey "+seedFile) {
		t.Fatalf("goray nats-creds: %v\n%s", err, out)
	}
	if fi, err := os.Stat(seedFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v %v; want mode 0600", fi, err)
	}
	ops := func(args ...string) (string, error) {
		return runNATS(t, nats, c.addr, append([]string{"--nkey", seedFile}, args...)...)
	}

	// Reading works: buckets, a job record, a GCS list, live subjects.
	out, err = ops("kv", "ls", "--names")
	if err != nil || !strings.Contains(out, "goray_jobs") || !strings.Contains(out, "goray_members") {
		t.Fatalf("ops kv ls: %v\n%s", err, out)
	}
	st, err := sdk.ClusterStatus(ctx)
	if err != nil || len(st.Jobs) == 0 {
		t.Fatalf("ClusterStatus: %v %v", st, err)
	}
	jobKey := st.Jobs[len(st.Jobs)-1].ID.String()
	if out, err = ops("kv", "get", "goray_jobs", jobKey, "--raw"); err != nil || len(out) == 0 {
		t.Fatalf("ops kv get goray_jobs %s: %v\n%s", jobKey, err, out)
	}
	if out, err = ops("req", "goray.gcs.node.list", ""); err != nil {
		t.Fatalf("ops req goray.gcs.node.list: %v\n%s", err, out)
	}
	if out, err = ops("sub", "goray_reports.node.*", "--count", "1"); err != nil || !strings.Contains(out, "Received on") {
		t.Fatalf("ops sub: %v\n%s", err, out)
	}
	// The runtime env packages: this driver's binary, uploaded as it
	// started.
	var binary string
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		out, err := ops("obj", "ls", "goray_packages")
		if err != nil {
			return errorf("ops obj ls goray_packages: %v\n%s", err, out)
		}
		for _, f := range strings.Fields(out) {
			if strings.HasPrefix(f, "bin/") {
				binary = f
				return nil
			}
		}
		return errorf("no binary in goray_packages yet:\n%s", out)
	})
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, []byte("not a binary"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Writing does not.
	for _, args := range [][]string{
		{"kv", "put", "goray_kv", "x", "y"},
		{"kv", "del", "goray_jobs", jobKey, "--force"},
		{"kv", "rm", "goray_actors", "--force"},
		{"pub", "goray.events.shutdown", ""},
		{"pub", "goray.events.node", ""},
		{"req", "goray.gcs.cluster.shutdown", ""},
		{"req", "goray.gcs.kv.put", ""},
		{"obj", "put", "goray_packages", junk, "--name", binary, "--force"},
		{"obj", "del", "goray_packages", binary, "--force"},
	} {
		out, _ := ops(args...)
		if !strings.Contains(out, "Permissions Violation") {
			t.Errorf("ops %v was not refused:\n%s", args, out)
		}
	}
	// And the cluster is whole.
	if got, err := Add.Remote(ctx, 2, 3).Get(ctx); err != nil || got != 5 {
		t.Fatalf("after the read-only user's attempts: %v %v", got, err)
	}
	if out, err := ops("kv", "get", "goray_jobs", jobKey, "--raw"); err != nil || len(out) == 0 {
		t.Fatalf("the job record after the attempts: %v\n%s", err, out)
	}
}

// TestSecurityNodeWithWrongToken: a node with another cluster's token
// cannot join.
func TestSecurityNodeWithWrongToken(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "1"})
	wrong := filepath.Join(t.TempDir(), "token")
	writeRandomToken(t, wrong)
	out, err := runGoray(c.bin, c.env, "start", "--address", c.addr, "--auth-token-file", wrong,
		"--session-dir", filepath.Join(c.root, "intruder"), "--object-store-memory", "64MiB")
	if err == nil || !strings.Contains(out, "not authorized") {
		t.Fatalf("a node with a wrong token: %v\n%s", err, out)
	}
	st, err := sdk.ClusterStatus(ctx)
	if err != nil || len(st.Nodes) != 1 {
		t.Fatalf("nodes after the attempt: %v, %v; want the head alone", st, err)
	}
}

// metricsClient scrapes over mutual TLS when the tests run with TLS.
func metricsClient(t *testing.T) *http.Client {
	t.Helper()
	tc := clientTLS(t, "127.0.0.1")
	if tc == nil {
		return &http.Client{Timeout: 10 * time.Second}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

// TestSecurityMetrics: the metrics endpoint answers on loopback; bound
// beyond it, only with the bearer token goray metrics-token prints.
func TestSecurityMetrics(t *testing.T) {
	_, c := startMultiNode(t, []string{"--num-cpus", "1", "--metrics-host", "0.0.0.0", "--metrics-port", "-1"})
	var url string
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, l := range strings.Split(c.head.output(), "\n") {
			if i := strings.Index(l, "metrics at "); i >= 0 {
				url = strings.TrimSpace(l[i+len("metrics at "):])
				return nil
			}
		}
		return errors.New("the head printed no metrics URL")
	})
	client := metricsClient(t)
	get := func(bearer string) int {
		req, _ := http.NewRequest("GET", url, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(""); code != http.StatusUnauthorized {
		t.Fatalf("scrape without a token: %d, want 401", code)
	}
	if code := get("nonsense"); code != http.StatusUnauthorized {
		t.Fatalf("scrape with a wrong token: %d, want 401", code)
	}
	out, err := runGoray(c.bin, c.env, "metrics-token", "--address", c.addr)
	if err != nil {
		t.Fatalf("goray metrics-token: %v\n%s", err, out)
	}
	if code := get(strings.TrimSpace(out)); code != http.StatusOK {
		t.Fatalf("scrape with the token: %d, want 200", code)
	}
}
