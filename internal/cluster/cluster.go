// Package cluster starts goray's services in this process: a head (NATS
// with JetStream, the GCS actors) and a node (raylet and object store). The
// embedded cluster of sdk.Init and the `goray start` daemon both use it.
//
//	h, err := cluster.StartHead(ctx, cluster.Config{SessionDir: dir})
//	if err != nil { ... }
//	defer h.Shutdown()
//	fmt.Println(h.Address()) // nats://127.0.0.1:PORT, what drivers join
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/dashboard"
	"github.com/goray/goray/internal/jobserver"
	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/jobs"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

// Config configures a head node.
type Config struct {
	// SessionDir holds the JetStream store, sockets and logs; "" makes a
	// new one under $TMPDIR/goray.
	SessionDir string
	// Resources of the node; a missing "CPU" means the machine's CPUs.
	Resources map[string]float64
	// ObjectStoreMemory in bytes; 0 means 30% of RAM.
	ObjectStoreMemory uint64
	// ShmDir is where the node's shared-memory segment goes; "" means
	// /dev/shm (see raylet.Config.ShmDir).
	ShmDir string
	// Host and Port of NATS (Port 0 picks a free port).
	Host string
	Port int
	// NATSURL uses an existing NATS instead of embedding one
	// (comma-separated URLs of one NATS cluster).
	NATSURL string
	// Replicas of the GCS's JetStream buckets (see gcs.Options.Replicas).
	Replicas int
	// SyncInterval of the embedded NATS's JetStream (see
	// gcs.Options.SyncInterval); zero means $GORAY_NATS_SYNC_INTERVAL if
	// set (a Go duration, 0 for every write), else
	// gcs.DefaultSyncInterval.
	SyncInterval time.Duration
	MaxWorkers   int
	Labels       map[string]string
	Logger       zerolog.Logger
	// MetricsAddr is where the node serves Prometheus metrics
	// (host:port, port 0 for a free one; "" for none): see
	// raylet.Config.MetricsAddr. Head.Raylet.MetricsAddr() tells the
	// address bound.
	MetricsAddr string
	// NodeIP is the address other nodes reach the head's raylet at
	// (default 127.0.0.1).
	NodeIP string
	// NodeTimeout is how long a node may go silent before the GCS declares
	// it dead (default gcs.DefaultNodeTimeout).
	NodeTimeout time.Duration
	// ReportInterval: see NodeConfig.ReportInterval.
	ReportInterval time.Duration
	// MemoryUsageThreshold and MemoryMonitorInterval: see NodeConfig's.
	MemoryUsageThreshold  float64
	MemoryMonitorInterval time.Duration
	// Credentials authenticate the cluster (required; see
	// gcs.Options.Credentials and raylet.Config.Credentials). StartHead
	// writes the token, if they hold one, to SessionDir/auth_token (mode
	// 0600), where goray commands on this machine find it.
	Credentials *auth.Credentials
	// JobServer runs the job server (goray job submit) in the head.
	JobServer bool
	// DashboardAddr serves the web dashboard there (host:port, port 0
	// for a free one; "" for none). With DashboardFallback, a port in use
	// makes it take a free one instead of failing the head.
	DashboardAddr     string
	DashboardFallback bool
}

// Head is a running head node.
type Head struct {
	GCS        *gcs.Server
	Raylet     *raylet.Raylet
	Client     *gcs.Client
	node       *Node
	sessionDir string
	ownsDir    bool
	log        zerolog.Logger
	once       sync.Once
	jobs       *jobserver.Server
	jobsConn   *gcs.Client
	dashboard  *dashboard.Server
	dashConn   *gcs.Client
}

// NewSessionDir creates a fresh session directory.
func NewSessionDir() (string, error) {
	root := filepath.Join(os.TempDir(), "goray")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(root, "session-"+time.Now().Format("20060102-150405")+"-")
}

// LogsSubject is where a job's worker output is published.
func LogsSubject(job protos.JobID) string { return "goray.logs." + job.String() }

