package tests

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/goray/goray/sdk"
)

// startNATSCluster runs n clustered nats-servers with JetStream in this
// process and returns them and their client URLs once JetStream has a
// meta leader.
func startNATSCluster(t *testing.T, n int) ([]*server.Server, []string) {
	t.Helper()
	// The route ports are picked free and then given to the servers, so
	// another process may take one in between (ephemeral ports of the
	// suite's other connections): then a server does not come up, and
	// the cluster is started again on other ports.
	for attempt := 1; ; attempt++ {
		servers, urls, err := tryNATSCluster(t, n)
		if err == nil {
			waitJetStream(t, urls)
			return servers, urls
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("NATS cluster, attempt %d: %v; again on other ports", attempt, err)
	}
}

func tryNATSCluster(t *testing.T, n int) ([]*server.Server, []string, error) {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	var servers []*server.Server
	var urls []string
	for i := range n {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "goray-ha", Host: "127.0.0.1", Port: ports[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:      true,
			NoSigs:     true,
		}
		// With the suite's TLS (make test-tls), the servers want it from
		// clients as the embedded one does.
		if tc := serverTLS(t); tc != nil {
			opts.TLSConfig, opts.TLS, opts.TLSVerify = tc, true, true
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		servers = append(servers, s)
		if !s.ReadyForConnections(10 * time.Second) {
			for _, s := range servers {
				s.Shutdown()
			}
			return nil, nil, fmt.Errorf("nats-server %d not ready", i+1)
		}
		t.Cleanup(s.Shutdown)
		urls = append(urls, s.ClientURL())
	}
	return servers, urls, nil
}

// waitJetStream waits until the NATS servers at urls serve JetStream (a
// meta leader is elected).
func waitJetStream(t *testing.T, urls []string) {
	t.Helper()
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		nc, err := nats.Connect(strings.Join(urls, ","), natsTLS(t)...)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			return err
		}
		_, err = js.AccountInfo()
		return err
	})
}

// TestMultiNodeHANATS: the head uses a three-server NATS cluster with the
// GCS's buckets replicated three ways; the cluster keeps working (tasks,
// actors, its tables) after the NATS server the head was using stops.
func TestMultiNodeHANATS(t *testing.T) {
	servers, urls := startNATSCluster(t, 3)
	list := strings.Join(urls, ",")
	ctx, c := startMultiNode(t, []string{"--num-cpus", "0", "--nats", list, "--nats-replicas", "3"}, nodeSpec{"--num-cpus", "2"})
	worker := c.nodes[0].id
	if got, err := NodeOf.Remote(ctx).Get(ctx); err != nil || got != worker {
		t.Fatalf("task ran on %s, %v; want %s", got, err, worker[:8])
	}
	before, err := CounterActor.Options(sdk.Name("before")).Remote(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := CounterInc.Remote(ctx, before, 1).Get(ctx); err != nil || n != 2 {
		t.Fatalf("Inc = %d, %v", n, err)
	}

	// Every bucket of the GCS is replicated on all three servers.
	nc, err := nats.Connect(list, natsTLS(t)...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"goray_nodes", "goray_jobs", "goray_functions", "goray_kv", "goray_actors", "goray_placement_groups", "goray_members"} {
		info, err := js.StreamInfo("KV_" + b)
		if err != nil {
			t.Fatalf("bucket %s: %v", b, err)
		}
		if info.Config.Replicas != 3 {
			t.Errorf("bucket %s has %d replicas; want 3", b, info.Config.Replicas)
		}
	}

	// Stop the first server, which every client tried first.
	servers[0].Shutdown()
	servers[0].WaitForShutdown()

	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		got, err := NodeOf.Remote(ctx).Get(ctx)
		if err != nil || got != worker {
			return errorf("task after the NATS server stopped: %s, %v", got, err)
		}
		return nil
	})
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if _, err := sdk.GetActor[Counter](ctx, "before", ""); err != nil {
			return errorf("named actor after the NATS server stopped: %v", err)
		}
		return nil
	})
	after, err := CounterActor.Options(sdk.Name("after")).Remote(ctx, 10)
	if err != nil {
		t.Fatalf("creating an actor after the NATS server stopped: %v", err)
	}
	if n, err := CounterInc.Remote(ctx, after, 1).Get(ctx); err != nil || n != 11 {
		t.Fatalf("Inc on the new actor = %d, %v", n, err)
	}
	st, err := sdk.ClusterStatus(ctx)
	if err != nil || len(st.Nodes) != 2 {
		t.Fatalf("ClusterStatus after the NATS server stopped: %v, %v", st, err)
	}
}

// TestHeadMovesToAnotherMachine: with the GCS's state replicated on a
// three-server NATS cluster, losing the head's machine (its goray head
// and its NATS server) loses nothing: a head started on another
// head-eligible machine takes over. Actors on other nodes are found again
// with their state, and the connected driver carries on.
func TestHeadMovesToAnotherMachine(t *testing.T) {
	servers, urls := startNATSCluster(t, 3)
	list := strings.Join(urls, ",")
	headArgs := []string{"--num-cpus", "1", "--nats", list, "--nats-replicas", "3"}
	ctx, c := startMultiNode(t, headArgs, nodeSpec{"--num-cpus", "2"})
	onNode := sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, c.nodes[0].id), false))
	service, err := CounterActor.Options(onNode, sdk.Name("service"), sdk.Namespace("ha"), sdk.Detached(), sdk.MaxRestarts(-1)).Remote(ctx, 40)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := CounterInc.Remote(ctx, service, 2).Get(ctx); err != nil || n != 42 {
		t.Fatalf("Inc = %d, %v", n, err)
	}

	// The head's machine fails: its goray head and its NATS server.
	c.kill(c.head)
	servers[0].Shutdown()
	servers[0].WaitForShutdown()
	// The new head is started once the two NATS servers left serve
	// JetStream again, as an operator would check (nats server ls).
	waitJetStream(t, urls[1:])
	args := append([]string{"start", "--head", "--block", "--port", "0", "--node-timeout", nodeTimeout.String(), "--object-store-memory", "512MiB",
		"--auth-token-file", tokenFile(c.head.dir)}, headArgs...)
	c.head = c.spawn("head2", args, "goray head node running at ")
	c.head.id = ""

	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		h, err := sdk.GetActor[Counter](ctx, "service", "ha")
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		n, err := CounterGet.Remote(cctx, h).Get(cctx)
		if err != nil {
			return err
		}
		if n != 42 {
			t.Fatalf("the service after the head moved: %d; want 42 (found again, not restarted)", n)
		}
		return nil
	})
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		_, err := Add.Remote(ctx, 1, 2).Get(ctx)
		return err
	})
}
