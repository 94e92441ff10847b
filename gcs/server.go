package gcs

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/goray/goray/actors"
	"github.com/goray/goray/gcs/membership"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/protos"
)

// Options configures a GCS Server.
type Options struct {
	// StoreDir is the JetStream file store directory of the embedded NATS
	// server (one per session). A GCS started again on the same directory
	// recovers nodes, jobs, function tables and KV. Required unless
	// NATSURL is set.
	StoreDir string
	// Host and Port are the embedded NATS listen address. Host "" means
	// 127.0.0.1; Port 0 picks a free port (see ClientURL).
	Host string
	Port int
	// NATSURL, if set, makes the GCS use an existing NATS server (with
	// JetStream) instead of embedding one; comma-separated URLs are
	// alternatives to connect to. StoreDir, Host and Port are then unused.
	NATSURL string
	// Credentials authenticate the cluster (required): the embedded NATS
	// accepts the nkey users derived from its token, with least-privilege
	// permissions per role, and mutual TLS if it has TLS; the GCS's own
	// wire connections (to raylets and workers) run the wire handshake.
	// auth.None(nil) runs without authentication (--auth none). With
	// NATSURL, the GCS connects with the external NATS credentials of
	// Credentials.WithExternalNATS.
	Credentials *auth.Credentials
	// Replicas is the number of JetStream replicas of the GCS's buckets
	// (default 1): 3 on a three-server NATS cluster keeps the GCS's state
	// through the loss of a server (see docs/nats.md).
	Replicas int
	// SyncInterval is how often the embedded NATS server fsyncs JetStream
	// (see NATSOptions.SyncInterval): zero means DefaultSyncInterval,
	// SyncAlways every write. An external NATS (NATSURL) keeps its own
	// setting.
	SyncInterval time.Duration
	Logger       zerolog.Logger
	// SessionDir is reported in ClusterInfo.
	SessionDir string
	// NodeTimeout is how long a node may go without a NodeReport before it
	// is marked DEAD; default DefaultNodeTimeout.
	NodeTimeout time.Duration
	// RequestTimeout bounds how long a request waits for its manager
	// actor; default 5 s.
	RequestTimeout time.Duration
	// OnShutdownRequest, if set, runs when a ShutdownRequest arrives on
	// SubjectClusterShutdown, after the reply is sent and before the
	// Server shuts itself down, so the owning daemon can stop the rest of
	// the process (its raylet) too.
	OnShutdownRequest func()

	// PackagesMaxBytes caps the runtime env packages object store
	// (BucketPackages); 0 means DefaultPackagesMaxBytes.
	PackagesMaxBytes int64
	// TaskEventsMaxBytes bounds each job's task event stream (0:
	// DefaultTaskEventsMaxBytes); TaskEventsJobs is how many jobs' streams
	// are kept (0: DefaultTaskEventsJobs); TaskEventsMaxTasks bounds the
	// task attempts the task manager folds per job (0:
	// taskevents.DefaultMaxTasks).
	TaskEventsMaxBytes int64
	TaskEventsJobs     int
	TaskEventsMaxTasks int
	// placer replaces the wire transport of actor scheduling (tests).
	placer placer
}

// Server is the GCS: cluster membership, jobs, function tables and the
// internal KV, served over NATS request/reply by supervised actors that
// keep their state in JetStream KV buckets.
type Server struct {
	opts Options
	log  zerolog.Logger

	mu      sync.Mutex // held by Start and by Shutdown's teardown
	started bool
	closed  bool
	nats    *NATSServer // nil when NATSURL is set
	// members is the node membership table (members.go).
	members     *membership.Registry
	stopMembers context.CancelFunc
	url         string
	nc          *nats.Conn
	system      *actor.ActorSystem
	supervisor  *actor.PID
	managers    managers
	subs        []*nats.Subscription
	// services are the micro services of the request subjects
	// (services.go), serving serviceSubs endpoints.
	services    []micro.Service
	serviceSubs int

	// handling is read-locked by every running NATS handler; Shutdown
	// write-locks it once subscriptions are drained, to wait for handlers
	// still running before the actors they talk to are stopped.
	handling sync.RWMutex

	shutdownOnce sync.Once
	requestOnce  sync.Once
	done         chan struct{}
	// metrics count the requests the GCS answers (metrics.go).
	metrics *requestMetrics
}

