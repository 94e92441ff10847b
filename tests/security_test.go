package tests

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/sdk"
)

// The security tests attack a real cluster as someone on its network
// would: without the token, with a wrong one, with the read-only NATS
// user, with oversized frames. See docs/security.md.

// Getenv returns a worker's environment variable.
var Getenv = sdk.Register1("tests.Getenv", func(ctx context.Context, name string) (string, error) {
	return os.Getenv(name), nil
})

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
	if f := auth.TLSFilesFromEnv(); !f.IsZero() {
		all = append([]string{"--tlscert", f.Cert, "--tlskey", f.Key, "--tlsca", f.CA}, all...)
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
	other, _ := auth.GenerateToken()
	kp, _ := other.NATSKey(auth.RoleOps)
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
	jobKey := protos.MustUniqueID(st.Jobs[len(st.Jobs)-1].GetJobId()).String()
	if out, err = ops("kv", "get", "goray_jobs", jobKey, "--raw"); err != nil || len(out) == 0 {
		t.Fatalf("ops kv get goray_jobs %s: %v\n%s", jobKey, err, out)
	}
	if out, err = ops("req", "goray.gcs.node.list", ""); err != nil {
		t.Fatalf("ops req goray.gcs.node.list: %v\n%s", err, out)
	}
	if out, err = ops("sub", "goray.node.*.report", "--count", "1"); err != nil || !strings.Contains(out, "Received on") {
		t.Fatalf("ops sub: %v\n%s", err, out)
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

// TestSecurityWire: a peer without the secret reaches no handler of any
// process (raylet over TCP and its unix socket, object transfer, a driver,
// a worker): every method, and its connection is closed; a peer with a
// wrong token fails the handshake; nothing is harmed.
func TestSecurityWire(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "2"})
	workerPID, err := Pid.Remote(ctx, 0).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	head := st.Nodes[0]
	if fi, err := os.Stat(filepath.Join(head.GetSessionDir(), "sockets")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir: %v %v; want mode 0700", fi, err)
	}
	endpoints := map[string]string{
		"raylet tcp":  head.GetRayletTcpEndpoint(),
		"raylet unix": head.GetRayletEndpoint(),
		"transfer":    "tcp:" + head.GetTransferAddress(),
	}
	for name, pid := range map[string]int{"driver": os.Getpid(), "worker": workerPID} {
		ports := tcpListenPorts(t, pid)
		if len(ports) == 0 {
			t.Fatalf("%s (pid %d) listens on no TCP port", name, pid)
		}
		for i, p := range ports {
			endpoints[fmt.Sprintf("%s tcp %d", name, i)] = "tcp:127.0.0.1:" + strconv.Itoa(p)
		}
	}
	methods := make([]int, 0, len(protos.Method_name))
	for m := range protos.Method_name {
		if m != 0 {
			methods = append(methods, int(m))
		}
	}
	sort.Ints(methods)
	wrongTok, _ := auth.GenerateToken()
	wrong := auth.FromToken(wrongTok, tlsFromEnv(t)).Handshaker(auth.LabelWire)
	for name, ep := range endpoints {
		for _, m := range methods {
			method := protos.Method(m)
			// A peer that just sends its request.
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			conn, err := wire.Dial(cctx, ep, nil)
			if err != nil {
				cancel()
				t.Fatalf("%s: dial %s: %v", name, ep, err)
			}
			err = conn.Call(cctx, method, &protos.PushTaskRequest{}, nil)
			cancel()
			if !errors.Is(err, wire.ErrClosed) {
				t.Errorf("%s: %v without the secret: %v; want the connection closed", name, method, err)
			}
			_ = conn.Close()
		}
		// A peer with another cluster's token.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := wire.Dial(cctx, ep, nil, wire.WithAuthenticator(wrong))
		cancel()
		if !errors.Is(err, auth.ErrDenied) {
			t.Errorf("%s: wrong token: %v; want auth.ErrDenied", name, err)
		}
	}
	// Nothing was killed, and the cluster works.
	if !processAlive(workerPID) || !processAlive(c.head.cmd.Process.Pid) {
		t.Fatal("a process died")
	}
	if got, err := Add.Remote(ctx, 2, 2).Get(ctx); err != nil || got != 4 {
		t.Fatalf("after the attacks: %v, %v", got, err)
	}
}

