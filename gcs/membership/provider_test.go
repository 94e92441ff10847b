package membership

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/proto"
)

// view is a member's latest published topology. MemberList.Members() is
// read without its lock, so tests follow ClusterTopology events instead.
type view struct {
	self string
	mu   sync.Mutex
	ids  []string
}

func (v *view) set(ids []string) {
	sort.Strings(ids)
	v.mu.Lock()
	v.ids = ids
	v.mu.Unlock()
}

func (v *view) sees(ids ...string) error {
	want := slices.Clone(ids)
	sort.Strings(want)
	v.mu.Lock()
	got := slices.Clone(v.ids)
	v.mu.Unlock()
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s sees %v, want %v", v.self, got, want)
	}
	return nil
}

// follow makes v track the topologies c's MemberList publishes.
func (v *view) follow(c *cluster.Cluster) {
	c.ActorSystem.EventStream.Subscribe(func(evt any) {
		if top, ok := evt.(*cluster.ClusterTopology); ok {
			ids := make([]string, 0, len(top.Members))
			for _, m := range top.Members {
				ids = append(ids, m.Id)
			}
			v.set(ids)
		}
	})
}

func quietActorSystem() *actor.ActorSystem {
	quietLog := slog.New(slog.NewTextHandler(io.Discard, nil))
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quietLog }))
}

// offlineCluster is a Proto.Actor cluster whose remote is never started:
// its MemberList, block list and member strategies are real, but no gRPC
// server or gossip runs, so several fit in one process under the race
// detector (see provider_cluster_test.go for why real ones do not).
//
// Its kinds stay empty: Cluster.StartMember activates them, together with
// the network. provider_cluster_test.go checks kinds in records.
func offlineCluster(name, addr string) *cluster.Cluster {
	system := quietActorSystem()
	// Where remote.Start would put the listener's address.
	system.ProcessRegistry.Address = addr
	cfg := cluster.Configure(name, nil, disthash.New(), remote.Configure("127.0.0.1", 0))
	c := cluster.New(system, cfg)
	c.Remote = remote.NewRemote(system, cfg.RemoteConfig)
	return c
}

// TestProviderMemberList drives real MemberLists through the provider:
// members join, one crashes (stops heart-beating) and is dropped by the
// others within TTL plus margin, one leaves and is dropped at once, and a
// client follows without being listed.
func TestProviderMemberList(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	const name = "memberlist-test"
	type member struct {
		c *cluster.Cluster
		p *Provider
		v *view
	}
	start := func(addr string, client bool) member {
		c := offlineCluster(name, addr)
		m := member{c: c, p: NewProvider(connect(t, s), Options{TTL: testTTL, Logger: testLogger(t)}), v: &view{self: c.ActorSystem.ID}}
		m.v.follow(c)
		start := m.p.StartMember
		if client {
			start = m.p.StartClient
		}
		if err := start(c); err != nil {
			t.Fatalf("start %s: %v", addr, err)
		}
		t.Cleanup(func() {
			_ = m.p.Shutdown(false)
			c.ActorSystem.Shutdown()
		})
		return m
	}
	a := start("127.0.0.1:7001", false)
	// StartMember returns once the MemberList holds the current members.
	if err := a.v.sees(a.v.self); err != nil {
		t.Error(err)
	}
	b := start("127.0.0.1:7002", false)
	c := start("127.0.0.1:7003", false)
	client := start("127.0.0.1:7004", true)
	all := []string{a.v.self, b.v.self, c.v.self}
	for _, m := range []member{a, b, c, client} {
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error { return m.v.sees(all...) })
	}

	// The record is the member's cluster.Member.
	records, err := a.p.Registry().Members(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var rec cluster.Member
	if err := proto.Unmarshal(records[b.v.self], &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Id != b.v.self || rec.Host != "127.0.0.1" || rec.Port != 7002 {
		t.Errorf("record of b = %v", &rec)
	}
	if _, ok := records[client.v.self]; ok {
		t.Error("the client joined")
	}

	// c crashes: its heartbeat stops, nothing is deleted.
	crash := time.Now()
	if err := c.p.Shutdown(false); err != nil {
		t.Fatal(err)
	}
	for _, m := range []member{a, b, client} {
		checkFor(t, testTTL+testMargin, 10*time.Millisecond, func() error { return m.v.sees(a.v.self, b.v.self) })
	}
	t.Logf("crashed member dropped from every topology %s after its heartbeat stopped (TTL %s)", time.Since(crash).Round(time.Millisecond), testTTL)
	// Proto.Actor blocks the id of a member that left, as for any provider.
	if !a.c.Remote.BlockList().IsBlocked(c.v.self) {
		t.Error("crashed member not blocked")
	}

	// b leaves cleanly: dropped at once.
	leave := time.Now()
	if err := b.p.Shutdown(true); err != nil {
		t.Fatal(err)
	}
	checkFor(t, time.Second, 5*time.Millisecond, func() error { return a.v.sees(a.v.self) })
	if d := time.Since(leave); d > 500*time.Millisecond {
		t.Errorf("clean leave took %s to reach the topology", d)
	}

	if err := b.p.Shutdown(true); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := b.p.StartMember(b.c); err == nil {
		t.Error("StartMember after Shutdown succeeded")
	}
}

// TestProviderSkipsForeignRecords: records that are not this member's
// cluster.Member are left out of the topology instead of breaking it.
func TestProviderSkipsForeignRecords(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	const name = "foreign-test"
	reg := open(t, connect(t, s), Options{Bucket: ProviderBucket(name), TTL: testTTL})
	good, _ := proto.Marshal(&cluster.Member{Id: "good", Host: "127.0.0.1", Port: 1})
	wrongID, _ := proto.Marshal(&cluster.Member{Id: "someone-else", Host: "127.0.0.1", Port: 2})
	for id, v := range map[string][]byte{"good": good, "junk": {0xff, 0xff}, "liar": wrongID} {
		if _, err := reg.Join(ctxT(t), id, v); err != nil {
			t.Fatal(err)
		}
	}
	c := offlineCluster(name, "127.0.0.1:7101")
	v := &view{self: c.ActorSystem.ID}
	v.follow(c)
	p := NewProvider(connect(t, s), Options{TTL: testTTL, Logger: testLogger(t)})
	if err := p.StartClient(c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Shutdown(true)
		c.ActorSystem.Shutdown()
	})
	if err := v.sees("good"); err != nil {
		t.Error(err)
	}
}

func TestProviderStartFails(t *testing.T) {
	t.Parallel()
	js := connect(t, startNATS(t))
	c := offlineCluster("bad-options", "127.0.0.1:7201")
	defer c.ActorSystem.Shutdown()
	p := NewProvider(js, Options{TTL: time.Millisecond})
	if err := p.StartMember(c); err == nil {
		t.Fatal("started with a TTL below the minimum")
	}
	// Nothing was started, so shutting down is a no-op.
	if err := p.Shutdown(true); err != nil {
		t.Error(err)
	}
}

func TestProviderBucket(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"mycluster": "goray_actor_cluster_mycluster",
		"a.b c/d":   "goray_actor_cluster_a_b_c_d",
	} {
		if got := ProviderBucket(name); got != want {
			t.Errorf("ProviderBucket(%q) = %q, want %q", name, got, want)
		}
	}
}