// StartHead starts NATS, the GCS and a raylet.
func StartHead(ctx context.Context, cfg Config) (*Head, error) {
	h := &Head{sessionDir: cfg.SessionDir, log: cfg.Logger}
	if h.sessionDir == "" {
		dir, err := NewSessionDir()
		if err != nil {
			return nil, fmt.Errorf("session dir: %w", err)
		}
		h.sessionDir, h.ownsDir = dir, true
	}
	if err := raylet.CheckSessionDir(h.sessionDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(h.sessionDir, 0o755); err != nil {
		return nil, fmt.Errorf("session dir: %w", err)
	}
	if cfg.Credentials == nil {
		return nil, errors.New("start head: Config.Credentials is required (auth.None(nil) for a cluster without authentication)")
	}
	// The raylet starts last; a store that cannot fit should fail before
	// NATS and the GCS come up only to be torn down.
	if err := raylet.CheckShm(cfg.ShmDir, cfg.ObjectStoreMemory); err != nil {
		return nil, err
	}
	if tok, ok := cfg.Credentials.Token(); ok {
		if err := auth.WriteTokenFile(TokenFile(h.sessionDir), tok); err != nil {
			return nil, err
		}
	}
	srv, err := gcs.NewServer(gcs.Options{
		Credentials:  cfg.Credentials,
		StoreDir:     filepath.Join(h.sessionDir, "jetstream"),
		Host:         cfg.Host,
		Port:         cfg.Port,
		NATSURL:      cfg.NATSURL,
		Replicas:     cfg.Replicas,
		SyncInterval: syncInterval(cfg.SyncInterval, cfg.Logger),
		Logger:       cfg.Logger.With().Str("component", "gcs").Logger(),
		SessionDir:   h.sessionDir,
		NodeTimeout:  cfg.NodeTimeout,
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("start GCS: %w", err)
	}
	h.GCS = srv
	natsOpts, err := cfg.Credentials.NATSOptions(auth.RoleNode)
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	client, err := gcs.Dial(ctx, srv.ClientURL(), cfg.Logger, natsOpts...)
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("connect to GCS: %w", err)
	}
	h.Client = client
	node, err := startNode(ctx, client, NodeConfig{
		SessionDir:        h.sessionDir,
		Resources:         cfg.Resources,
		ObjectStoreMemory: cfg.ObjectStoreMemory,
		ShmDir:            cfg.ShmDir,
		MaxWorkers:        cfg.MaxWorkers,
		Labels:            cfg.Labels,
		NodeIP:            cfg.NodeIP,
		MetricsAddr:       cfg.MetricsAddr,
		ReportInterval:    cfg.ReportInterval,
		Logger:            cfg.Logger,
		Credentials:       cfg.Credentials,
		isHead:            true,
		extraCollectors:   []prometheus.Collector{srv.Collector()},

		MemoryUsageThreshold:  cfg.MemoryUsageThreshold,
		MemoryMonitorInterval: cfg.MemoryMonitorInterval,
	})
	if err != nil {
		h.Shutdown()
		return nil, err
	}
	h.node, h.Raylet = node, node.Raylet
	if cfg.JobServer {
		if err := h.startJobServer(ctx, cfg); err != nil {
			h.Shutdown()
			return nil, err
		}
	}
	if cfg.DashboardAddr != "" {
		if err := h.startDashboard(ctx, cfg); err != nil {
			h.Shutdown()
			return nil, err
		}
	}
	return h, nil
}

// startDashboard serves the dashboard on a connection of its own, as a
// driver would (it reads the state, stops jobs and kills actors).
func (h *Head) startDashboard(ctx context.Context, cfg Config) error {
	natsOpts, err := cfg.Credentials.NATSOptions(auth.RoleDriver)
	if err != nil {
		return err
	}
	log := cfg.Logger.With().Str("component", "dashboard").Logger()
	dc, err := gcs.Dial(ctx, h.GCS.ClientURL(), log, natsOpts...)
	if err != nil {
		return fmt.Errorf("dashboard: connect: %w", err)
	}
	opts := dashboard.Options{Addr: cfg.DashboardAddr, Credentials: cfg.Credentials, Logger: log,
		State: stateapi.Source{GCS: dc, Auth: cfg.Credentials.Handshaker(auth.LabelWire), Log: log}}
	if cfg.JobServer {
		opts.Jobs = jobs.New(dc)
	}
	srv, err := dashboard.New(opts)
	if err == nil {
		err = srv.Start()
		if err != nil && cfg.DashboardFallback && errors.Is(err, syscall.EADDRINUSE) {
			host, _, _ := net.SplitHostPort(cfg.DashboardAddr)
			log.Warn().Str("addr", cfg.DashboardAddr).Msg("the dashboard's port is in use; serving on a free one")
			opts.Addr = net.JoinHostPort(host, "0")
			if srv, err = dashboard.New(opts); err == nil {
				err = srv.Start()
			}
		}
	}
	if err != nil {
		dc.Close()
		return err
	}
	h.dashboard, h.dashConn = srv, dc
	return nil
}

// DashboardURL is where the head serves its dashboard ("" for none).
func (h *Head) DashboardURL() string {
	if h.dashboard == nil {
		return ""
	}
	return h.dashboard.URL()
}

// startJobServer runs the job server on a connection of its own, in the
// GCS's role (it keeps its own bucket and stream). Drivers it starts find
// the cluster's token in the head's token file.
func (h *Head) startJobServer(ctx context.Context, cfg Config) error {
	natsOpts, err := cfg.Credentials.NATSOptions(auth.RoleGCS)
	if err != nil {
		return err
	}
	// gcs.Dial: an external NATS may take no credentials at all.
	jc, err := gcs.Dial(ctx, h.GCS.ClientURL(), cfg.Logger.With().Str("component", "jobs").Logger(), natsOpts...)
	if err != nil {
		return fmt.Errorf("job server: connect: %w", err)
	}
	nc := jc.NATS()
	var env []string
	if _, ok := cfg.Credentials.Token(); ok {
		env = append(env, auth.EnvTokenFile+"="+TokenFile(h.sessionDir))
	} else if !cfg.Credentials.Enabled() {
		env = append(env, auth.EnvAuth+"=none")
	}
	srv, err := jobserver.New(jobserver.Options{NATS: nc, Address: h.GCS.ClientURL(), Env: env, Dir: h.sessionDir,
		Replicas: cfg.Replicas, Logger: cfg.Logger})
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		jc.Close()
		return fmt.Errorf("job server: %w", err)
	}
	h.jobs, h.jobsConn = srv, jc
	return nil
}

