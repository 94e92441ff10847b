package securitytest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/sdk"
)

// The security tests that speak goray's own protocol to a real cluster, as
// someone on its network would (peers without the secret on every
// endpoint, oversized frames), and that read the job's record in the GCS.
// They moved here from tests/ (which uses the public API only) because
// they need goray's internals. See docs/security.md.

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
	st, err := core.ClusterStatus(ctx)
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
	st, err := core.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, addr, _ := strings.Cut(st.Nodes[0].GetRayletTcpEndpoint(), ":")
	pid := c.head.cmd.Process.Pid
	// This driver uploads its binary to the head's JetStream as it
	// starts: that growth is not the frames'.
	waitBinaryUploaded(t, ctx, st)
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

// waitBinaryUploaded waits until the packages store holds the binary of
// the job in st.
func waitBinaryUploaded(t *testing.T, ctx context.Context, st *core.Status) {
	t.Helper()
	gc, err := core.Current().GCS()
	if err != nil {
		t.Fatal(err)
	}
	store, err := gc.Packages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := gcs.BinaryObject(st.Jobs[len(st.Jobs)-1].GetBinaryDigest())
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if has, err := store.Has(ctx, name); err != nil || !has {
			return fmt.Errorf("%s is not stored yet (%v)", name, err)
		}
		return nil
	})
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
	st, err := core.ClusterStatus(ctx)
	if err != nil || len(st.Jobs) != 1 {
		t.Fatalf("jobs: %v %v", st, err)
	}
	env := append(st.Jobs[0].GetEnv(), st.Jobs[0].GetRuntimeEnv().GetEnvVars()...)
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
