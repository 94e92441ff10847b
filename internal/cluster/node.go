package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/gcs/membership"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/recordjson"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

// SubjectObjectsFreed is where a raylet announces objects it deleted that
// other nodes had pulled copies of (an ObjectIDList); those nodes drop
// their copies.
const SubjectObjectsFreed = "goray.objects.freed"

// SubjectOwnersGone is where a raylet announces a driver or worker of its
// node that exited (an Address with its worker id): every node frees the
// objects it owned.
const SubjectOwnersGone = "goray.objects.owner_gone"

// NodeConfig configures a node: a raylet and its object store.
type NodeConfig struct {
	// SessionDir holds the node's sockets, spill files and logs; "" makes a
	// new one under $TMPDIR/goray.
	SessionDir string
	// Resources of the node; a missing "CPU" means the machine's CPUs.
	Resources map[string]float64
	// ObjectStoreMemory in bytes; 0 means 30% of RAM.
	ObjectStoreMemory uint64
	// ShmDir is where the node's shared-memory segment goes; "" means
	// /dev/shm (see raylet.Config.ShmDir).
	ShmDir     string
	MaxWorkers int
	Labels     map[string]string
	// NodeIP is the address other nodes reach this one at (default
	// 127.0.0.1).
	NodeIP string
	// MetricsAddr: see raylet.Config.MetricsAddr.
	MetricsAddr string
	// extraCollectors: see raylet.Config.ExtraCollectors.
	extraCollectors []prometheus.Collector
	Logger          zerolog.Logger
	// ReportInterval is how often the raylet reports its state (its
	// heartbeat and the other raylets' resource view); default 250 ms.
	ReportInterval time.Duration
	// Credentials authenticate the node (required; see
	// raylet.Config.Credentials).
	Credentials *auth.Credentials
	// MemoryUsageThreshold is the fraction of the node's memory above
	// which its memory monitor kills a worker (raylet.Config.
	// MemoryUsageThreshold); 0 means $GORAY_MEMORY_USAGE_THRESHOLD if set
	// (0 there turns the monitor off), else
	// raylet.DefaultMemoryUsageThreshold; negative turns it off.
	MemoryUsageThreshold float64
	// MemoryMonitorInterval is how often the monitor reads the node's
	// memory; 0 means $GORAY_MEMORY_MONITOR_INTERVAL if set (a Go
	// duration), else raylet.DefaultMemoryMonitorInterval.
	MemoryMonitorInterval time.Duration

	isHead bool
}

// EnvMemoryUsageThreshold and EnvMemoryMonitorInterval set the memory
// monitor of nodes whose configuration leaves it to the environment (the
// embedded clusters of drivers and tests, which have no flags).
const (
	EnvMemoryUsageThreshold  = "GORAY_MEMORY_USAGE_THRESHOLD"
	EnvMemoryMonitorInterval = "GORAY_MEMORY_MONITOR_INTERVAL"
)

// memoryMonitorSettings resolves NodeConfig's memory monitor settings
// with the environment's and raylet's defaults; a threshold <= 0 turns
// the monitor off.
func memoryMonitorSettings(threshold float64, interval time.Duration, log zerolog.Logger) (float64, time.Duration) {
	if threshold == 0 {
		threshold = raylet.DefaultMemoryUsageThreshold
		if env := os.Getenv(EnvMemoryUsageThreshold); env != "" {
			v, err := strconv.ParseFloat(env, 64)
			switch {
			case err != nil || v < 0 || v > 1:
				log.Warn().Str(EnvMemoryUsageThreshold, env).Msgf("not a fraction from 0 to 1; using %v", threshold)
			case v == 0:
				threshold = -1
			default:
				threshold = v
			}
		}
	}
	if interval == 0 {
		if env := os.Getenv(EnvMemoryMonitorInterval); env != "" {
			v, err := time.ParseDuration(env)
			if err != nil || v <= 0 {
				log.Warn().Str(EnvMemoryMonitorInterval, env).Msg("not a positive duration; using the default")
			} else {
				interval = v
			}
		}
	}
	return threshold, interval
}