// TokenFile is where a head keeps its cluster's token.
func TokenFile(sessionDir string) string { return filepath.Join(sessionDir, auth.TokenFileName) }

// Address is what drivers pass to sdk.Init(sdk.Address(...)).
func (h *Head) Address() string { return h.GCS.ClientURL() }

// SessionDir returns the session directory.
func (h *Head) SessionDir() string { return h.sessionDir }

// Done is closed when a client asked the cluster to shut down.
func (h *Head) Done() <-chan struct{} { return h.GCS.Done() }

// Shutdown stops the raylet (and its workers), the GCS and NATS, and
// removes the session's store and sockets (logs are kept). Idempotent.
func (h *Head) Shutdown() {
	h.once.Do(func() {
		if h.dashboard != nil {
			h.dashboard.Shutdown()
			h.dashConn.Close()
		}
		if h.jobs != nil {
			h.jobs.Shutdown()
			h.jobsConn.Close()
		}
		gcsGone := h.GCS == nil
		if !gcsGone {
			select {
			case <-h.GCS.Done():
				gcsGone = true
			default:
			}
		}
		if h.node != nil {
			if gcsGone {
				h.Client.Close() // nothing to unregister from
			}
			h.node.Shutdown()
		}
		if h.Client != nil {
			h.Client.Close()
		}
		if h.GCS != nil {
			h.GCS.Shutdown()
		}
		_ = os.RemoveAll(filepath.Join(h.sessionDir, "jetstream"))
		_ = os.RemoveAll(filepath.Join(h.sessionDir, "sockets"))
	})
}

// syncInterval is Config.SyncInterval with the environment's default: the
// embedded clusters of drivers and benchmarks have no flags.
func syncInterval(d time.Duration, log zerolog.Logger) time.Duration {
	if d != 0 {
		return d
	}
	env := os.Getenv("GORAY_NATS_SYNC_INTERVAL")
	if env == "" {
		return 0
	}
	v, err := time.ParseDuration(env)
	if err != nil || v < 0 {
		log.Warn().Str("GORAY_NATS_SYNC_INTERVAL", env).Msg("not a duration >= 0; using the default JetStream sync interval")
		return 0
	}
	if v == 0 {
		return gcs.SyncAlways
	}
	return v
}
