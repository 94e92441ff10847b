package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/cluster"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/sdk"
)

// object_transfer_cross_node_GB_per_s: the whole path between two node
// processes, as a driver sees it. A child process runs a head (NATS, GCS,
// raylet) and is the driver; a grandchild joins as a second node. A task
// pinned to the second node makes a 1 GiB []byte there; the driver's Wait
// (fetching, the default) has its raylet pull it into the head's store.
// The figure is bytes over the Wait's time, a median of a few rounds.
//
// remote_tasks_{sync,async}_per_s: no-op tasks pinned to the second node,
// one at a time and 1,000 in flight: the driver's pushes cross TCP to the
// other node's worker. The _tls variants run the same child with mutual
// TLS on every connection (certificates from auth.GenerateCert), so the
// two show what TLS costs between nodes.

const (
	crossNodeSize   = 1 << 30
	crossNodeStore  = 2560 << 20
	crossNodeRounds = 3
)

// blob makes n bytes on whatever node runs it.
var blob = sdk.Register1("bench.Blob", func(ctx context.Context, n int) ([]byte, error) {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = byte(i >> 12)
	}
	return b, nil
})

func benchCrossNode(ctx context.Context, h *harness) ([]result, error) {
	return runSelfChild(ctx, "cross-node child", "-cross-node-child", filepath.Join(h.cfg.sessions, "cross-node"))
}

// benchCrossNodeTLS is benchCrossNode with mutual TLS.
func benchCrossNodeTLS(ctx context.Context, h *harness) ([]result, error) {
	dir := filepath.Join(h.cfg.sessions, "cross-node-tls")
	g, err := auth.GenerateCert(filepath.Join(dir, "certs"), "node", []string{"127.0.0.1", "localhost"})
	if err != nil {
		return nil, err
	}
	for k, v := range map[string]string{auth.EnvTLSCert: g.Files.Cert, auth.EnvTLSKey: g.Files.Key, auth.EnvTLSCA: g.Files.CA} {
		os.Setenv(k, v)
		defer os.Unsetenv(k)
	}
	return runSelfChild(ctx, "cross-node TLS child", "-cross-node-child", dir)
}

// runCrossNodeChild is the driver and head of the cross-node benchmark.
func runCrossNodeChild(dir string) int { return childMain("cross-node child", dir, crossNode) }

// childMain runs a benchmark child's work with a deadline and prints its
// results, one JSON object per line, for runChild.
func childMain(what, dir string, work func(ctx context.Context, dir string) ([]result, error)) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rs, err := work(ctx, dir)
	for _, r := range rs {
		b, _ := json.Marshal(r)
		fmt.Printf("%s\n", b)
	}
	if err != nil {
		log.Printf("%s: %v", what, err)
		return 1
	}
	return 0
}

func crossNode(ctx context.Context, dir string) ([]result, error) {
	creds, err := benchCredentials(true)
	if err != nil {
		return nil, err
	}
	suffix := ""
	if creds.TLS() != nil {
		suffix = "_tls"
	}
	head, nodeID, stop, err := startTwoNodes(ctx, dir, creds, crossNodeStore)
	if err != nil {
		return nil, err
	}
	defer stop()
	tokenFile := cluster.TokenFile(head.SessionDir())
	if err := sdk.Init(ctx, sdk.Address(head.Address()), sdk.LogWriter(os.Stderr), sdk.AuthTokenFile(tokenFile)); err != nil {
		return nil, err
	}
	defer sdk.Shutdown()
	there := sdk.Scheduling(sdk.NodeAffinity(sdk.NodeID(nodeID), false))
	tasks, err := remoteTasks(ctx, noop.Options(there), suffix)
	if err != nil {
		return nil, err
	}
	var rates []float64
	for range crossNodeRounds {
		ref := blob.Options(there).Remote(ctx, crossNodeSize)
		if _, _, err := sdk.Wait(ctx, []sdk.ObjectRef{ref.ObjectRef}, 1, sdk.FetchLocal(false)); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if _, _, err := sdk.Wait(ctx, []sdk.ObjectRef{ref.ObjectRef}, 1); err != nil {
			return nil, err
		}
		el := time.Since(t0)
		b, err := ref.Get(ctx)
		if err != nil || len(b) != crossNodeSize || b[4096*5] != 5 {
			return nil, fmt.Errorf("the pulled object: %d bytes, %v", len(b), err)
		}
		rates = append(rates, float64(crossNodeSize)/el.Seconds()/1e9)
		log.Printf("object_transfer_cross_node: 1 GiB pulled in %v", el.Round(time.Millisecond))
		b, ref = nil, sdk.Ref[[]byte]{}
		runtime.GC() // the refs' cleanups free both copies
	}
	slices.Sort(rates)
	return append(tasks, result{Name: "object_transfer_cross_node" + suffix + "_GB_per_s", Value: rates[len(rates)/2], Unit: "GB_per_s"}), nil
}

