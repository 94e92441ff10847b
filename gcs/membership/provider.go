package membership

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
)

// providerStartTimeout bounds StartMember/StartClient: opening the bucket,
// joining and reading the initial members are a few round trips each.
const providerStartTimeout = 10 * time.Second

// rewatchDelay is the pause before a provider watches again after its
// watch ended on its own (the NATS connection closed).
const rewatchDelay = time.Second

// Provider is a Proto.Actor cluster.ClusterProvider backed by the member
// table: a cluster member joins with its cluster.Member (id, host, port,
// kinds) as the record, and every member's MemberList follows the table's
// events. A member that crashes leaves everyone's topology TTL (plus the
// server's expiry scan) after its last refresh; Proto.Actor then blocks its
// id, as it does for members that fail any provider's health check.
type Provider struct {
	js   jetstream.JetStream
	opts Options

	mu       sync.Mutex
	started  bool
	shutdown bool
	reg      *Registry
	member   *Membership
	cancel   context.CancelFunc
	loopDone chan struct{}
}

var _ cluster.ClusterProvider = (*Provider)(nil)

// NewProvider returns a provider using js. An empty opts.Bucket means
// ProviderBucket(cluster name), so clusters of different names sharing a
// NATS server, and goray's node table, stay apart; a bucket given
// explicitly must hold only cluster.Member records.
func NewProvider(js jetstream.JetStream, opts Options) *Provider {
	return &Provider{js: js, opts: opts}
}

var notBucketChar = regexp.MustCompile(`[^a-zA-Z0-9_-]`)

// ProviderBucket is the default bucket of the Proto.Actor cluster named
// clusterName: characters a bucket name cannot hold become '_'.
func ProviderBucket(clusterName string) string {
	return "goray_actor_cluster_" + notBucketChar.ReplaceAllString(clusterName, "_")
}

// StartMember joins the cluster member c and publishes the table to its
// MemberList. It returns once the MemberList holds the current members.
func (p *Provider) StartMember(c *cluster.Cluster) error { return p.start(c, true) }

// StartClient follows the table without joining: a client is not a member
// that hosts actors.
func (p *Provider) StartClient(c *cluster.Cluster) error { return p.start(c, false) }

func (p *Provider) start(c *cluster.Cluster, join bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shutdown {
		return ErrClosed
	}
	if p.started {
		return errors.New("membership: provider already started")
	}
	opts := p.opts
	if opts.Bucket == "" {
		opts.Bucket = ProviderBucket(c.Config.Name)
	}
	opts.Logger = opts.Logger.With().Str("cluster", c.Config.Name).Str("system", c.ActorSystem.ID).Logger()
	life, cancel := context.WithCancel(context.Background())
	setup, setupDone := context.WithTimeout(life, providerStartTimeout)
	defer setupDone()
	fail := func(reg *Registry, err error) error {
		cancel()
		if reg != nil {
			_ = reg.Close()
		}
		return err
	}

	reg, err := Open(setup, p.js, opts)
	if err != nil {
		return fail(nil, err)
	}
	var member *Membership
	if join {
		rec, err := selfRecord(c)
		if err != nil {
			return fail(reg, err)
		}
		value, err := proto.Marshal(rec)
		if err != nil {
			return fail(reg, fmt.Errorf("membership: encode %s: %w", rec.Id, err))
		}
		if member, err = reg.Join(life, rec.Id, value); err != nil {
			return fail(reg, err)
		}
	}
	synced := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		p.follow(life, c, reg, opts.Logger, synced)
	}()
	select {
	case <-synced:
	case <-setup.Done():
		err := fmt.Errorf("membership: provider did not read the member table within %s: %w", providerStartTimeout, setup.Err())
		cancel()
		<-loopDone
		return fail(reg, err)
	}
	p.started, p.reg, p.member, p.cancel, p.loopDone = true, reg, member, cancel, loopDone
	return nil
}