// TestSecurityOversizedFrame: frames declaring 511 MiB, sent on
// connections that have not authenticated, cost the receiver less than
// 1 MiB each: it reads a fixed-size handshake and closes.
func TestSecurityOversizedFrame(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "1"})
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, addr, _ := strings.Cut(st.Nodes[0].GetRayletTcpEndpoint(), ":")
	pid := c.head.cmd.Process.Pid
	before := rssBytes(t, pid)
	const conns = 16
	for range conns {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		hdr := make([]byte, 16)
		binary.LittleEndian.PutUint32(hdr, 511<<20)
		hdr[4], hdr[5] = 1, 1 // request, version 1
		binary.LittleEndian.PutUint16(hdr[6:], uint16(protos.Method_PUSH_TASK))
		// The header, then a MiB of its promised payload.
		_, _ = nc.Write(append(hdr, make([]byte, 1<<20)...))
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, nc) // until the receiver closes
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the receiver kept a connection that sent a 511 MiB frame unauthenticated")
		}
		nc.Close()
	}
	after := rssBytes(t, pid)
	if grew := after - before; grew > conns<<20 {
		t.Fatalf("the head's RSS grew by %d MiB for %d oversized frames; want under 1 MiB each", grew>>20, conns)
	}
	t.Logf("head RSS %d MiB -> %d MiB after %d frames declaring 511 MiB", before>>20, after>>20, conns)
	if _, err := Add.Remote(ctx, 1, 1).Get(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSecurityNodeWithWrongToken: a node with another cluster's token
// cannot join.
func TestSecurityNodeWithWrongToken(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "1"})
	wrong := filepath.Join(t.TempDir(), "token")
	tok, _ := auth.GenerateToken()
	if err := auth.WriteTokenFile(wrong, tok); err != nil {
		t.Fatal(err)
	}
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

// TestSecurityJobEnv: the job's record keeps the variables the driver
// named and goray's settings, not the driver's environment; its workers
// get the named ones.
func TestSecurityJobEnv(t *testing.T) {
	t.Setenv("GORAY_TEST_SECRET_TOKEN", "hunter2")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "hunter3")
	ctx := startCluster(t, sdk.RuntimeEnv(sdk.EnvVars{"MODEL_DIR": "/models"}))
	if got, err := Getenv.Remote(ctx, "MODEL_DIR").Get(ctx); err != nil || got != "/models" {
		t.Fatalf("a worker's MODEL_DIR = %q, %v", got, err)
	}
	st, err := sdk.ClusterStatus(ctx)
	if err != nil || len(st.Jobs) != 1 {
		t.Fatalf("jobs: %v %v", st, err)
	}
	env := st.Jobs[0].GetEnv()
	allowed := map[string]bool{"MODEL_DIR": true, "GORAY_GCS_ADDRESS": true, "GORAY_NAMESPACE": true, "GORAY_LOG_LEVEL": true}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !allowed[name] || strings.Contains(kv, "hunter") {
			t.Errorf("the job record holds %q", kv)
		}
	}
	if !contains(env, "MODEL_DIR=/models") {
		t.Errorf("the job record lacks MODEL_DIR: %q", env)
	}
	if st.Jobs[0].GetBinaryDigest() == "" {
		t.Error("the job record names no binary digest")
	}
}

// metricsClient scrapes over mutual TLS when the tests run with TLS.
func metricsClient(t *testing.T) *http.Client {
	t.Helper()
	tl, err := auth.TLSFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if tl == nil {
		return &http.Client{Timeout: 10 * time.Second}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tl.ClientConfig("127.0.0.1")}}
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

// --- helpers ---

// tcpListenPorts lists the TCP ports process pid listens on.
func tcpListenPorts(t *testing.T, pid int) []int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// sl local rem st ... inode(9)
			if len(fs) < 10 || fs[3] != "0A" || !inodes[fs[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil {
				ports = append(ports, int(p))
			}
		}
		f.Close()
	}
	return ports
}

// rssBytes is process pid's resident set size.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