// NewServer validates opts and returns a Server ready to Start.
func NewServer(opts Options) (*Server, error) {
	if opts.Credentials == nil {
		return nil, fmt.Errorf("%w: Options.Credentials is required (auth.None(nil) runs without authentication)", ErrInvalid)
	}
	if opts.NATSURL == "" && opts.StoreDir == "" {
		return nil, fmt.Errorf("%w: Options.StoreDir is required when the GCS embeds NATS", ErrInvalid)
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("%w: Options.Port %d out of range", ErrInvalid, opts.Port)
	}
	if opts.NodeTimeout <= 0 {
		opts.NodeTimeout = DefaultNodeTimeout
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = defaultRequestTimeout
	}
	return &Server{
		opts:    opts,
		log:     opts.Logger.With().Str("component", "gcs").Logger(),
		done:    make(chan struct{}),
		metrics: newRequestMetrics(),
	}, nil
}

// Start brings up NATS (embedded or connected), the actors and their state,
// then subscribes. Once it returns, every subject is served. A Server
// starts once; if Start fails, the Server is shut down.
func (s *Server) Start() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.started {
		s.mu.Unlock()
		return fmt.Errorf("%w: server already started", ErrInvalid)
	}
	s.started = true
	t0 := time.Now()
	err := s.startLocked()
	s.mu.Unlock()
	if err != nil {
		s.Shutdown()
		return err
	}
	s.log.Info().Str("url", s.url).Dur("took", time.Since(t0)).Msg("GCS started")
	return nil
}

func (s *Server) startLocked() error {
	creds := s.opts.Credentials
	natsOpts, err := creds.NATSOptions(auth.RoleGCS)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if s.opts.NATSURL == "" {
		nopts := NATSOptions{
			Host:         s.opts.Host,
			Port:         s.opts.Port,
			StoreDir:     s.opts.StoreDir,
			SyncInterval: s.opts.SyncInterval,
			ServerName:   "goray-gcs",
			Logger:       s.opts.Logger,
		}
		if tok, ok := creds.Token(); ok {
			if nopts.Users, err = auth.NATSUsers(tok); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalid, err)
			}
		}
		if t := creds.TLS(); t != nil {
			nopts.TLS = t.ServerConfig()
		}
		s.nats, err = StartNATS(nopts)
		if err != nil {
			return err
		}
		s.url = s.nats.ClientURL()
		// In-process pipe: no TCP handshake on the startup path and no
		// socket between the GCS and its own server.
		s.nc, err = nats.Connect(s.url, append(natsOpts, nats.Name("goray-gcs"), nats.InProcessServer(s.nats.Server()))...)
	} else {
		s.url = s.opts.NATSURL
		s.nc, err = connectNATS(s.url, append(connectOptions("goray-gcs", s.log, 0), natsOpts...), s.log)
	}
	if err != nil {
		return fmt.Errorf("%w: connect to NATS at %s: %w", ErrUnavailable, s.url, err)
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("%w: JetStream: %w", ErrUnavailable, err)
	}

	pctx, pcancel := context.WithTimeout(context.Background(), storeTimeout)
	err = createPackages(pctx, js, s.opts.Replicas, s.opts.PackagesMaxBytes)
	pcancel()
	if err != nil {
		return err
	}

	s.system = actors.NewSystem(s.log)
	packagesCap := s.opts.PackagesMaxBytes
	if packagesCap <= 0 {
		packagesCap = DefaultPackagesMaxBytes
	}
	env := &managerEnv{nc: s.nc, js: js, log: s.log, replicas: s.opts.Replicas, wireAuth: creds.Handshaker(auth.LabelWire), packagesCap: packagesCap,
		taskOpts: taskOptions{maxBytes: cmp.Or(s.opts.TaskEventsMaxBytes, DefaultTaskEventsMaxBytes), jobs: cmp.Or(s.opts.TaskEventsJobs, DefaultTaskEventsJobs), maxTasks: s.opts.TaskEventsMaxTasks}}
	s.supervisor, err = s.system.Root.SpawnNamed(supervisorProps(env, s.opts.NodeTimeout, s.opts.placer), "gcs")
	if err != nil {
		return fmt.Errorf("%w: spawn supervisor: %w", ErrInternal, err)
	}
	if s.managers, err = ask[managers](s, s.supervisor, getManagers{}); err != nil {
		return err
	}
	if err := s.waitReady(); err != nil {
		return err
	}

	mctx, cancel := context.WithCancel(context.Background())
	s.stopMembers = cancel
	if err := s.watchMembers(mctx, js); err != nil {
		return err
	}

	if err := s.serveEndpoints(); err != nil {
		return err
	}
	// The round trip guarantees the server has the subscriptions, so a
	// request sent right after Start returns cannot meet "no responders".
	if err := s.nc.Flush(); err != nil {
		return fmt.Errorf("%w: flush subscriptions: %w", ErrUnavailable, err)
	}
	return nil
}