func selfRecord(c *cluster.Cluster) (*cluster.Member, error) {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return nil, fmt.Errorf("membership: cluster member address: %w", err)
	}
	kinds := c.GetClusterKinds()
	// Kinds come from a map; sorted, the record is the same bytes on every
	// write, so refreshes stay invisible to watchers.
	slices.Sort(kinds)
	return &cluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: kinds}, nil
}

// follow turns the table's events into topology updates until ctx ends,
// watching again if a watch ends on its own.
func (p *Provider) follow(ctx context.Context, c *cluster.Cluster, reg *Registry, log zerolog.Logger, synced chan<- struct{}) {
	first := true
	for {
		events, err := reg.Watch(ctx)
		if err == nil {
			p.consume(ctx, c, events, log, func() {
				if first {
					first = false
					close(synced)
				}
			})
		} else if ctx.Err() == nil {
			log.Warn().Err(err).Msg("cannot watch the member table; retrying")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(rewatchDelay):
		}
	}
}

// consume keeps the members of one watch and publishes the whole set (the
// MemberList computes joins and leaves from it) once the initial members
// are in and after each burst of changes.
func (p *Provider) consume(ctx context.Context, c *cluster.Cluster, events <-chan Event, log zerolog.Logger, onSynced func()) {
	members := make(map[string]*cluster.Member)
	synced := false
	apply := func(ev Event) {
		switch ev.Kind {
		case Joined, Updated:
			m := &cluster.Member{}
			if err := proto.Unmarshal(ev.Value, m); err != nil {
				log.Warn().Err(err).Str("member", ev.ID).Msg("record is not a cluster.Member; ignored")
				delete(members, ev.ID)
				return
			}
			if m.Id != ev.ID {
				log.Warn().Str("member", ev.ID).Str("record_id", m.Id).Msg("record names another member; ignored")
				delete(members, ev.ID)
				return
			}
			members[ev.ID] = m
		case Left, Expired:
			if _, ok := members[ev.ID]; ok {
				log.Info().Str("member", ev.ID).Stringer("kind", ev.Kind).Msg("member removed")
			}
			delete(members, ev.ID)
		case Synced:
			synced = true
		}
	}
	for {
		var ev Event
		var ok bool
		select {
		case ev, ok = <-events:
		case <-ctx.Done():
			return
		}
		if !ok {
			return
		}
		apply(ev)
	burst:
		for {
			select {
			case ev, ok = <-events:
				if !ok {
					break burst
				}
				apply(ev)
			default:
				break burst
			}
		}
		if synced {
			c.MemberList.UpdateClusterTopology(sortedMembers(members))
			onSynced()
		}
		if !ok {
			return
		}
	}
}

func sortedMembers(members map[string]*cluster.Member) []*cluster.Member {
	out := make([]*cluster.Member, 0, len(members))
	for _, m := range members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *cluster.Member) int { return strings.Compare(a.Id, b.Id) })
	return out
}

// Shutdown stops the provider. Graceful: the member's record is deleted, so
// the others drop it at once. Not graceful: it only stops refreshing, so
// the others drop it when the record expires, as after a crash; Proto.Actor
// calls Shutdown only for graceful cluster shutdowns, so call
// Shutdown(false) yourself after a non-graceful one to stop the heartbeat.
// Safe to call repeatedly.
func (p *Provider) Shutdown(graceful bool) error {
	p.mu.Lock()
	if p.shutdown {
		p.mu.Unlock()
		return nil
	}
	p.shutdown = true
	started, reg, member, cancel, loopDone := p.started, p.reg, p.member, p.cancel, p.loopDone
	p.mu.Unlock()
	if !started {
		return nil
	}
	var err error
	if graceful && member != nil {
		ctx, done := context.WithTimeout(context.Background(), reg.opTimeout())
		err = member.Leave(ctx)
		done()
	}
	cancel()
	<-loopDone
	_ = reg.Close()
	return err
}

// Registry exposes the provider's registry (nil before Start), e.g. to
// list the members' records.
func (p *Provider) Registry() *Registry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reg
}