// startTwoNodes starts a head in this process (no CPUs, store bytes of
// object store) and a second node in a child process (this binary, with
// -node-child), and returns the second node's id. stop ends both.
func startTwoNodes(ctx context.Context, dir string, creds *auth.Credentials, store uint64) (*cluster.Head, protos.NodeID, func(), error) {
	head, err := cluster.StartHead(ctx, cluster.Config{SessionDir: filepath.Join(dir, "head"), Resources: map[string]float64{"CPU": 0},
		ObjectStoreMemory: store, Logger: zerolog.New(os.Stderr).Level(zerolog.WarnLevel), Credentials: creds})
	if err != nil {
		return nil, protos.NodeID{}, nil, fmt.Errorf("start head: %w", err)
	}
	fail := func(err error) (*cluster.Head, protos.NodeID, func(), error) {
		head.Shutdown()
		return nil, protos.NodeID{}, nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	node := exec.Command(exe, "-node-child", head.Address(), filepath.Join(dir, "node"))
	node.Env = append(os.Environ(), auth.EnvTokenFile+"="+cluster.TokenFile(head.SessionDir()))
	node.Stderr = os.Stderr
	stdin, err := node.StdinPipe()
	if err != nil {
		return fail(err)
	}
	stdout, err := node.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := node.Start(); err != nil {
		return fail(err)
	}
	stop := func() {
		stdin.Close() // the node leaves the cluster and exits
		_ = node.Wait()
		head.Shutdown()
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return nil, protos.NodeID{}, nil, fmt.Errorf("node child: %w", err)
	}
	nodeID, err := protos.UniqueIDFromHex(strings.TrimSpace(line))
	if err != nil {
		stop()
		return nil, protos.NodeID{}, nil, fmt.Errorf("node child said %q: %w", line, err)
	}
	return head, nodeID, stop, nil
}

// remoteTasks measures no-op tasks on the other node: one at a time, then
// batches of 1,000 in flight, each for a couple of seconds after a warm-up.
func remoteTasks(ctx context.Context, f *sdk.Func0[int], suffix string) ([]result, error) {
	rate := func(batch int) (float64, error) {
		run := func(d time.Duration) (int, time.Duration, error) {
			n, t0 := 0, time.Now()
			for time.Since(t0) < d {
				refs := make([]sdk.Ref[int], batch)
				for i := range refs {
					refs[i] = f.Remote(ctx)
				}
				if _, err := sdk.GetAll(ctx, refs); err != nil {
					return 0, 0, err
				}
				n += batch
			}
			return n, time.Since(t0), nil
		}
		if _, _, err := run(300 * time.Millisecond); err != nil {
			return 0, err
		}
		n, el, err := run(2 * time.Second)
		return float64(n) / el.Seconds(), err
	}
	sync, err := rate(1)
	if err != nil {
		return nil, err
	}
	async, err := rate(1000)
	if err != nil {
		return nil, err
	}
	return []result{
		{Name: "remote_tasks_sync" + suffix + "_per_s", Value: sync, Unit: "per_s"},
		{Name: "remote_tasks_async" + suffix + "_per_s", Value: async, Unit: "per_s"},
	}, nil
}

// benchCredentials are the credentials of a cluster a benchmark starts
// (head: a new token unless GORAY_AUTH_TOKEN* names one) or joins (the
// token GORAY_AUTH_TOKEN_FILE names); GORAY_AUTH=none for none, TLS from
// GORAY_TLS_*.
func benchCredentials(head bool) (*auth.Credentials, error) {
	creds, _, err := auth.Resolve(auth.Source{NewToken: head})
	return creds, err
}

// runNodeChild joins the cluster at addr as a worker node, prints its id
// and stays until stdin closes.
func runNodeChild(addr, dir string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	creds, err := benchCredentials(false)
	if err != nil {
		cancel()
		log.Printf("node child: %v", err)
		return 1
	}
	n, err := cluster.JoinNode(ctx, addr, cluster.NodeConfig{SessionDir: dir, Resources: map[string]float64{"CPU": 1},
		ObjectStoreMemory: crossNodeStore, Logger: zerolog.New(os.Stderr).Level(zerolog.WarnLevel), Credentials: creds})
	cancel()
	if err != nil {
		log.Printf("node child: %v", err)
		return 1
	}
	fmt.Println(n.Raylet.NodeID())
	_, _ = io.Copy(io.Discard, os.Stdin)
	n.Shutdown()
	return 0
}