// waitReady waits until every manager has loaded its bucket; the loads run
// concurrently, one per actor.
func (s *Server) waitReady() error {
	pids := s.managers.all()
	futures := make([]*actor.Future, len(pids))
	for i, pid := range pids {
		futures[i] = s.system.Root.RequestFuture(pid, readyRequest{}, loadRetryFor+2*storeTimeout+time.Second)
	}
	for i, f := range futures {
		rr, err := await[readyReply](pids[i], f)
		if err != nil {
			return err
		}
		if rr.err != nil {
			return fmt.Errorf("gcs: %s: %w", pids[i].Id, rr.err)
		}
	}
	return nil
}

func (s *Server) endpoints() []endpoint {
	m := s.managers
	// Each request type's check is in validate_requests.go. The GCS does
	// not listen to the events it publishes (goray.events.node, .job): its
	// managers tell each other those facts directly (internal_events.go),
	// so a forged event changes nothing in the GCS.
	return []endpoint{
		{subject: SubjectNodeRegister, serve: serveActor[protos.RegisterNodeRequest, protos.RegisterNodeReply](s, SubjectNodeRegister, m.nodes, checkRegisterNode)},
		{subject: SubjectNodeUnregister, serve: serveActor[protos.UnregisterNodeRequest, protos.UnregisterNodeReply](s, SubjectNodeUnregister, m.nodes, checkUnregisterNode)},
		{subject: SubjectNodeList, serve: serveActor[protos.ListNodesRequest, protos.ListNodesReply](s, SubjectNodeList, m.nodes, nil)},
		{subject: SubjectNodeReports, handler: s.handleReport},

		{subject: SubjectJobRegister, serve: serveActor[protos.RegisterJobRequest, protos.RegisterJobReply](s, SubjectJobRegister, m.jobs, checkRegisterJob)},
		{subject: SubjectJobFinish, serve: serveActor[protos.FinishJobRequest, protos.FinishJobReply](s, SubjectJobFinish, m.jobs, checkFinishJob)},
		{subject: SubjectJobList, serve: serveActor[protos.ListJobsRequest, protos.ListJobsReply](s, SubjectJobList, m.jobs, nil)},

		{subject: SubjectFuncRegister, serve: serveActor[protos.RegisterFunctionsRequest, protos.RegisterFunctionsReply](s, SubjectFuncRegister, m.functions, checkRegisterFunctions)},
		{subject: SubjectFuncGet, serve: serveActor[protos.GetFunctionsRequest, protos.GetFunctionsReply](s, SubjectFuncGet, m.functions, checkGetFunctions)},

		{subject: SubjectKVPut, serve: serveActor[protos.KVPutRequest, protos.KVPutReply](s, SubjectKVPut, m.kv, checkKVPut)},
		{subject: SubjectKVGet, serve: serveActor[protos.KVGetRequest, protos.KVGetReply](s, SubjectKVGet, m.kv, checkKVGet)},
		{subject: SubjectKVDelete, serve: serveActor[protos.KVDeleteRequest, protos.KVDeleteReply](s, SubjectKVDelete, m.kv, checkKVDelete)},
		{subject: SubjectKVKeys, serve: serveActor[protos.KVKeysRequest, protos.KVKeysReply](s, SubjectKVKeys, m.kv, checkKVKeys)},

		{subject: SubjectActorRegister, serve: serveActor[protos.RegisterActorRequest, protos.RegisterActorReply](s, SubjectActorRegister, m.actors, checkRegisterActor)},
		{subject: SubjectActorGet, serve: serveActor[protos.GetActorRequest, protos.GetActorReply](s, SubjectActorGet, m.actors, checkGetActor)},
		{subject: SubjectActorList, serve: serveActor[protos.ListActorsRequest, protos.ListActorsReply](s, SubjectActorList, m.actors, checkListActors)},
		{subject: SubjectActorKill, serve: serveActor[protos.KillActorGcsRequest, protos.KillActorGcsReply](s, SubjectActorKill, m.actors, checkKillActor)},

		{subject: SubjectPGCreate, serve: serveActor[protos.CreatePlacementGroupRequest, protos.CreatePlacementGroupReply](s, SubjectPGCreate, m.pgs, checkCreatePG)},
		{subject: SubjectPGGet, serve: serveActor[protos.GetPlacementGroupRequest, protos.GetPlacementGroupReply](s, SubjectPGGet, m.pgs, checkGetPG)},
		{subject: SubjectPGRemove, serve: serveActor[protos.RemovePlacementGroupRequest, protos.RemovePlacementGroupReply](s, SubjectPGRemove, m.pgs, checkRemovePG)},
		{subject: SubjectPGList, serve: serveActor[protos.ListPlacementGroupsRequest, protos.ListPlacementGroupsReply](s, SubjectPGList, m.pgs, nil)},

		{subject: SubjectTaskList, serve: serveActor[protos.ListTasksRequest, protos.ListTasksReply](s, SubjectTaskList, m.tasks, checkListTasks)},
		{subject: SubjectTaskSummarize, serve: serveActor[protos.SummarizeTasksRequest, protos.SummarizeTasksReply](s, SubjectTaskSummarize, m.tasks, checkSummarizeTasks)},

		{subject: SubjectClusterInfo, serve: serveFunc[protos.ClusterInfoRequest, protos.ClusterInfoReply](s, SubjectClusterInfo, nil, s.clusterInfo)},
		{subject: SubjectClusterShutdown, handler: s.handleShutdownRequest},
	}
}