// DefaultReportInterval is NodeConfig.ReportInterval's default: frequent
// enough that spillback decisions see resources freed a moment ago.
const DefaultReportInterval = 250 * time.Millisecond

// Node is a running node: its raylet, registered with the GCS and kept in
// the cluster's resource view through NATS.
type Node struct {
	Raylet     *raylet.Raylet
	client     *gcs.Client
	ownsClient bool
	sessionDir string
	ownsDir    bool
	subs       []*nats.Subscription
	once       sync.Once
	// done closes when the cluster announces its shutdown.
	done     chan struct{}
	doneOnce sync.Once
	// members and member are the node's record in the membership table
	// (its heartbeat); stopHeartbeat ends it.
	members       *membership.Registry
	member        *membership.Membership
	stopHeartbeat context.CancelFunc
}

// JoinNode starts a node that joins the cluster whose head's NATS is at
// address (`goray start --address`).
func JoinNode(ctx context.Context, address string, cfg NodeConfig) (*Node, error) {
	if cfg.Credentials == nil {
		return nil, errors.New("join cluster: NodeConfig.Credentials is required (auth.None(nil) for a cluster without authentication)")
	}
	if err := raylet.CheckShm(cfg.ShmDir, cfg.ObjectStoreMemory); err != nil {
		return nil, err
	}
	natsOpts, err := cfg.Credentials.NATSOptions(auth.RoleNode)
	if err != nil {
		return nil, fmt.Errorf("join cluster at %s: %w", address, err)
	}
	c, err := gcs.Dial(ctx, address, cfg.Logger, natsOpts...)
	if err != nil {
		return nil, fmt.Errorf("join cluster at %s: %w", address, err)
	}
	n, err := startNode(ctx, c, cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	n.ownsClient = true
	return n, nil
}

func startNode(ctx context.Context, client *gcs.Client, cfg NodeConfig) (*Node, error) {
	n := &Node{client: client, sessionDir: cfg.SessionDir, done: make(chan struct{})}
	if n.sessionDir == "" {
		dir, err := NewSessionDir()
		if err != nil {
			return nil, fmt.Errorf("session dir: %w", err)
		}
		n.sessionDir, n.ownsDir = dir, true
	}
	if err := raylet.CheckSessionDir(n.sessionDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(n.sessionDir, 0o755); err != nil {
		return nil, fmt.Errorf("session dir: %w", err)
	}
	res, err := raylet.FromMap(cfg.Resources)
	if err != nil {
		return nil, fmt.Errorf("node resources: %w", err)
	}
	if _, ok := cfg.Resources[raylet.CPU]; !ok {
		cpus, _ := raylet.FromMap(map[string]float64{raylet.CPU: float64(runtime.NumCPU())})
		res.Add(cpus)
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = DefaultReportInterval
	}
	nc := client.NATS()
	log := cfg.Logger.With().Str("component", "raylet").Logger()
	// The cluster's session name labels the node's metrics: the head's
	// session directory's, which a joining node asks the GCS for.
	var session string
	if cfg.MetricsAddr != "" {
		if cfg.isHead {
			session = filepath.Base(n.sessionDir)
		} else if info, err := client.ClusterInfo(ctx); err == nil && info.GetSessionDir() != "" {
			session = filepath.Base(info.GetSessionDir())
		}
	}
	threshold, interval := memoryMonitorSettings(cfg.MemoryUsageThreshold, cfg.MemoryMonitorInterval, log)
	r, err := raylet.New(raylet.Config{
		SessionDir:        n.sessionDir,
		Resources:         res,
		ObjectStoreMemory: cfg.ObjectStoreMemory,
		ShmDir:            cfg.ShmDir,
		MaxWorkers:        cfg.MaxWorkers,
		IsHead:            cfg.isHead,
		Labels:            cfg.Labels,
		NodeIP:            cfg.NodeIP,
		MetricsAddr:       cfg.MetricsAddr,
		SessionName:       session,
		ExtraCollectors:   cfg.extraCollectors,
		ReportInterval:    cfg.ReportInterval,
		Credentials:       cfg.Credentials,
		Logger:            log,

		MemoryUsageThreshold:  threshold,
		MemoryMonitorInterval: interval,
		Report:                func(info *protos.NodeInfo) { _ = client.ReportNode(info) },
		PublishLogs: func(b *protos.LogBatch) {
			if data, err := proto.Marshal(b); err == nil {
				_ = nc.Publish(LogsSubject(protos.MustUniqueID(b.GetJobId())), data)
			}
		},
		LookupJob: func(ctx context.Context, id protos.JobID) (*protos.JobInfo, error) { return lookupJob(ctx, client, id) },
		FetchPackage: func(ctx context.Context, name string, w io.Writer) error {
			store, err := client.Packages(ctx)
			if err != nil {
				return err
			}
			return store.Fetch(ctx, name, w)
		},
		PublishOwnerGone: func(owner protos.WorkerID) {
			if data, err := proto.Marshal(&protos.Address{WorkerId: owner.Bytes()}); err == nil {
				_ = nc.Publish(SubjectOwnersGone, data)
			}
		},
		PublishFree: func(ids []protos.ObjectID) {
			l := &protos.ObjectIDList{ObjectIds: make([][]byte, len(ids))}
			for i, id := range ids {
				l.ObjectIds[i] = id.Bytes()
			}
			if data, err := proto.Marshal(l); err == nil {
				_ = nc.Publish(SubjectObjectsFreed, data)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if err := r.Start(); err != nil {
		return nil, err
	}
	n.Raylet = r
	if err := n.watchCluster(ctx, log); err != nil {
		n.Shutdown()
		return nil, err
	}
	info := r.NodeInfo()
	if info == nil {
		n.Shutdown()
		return nil, errors.New("register node: the raylet did not describe itself")
	}
	if err := client.RegisterNode(ctx, info); err != nil {
		n.Shutdown()
		return nil, fmt.Errorf("register node: %w", err)
	}
	if err := n.join(ctx, info, log); err != nil {
		n.Shutdown()
		return nil, err
	}
	return n, nil
}

// join writes the node's record in the membership table and keeps it
// alive: if this process dies or hangs, the record expires and the GCS
// declares the node dead. The TTL is the bucket's, set by the head.
func (n *Node) join(ctx context.Context, info *protos.NodeInfo, log zerolog.Logger) error {
	js, err := jetstream.New(n.client.NATS())
	if err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	kv, err := js.KeyValue(ctx, membership.DefaultBucket)
	if err != nil {
		return fmt.Errorf("membership: the head's member table: %w", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	reg, err := membership.Open(ctx, js, membership.Options{TTL: st.TTL(), Logger: log})
	if err != nil {
		return err
	}
	record, err := recordjson.Marshal(&protos.NodeInfo{NodeId: info.GetNodeId(), Hostname: info.GetHostname(), RayletTcpEndpoint: info.GetRayletTcpEndpoint(), IsHead: info.GetIsHead()})
	if err != nil {
		_ = reg.Close()
		return err
	}
	life, stop := context.WithCancel(context.Background())
	m, err := reg.Join(life, protos.MustUniqueID(info.GetNodeId()).String(), record)
	if err != nil {
		stop()
		_ = reg.Close()
		return fmt.Errorf("membership: join: %w", err)
	}
	n.members, n.member, n.stopHeartbeat = reg, m, stop
	return nil
}

// lookupJob finds a job's record in the GCS.
func lookupJob(ctx context.Context, c *gcs.Client, id protos.JobID) (*protos.JobInfo, error) {
	jobs, err := c.ListJobs(ctx)
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if protos.MustUniqueID(j.GetJobId()) == id {
			return j, nil
		}
	}
	return nil, fmt.Errorf("%w: job %s", gcs.ErrNotFound, id.Short())
}

// watchCluster keeps the raylet's view of the cluster current: the other
// raylets' reports (their resources), node deaths, finished jobs and freed
// objects. The subscriptions come first, then the node table, so no change
// falls between the two.
func (n *Node) watchCluster(ctx context.Context, log zerolog.Logger) error {
	nc, r := n.client.NATS(), n.Raylet
	sub := func(subject string, fn func(*nats.Msg)) error {
		s, err := nc.Subscribe(subject, fn)
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", subject, err)
		}
		n.subs = append(n.subs, s)
		return nil
	}
	errs := []error{
		sub(gcs.SubjectNodeReports, func(m *nats.Msg) {
			rep := &protos.NodeReport{}
			if err := proto.Unmarshal(m.Data, rep); err != nil {
				log.Debug().Err(err).Str("subject", m.Subject).Msg("undecodable node report")
				return
			}
			r.UpdatePeer(rep.GetNode())
		}),
		sub(gcs.SubjectNodeEvents, func(m *nats.Msg) {
			info := &protos.NodeInfo{}
			if err := gcs.DecodeEvent(m.Data, info); err != nil {
				return
			}
			r.UpdatePeer(info) // DEAD removes it
		}),
		sub(gcs.SubjectJobEvents, func(m *nats.Msg) {
			job := &protos.JobInfo{}
			if err := gcs.DecodeEvent(m.Data, job); err != nil || !job.GetFinished() {
				return
			}
			r.JobFinished(protos.MustUniqueID(job.GetJobId()))
		}),
		sub(gcs.SubjectPGEvents, func(m *nats.Msg) {
			info := &protos.PlacementGroupInfo{}
			if err := proto.Unmarshal(m.Data, info); err != nil || info.GetState() != protos.PlacementGroupState_PG_REMOVED {
				return
			}
			r.GroupRemoved(protos.MustUniqueID(info.GetSpec().GetPlacementGroupId()))
		}),
		sub(gcs.SubjectShutdownEvents, func(*nats.Msg) {
			n.doneOnce.Do(func() { close(n.done) })
		}),
		sub(SubjectOwnersGone, func(m *nats.Msg) {
			a := &protos.Address{}
			if err := proto.Unmarshal(m.Data, a); err != nil {
				return
			}
			if id, err := protos.UniqueIDFromBytes(a.GetWorkerId()); err == nil {
				r.OwnerGone(id)
			}
		}),
		sub(SubjectObjectsFreed, func(m *nats.Msg) {
			l := &protos.ObjectIDList{}
			if err := proto.Unmarshal(m.Data, l); err != nil {
				return
			}
			ids := make([]protos.ObjectID, 0, len(l.GetObjectIds()))
			for _, b := range l.GetObjectIds() {
				if id, err := protos.ObjectIDFromBytes(b); err == nil {
					ids = append(ids, id)
				}
			}
			r.FreeCopies(ids)
		}),
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	nodes, err := n.client.ListNodes(ctx)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	for _, info := range nodes {
		r.UpdatePeer(info)
	}
	return nil
}

// Done is closed when the cluster announces its shutdown (goray stop): a
// worker node's daemon then stops.
func (n *Node) Done() <-chan struct{} { return n.done }

// SessionDir returns the node's session directory.
func (n *Node) SessionDir() string { return n.sessionDir }

// Shutdown leaves the cluster (the GCS marks the node DEAD at once), stops
// the raylet and its workers and removes the node's sockets and shm
// segment. Idempotent.
func (n *Node) Shutdown() {
	n.once.Do(func() {
		for _, s := range n.subs {
			_ = s.Unsubscribe()
		}
		if n.Raylet != nil {
			if !n.client.NATS().IsClosed() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				if n.member != nil {
					_ = n.member.Leave(ctx)
				}
				_ = n.client.UnregisterNode(ctx, n.Raylet.NodeID())
				cancel()
			}
			n.Raylet.Shutdown()
		}
		if n.stopHeartbeat != nil {
			n.stopHeartbeat()
		}
		if n.members != nil {
			_ = n.members.Close()
		}
		if n.ownsClient {
			n.client.Close()
		}
		_ = os.RemoveAll(filepath.Join(n.sessionDir, "sockets"))
	})
}
