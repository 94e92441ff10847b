//go:build !race

package membership

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// These tests run real Proto.Actor members (remote over gRPC, gossip) and
// build without -race only: Proto.Actor itself is not clean under the race
// detector once a process runs a remote next to anything else. It shares
// one math/rand.Rand among all gossipers of a process (cluster/informer.go
// SendState), sets gRPC's global logger in every Remote.Start while earlier
// remotes' gRPC goroutines read it, and reads its BlockList without the
// lock (remote/blocklist.go IsBlocked, racing Block when a member is
// removed). provider_test.go covers the provider under -race with real
// MemberLists whose remotes are never started.
//
// The cluster test runs its other members in child processes (this binary
// re-run as TestProviderChildMember), which also makes its crash a real
// SIGKILL. None of these is parallel: sequential tests finish before the
// parallel ones start, so at most one remote runs at a time.
const (
	childNATSEnv    = "MEMBERSHIP_TEST_CHILD_NATS"
	childClusterEnv = "MEMBERSHIP_TEST_CHILD_CLUSTER"
)

var echoKind = cluster.NewKind("echo", actor.PropsFromFunc(func(ctx actor.Context) {
	if msg, ok := ctx.Message().(*wrapperspb.StringValue); ok {
		ctx.Respond(wrapperspb.String(ctx.Self().Address + ":" + msg.Value))
	}
}))

// startMember starts a Proto.Actor cluster member with remote on
// 127.0.0.1:0 and a Provider on js; onTopology gets each topology's ids.
func startMember(js jetstream.JetStream, clusterName string, opts Options, onTopology func([]string)) (*cluster.Cluster, *Provider) {
	system := quietActorSystem()
	provider := NewProvider(js, opts)
	cfg := cluster.Configure(clusterName, provider, disthash.New(), remote.Configure("127.0.0.1", 0), cluster.WithKinds(echoKind))
	c := cluster.New(system, cfg)
	system.EventStream.Subscribe(func(evt any) {
		if top, ok := evt.(*cluster.ClusterTopology); ok {
			ids := make([]string, 0, len(top.Members))
			for _, m := range top.Members {
				ids = append(ids, m.Id)
			}
			onTopology(ids)
		}
	})
	c.StartMember() // panics if the provider fails to start
	return c, provider
}

// TestProviderChildMember is the child process of TestProviderCluster: a
// member that prints its id and every topology, and leaves gracefully when
// its stdin closes.
func TestProviderChildMember(t *testing.T) {
	url := os.Getenv(childNATSEnv)
	if url == "" {
		t.Skip("helper process of TestProviderCluster")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // one line at a time on stdout
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	c, provider := startMember(js, os.Getenv(childClusterEnv), Options{TTL: testTTL}, func(ids []string) {
		say("TOPOLOGY %s", strings.Join(ids, ","))
	})
	say("MEMBER %s", c.ActorSystem.ID)
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := provider.Shutdown(true); err != nil {
		t.Error(err)
	}
	c.Shutdown(false)
	say("LEFT")
}

// child is a member in a child process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	view  view
	ready chan struct{} // closed once its id is known
	left  chan struct{}
}