// track marks a handler as running for Shutdown's benefit.
func (s *Server) track(h nats.MsgHandler) nats.MsgHandler {
	return func(m *nats.Msg) {
		s.handling.RLock()
		defer s.handling.RUnlock()
		h(m)
	}
}

// ClientURL is the NATS URL clients, raylets and drivers connect to: the
// embedded server's address (with the real port when Port was 0), or
// Options.NATSURL. Empty before Start.
func (s *Server) ClientURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Done is closed once the Server has shut down, whether by Shutdown, a
// failed Start, or a ShutdownRequest over NATS.
func (s *Server) Done() <-chan struct{} { return s.done }

// Shutdown stops serving and releases everything Start acquired, in the
// order that lets in-flight work finish: subscriptions are drained (queued
// requests still get answers), running handlers complete, actors stop,
// pending publishes are flushed, the connection closes, and the embedded
// NATS server stops (Shutdown waits for it). It is idempotent and safe to
// call concurrently or before Start.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.teardownLocked()
		s.mu.Unlock()
		close(s.done)
	})
}

const drainTimeout = 5 * time.Second

func (s *Server) teardownLocked() {
	s.stopServices()
	if len(s.subs) > 0 {
		closed := make([]<-chan nats.SubStatus, 0, len(s.subs))
		for _, sub := range s.subs {
			ch := sub.StatusChanged(nats.SubscriptionClosed)
			if err := sub.Drain(); err != nil {
				_ = sub.Unsubscribe()
				continue
			}
			closed = append(closed, ch)
		}
		deadline := time.After(drainTimeout)
		for _, ch := range closed {
			select {
			case <-ch:
			case <-deadline:
			}
		}
		s.subs = nil
	}
	if s.stopMembers != nil {
		s.stopMembers()
	}
	if s.members != nil {
		_ = s.members.Close()
	}
	// A drained subscription may still be inside its last handler.
	s.handling.Lock()
	s.handling.Unlock() //nolint:staticcheck // used as a barrier

	if s.system != nil {
		if s.supervisor != nil {
			// Stopping the parent stops the managers first; the future
			// completes when all of them have terminated.
			_ = s.system.Root.StopFuture(s.supervisor).Wait()
		}
		s.system.Shutdown()
	}
	if s.nc != nil {
		// Subscriptions are already drained, so flushing the events the
		// managers published completes the drain; nc.Drain would only add
		// its polling delay.
		_ = s.nc.FlushTimeout(time.Second)
		s.nc.Close()
	}
	if s.nats != nil {
		s.nats.Shutdown()
	}
	if s.started {
		s.log.Info().Msg("GCS stopped")
	}
}