func startChild(t *testing.T, natsURL, clusterName string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProviderChildMember$", "-test.count=1")
	cmd.Env = append(os.Environ(), childNATSEnv+"="+natsURL, childClusterEnv+"="+clusterName)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &child{cmd: cmd, stdin: stdin, ready: make(chan struct{}), left: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			kind, rest, _ := strings.Cut(sc.Text(), " ")
			switch kind {
			case "MEMBER":
				ch.view.self = rest
				close(ch.ready)
			case "TOPOLOGY":
				ch.view.set(strings.Split(rest, ","))
			case "LEFT":
				close(ch.left)
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return ch
}

// TestProviderMember runs one real member; the others are records written
// with a Registry, as another process's provider would.
func TestProviderMember(t *testing.T) {
	s := startNATS(t)
	name := "member-test"
	other := open(t, connect(t, s), Options{Bucket: ProviderBucket(name), TTL: testTTL})
	events := watch(t, other)
	expect(t, events, 5*time.Second, Synced, "")
	rec, _ := proto.Marshal(&cluster.Member{Id: "peer", Host: "127.0.0.1", Port: 1, Kinds: []string{"echo"}})
	life, crash := context.WithCancel(ctxT(t))
	defer crash()
	if _, err := other.Join(life, "peer", rec); err != nil {
		t.Fatal(err)
	}
	expect(t, events, 2*time.Second, Joined, "peer")

	a := &view{}
	c, provider := startMember(connect(t, s), name, Options{TTL: testTTL, Logger: testLogger(t)}, a.set)
	a.self = c.ActorSystem.ID
	t.Cleanup(func() {
		_ = provider.Shutdown(false)
		c.Shutdown(false)
	})
	// StartMember returned with the topology published.
	if err := a.sees(a.self, "peer"); err != nil {
		t.Error(err)
	}
	ev := expect(t, events, 2*time.Second, Joined, a.self)
	var m cluster.Member
	if err := proto.Unmarshal(ev.Value, &m); err != nil {
		t.Fatal(err)
	}
	host, port, _ := c.ActorSystem.GetHostPort()
	if m.Id != a.self || m.Host != host || int(m.Port) != port || port == 0 || !slices.Equal(m.Kinds, []string{"echo", "prototopic"}) {
		t.Errorf("record %v, remote at %s:%d", &m, host, port)
	}
	// Heartbeats keep it, and do not disturb the topology.
	quiet(t, events, 3*testTTL/2)

	crash()
	expect(t, events, testTTL+testMargin, Expired, "peer")
	checkFor(t, time.Second, 10*time.Millisecond, func() error { return a.sees(a.self) })

	if err := provider.Shutdown(true); err != nil {
		t.Fatal(err)
	}
	expect(t, events, time.Second, Left, a.self)
	if err := provider.Shutdown(true); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := provider.StartMember(c); err == nil {
		t.Error("StartMember after Shutdown succeeded")
	}
}

// TestProviderClient: a client follows the topology without being in it.
func TestProviderClient(t *testing.T) {
	s := startNATS(t)
	js := connect(t, s)
	opts := Options{TTL: testTTL, Logger: testLogger(t)}
	reg := open(t, js, Options{Bucket: ProviderBucket("client-test"), TTL: testTTL})
	rec, _ := proto.Marshal(&cluster.Member{Id: "m1", Host: "127.0.0.1", Port: 1, Kinds: []string{"k"}})
	life, stop := context.WithCancel(ctxT(t))
	defer stop()
	if _, err := reg.Join(life, "m1", rec); err != nil {
		t.Fatal(err)
	}
	// Records that are not cluster.Member messages are skipped.
	if _, err := reg.Join(life, "junk", []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}

	system := quietActorSystem()
	v := &view{self: "client"}
	provider := NewProvider(js, opts)
	c := cluster.New(system, cluster.Configure("client-test", provider, disthash.New(), remote.Configure("127.0.0.1", 0)))
	v.follow(c)
	c.StartClient()
	t.Cleanup(func() {
		_ = provider.Shutdown(true)
		// cluster.Shutdown assumes a member (it sets gossip state a client
		// never started), so a client is stopped piecewise.
		system.Shutdown()
		c.Remote.Shutdown(false)
	})
	// StartClient returns with the topology already published.
	if err := v.sees("m1"); err != nil {
		t.Error(err)
	}
	stop() // m1 stops heart-beating
	checkFor(t, testTTL+testMargin, 20*time.Millisecond, func() error { return v.sees() })
}

// TestProviderCluster runs three real members: this process and two
// children.
func TestProviderCluster(t *testing.T) {
	s := startNATS(t)
	name := "provider-test"
	children := []*child{startChild(t, s.ClientURL(), name), startChild(t, s.ClientURL(), name)}

	a := &view{}
	c, provider := startMember(connect(t, s), name, Options{TTL: testTTL, Logger: testLogger(t)}, a.set)
	a.self = c.ActorSystem.ID
	t.Cleanup(func() {
		_ = provider.Shutdown(false)
		c.Shutdown(false)
	})
	for _, ch := range children {
		select {
		case <-ch.ready:
		case <-time.After(15 * time.Second):
			t.Fatal("child member did not start")
		}
	}
	b, crashing := children[0], children[1]
	all := []string{a.self, b.view.self, crashing.view.self}
	for _, v := range []*view{a, &b.view, &crashing.view} {
		checkFor(t, 5*time.Second, 20*time.Millisecond, func() error { return v.sees(all...) })
	}

	// The records are cluster.Member messages: remote address and kinds.
	// A record may be between an expiry and its re-creation on a loaded
	// machine (TTL is 1 s here), so wait until all are there.
	var records map[string][]byte
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var err error
		if records, err = provider.Registry().Members(ctxT(t)); err != nil {
			return err
		}
		for _, id := range all {
			if len(records[id]) == 0 {
				return fmt.Errorf("no record of %s yet", id)
			}
		}
		return nil
	})
	host, port, _ := c.ActorSystem.GetHostPort()
	for _, id := range all {
		var m cluster.Member
		if err := proto.Unmarshal(records[id], &m); err != nil {
			t.Fatalf("record of %s: %v", id, err)
		}
		if m.Id != id || m.Host != "127.0.0.1" || m.Port == 0 || !slices.Contains(m.Kinds, "echo") {
			t.Errorf("record of %s = %v", id, &m)
		}
		if id == a.self && int(m.Port) != port || m.Host != host {
			t.Errorf("own record %v, remote at %s:%d", &m, host, port)
		}
	}

	// The topology is usable: grain calls are routed over remote to the
	// members owning the identities, children included.
	owners := map[string]bool{}
	for i := range 12 {
		reply, err := c.Request(fmt.Sprintf("id-%d", i), "echo", wrapperspb.String("hi"))
		if err != nil {
			t.Fatalf("grain call: %v", err)
		}
		v := reply.(*wrapperspb.StringValue).Value
		if !strings.HasSuffix(v, ":hi") {
			t.Fatalf("reply %q", v)
		}
		owners[strings.TrimSuffix(v, ":hi")] = true
	}
	if len(owners) < 2 {
		t.Errorf("all grains on %v; want them spread over the members", owners)
	}

	// A crash: SIGKILL, so nothing is deleted and the heartbeat just stops.
	crash := time.Now()
	if err := crashing.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []*view{a, &b.view} {
		checkFor(t, testTTL+testMargin, 20*time.Millisecond, func() error { return v.sees(a.self, b.view.self) })
	}
	t.Logf("killed member left the others' topology %s after the kill (TTL %s)", time.Since(crash).Round(time.Millisecond), testTTL)

	// A clean leave: the other member drops it at once.
	leave := time.Now()
	_ = b.stdin.Close()
	select {
	case <-b.left:
	case <-time.After(10 * time.Second):
		t.Fatal("child did not leave")
	}
	checkFor(t, time.Second, 10*time.Millisecond, func() error { return a.sees(a.self) })
	t.Logf("gracefully leaving member gone %s after it was told to leave", time.Since(leave).Round(time.Millisecond))
}
