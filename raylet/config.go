package raylet

import (
	"context"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
)

// DefaultFinishedJobLinger is Config.FinishedJobLinger's default.
const DefaultFinishedJobLinger = 10 * time.Minute

// Config configures a raylet.
type Config struct {
	NodeID protos.NodeID
	// SessionDir holds sockets/ and logs/.
	SessionDir string
	// Resources is the node's total; nil means the machine's CPUs and
	// nothing else.
	Resources ResourceSet
	// ObjectStoreMemory is the shared-memory segment size in bytes; 0 means
	// 30% of the machine's memory, as Ray.
	ObjectStoreMemory uint64
	// ShmDir is the directory of the node's shared-memory segment, a
	// tmpfs; "" means /dev/shm. Start refuses a directory with less free
	// space than ObjectStoreMemory (objstore.ErrShmTooSmall) and removes
	// the segments there of raylets that died without removing theirs.
	ShmDir string
	// SpillDir is where objects are spilled when the store is full; ""
	// means SessionDir/spill/<node>. Spill files are removed on Shutdown.
	SpillDir string
	// MaxWorkers caps the worker processes per job; 0 means
	// max(4, 2 x CPUs).
	MaxWorkers int
	IsHead     bool
	Labels     map[string]string
	Logger     zerolog.Logger
	// Report receives the node's state about once a second and after
	// changes (the GCS node manager, through NATS).
	Report func(*protos.NodeInfo)
	// PublishLogs receives worker output lines (the driver prints them).
	PublishLogs func(*protos.LogBatch)
	// ReportInterval defaults to one second.
	ReportInterval time.Duration
	// FinishedJobLinger is how long the raylet still knows a job whose
	// driver left once nothing of the job runs or waits on the node (0
	// means 10 minutes). Until then a detached actor of the job can be
	// placed or restarted here: its worker runs the job's binary, with
	// the job's environment and working directory. A detached actor that
	// runs, or whose lease request waits, keeps the job known however
	// long that takes; the linger covers the gap between a detached
	// actor's crash and the GCS asking for a worker to restart it, and a
	// detached actor created just before its driver exited.
	FinishedJobLinger time.Duration
	// NodeIP is the address the node's raylet, workers and object transfer
	// server listen on for other nodes (default 127.0.0.1: a cluster of
	// nodes on one machine).
	NodeIP string
	// LookupJob fetches the GCS's record of a job this node does not know
	// (its driver runs on another node); nil means such lease requests
	// fail with unknown_job.
	LookupJob func(ctx context.Context, id protos.JobID) (*protos.JobInfo, error)
	// PublishFree announces objects this node deleted that other nodes
	// pulled copies of, so they drop them (see FreeCopies); nil: copies
	// stay until their node's owner frees or spills them.
	PublishFree func([]protos.ObjectID)
	// PublishOwnerGone announces that a process of this node that may own
	// objects exited, so other nodes free the objects it owned there
	// (OwnerGone).
	PublishOwnerGone func(protos.WorkerID)
	// Credentials authenticate every connection of the node (required):
	// the raylet's unix and TCP endpoints and its object transfer server
	// accept only peers that pass the handshake on their wire key, its
	// puller proves itself the same way, and its workers get
	// Credentials.ForWorker through a pipe. auth.None(nil) serves anyone
	// (--auth none).
	Credentials *auth.Credentials
	// Limits bound the connections peers may hold open (zero: the
	// defaults of package auth).
	Limits auth.Limits
	// MetricsAddr is where the node serves Prometheus metrics, at
	// http://MetricsAddr/metrics (see docs/metrics.md): a host:port to
	// listen on, "127.0.0.1:0" for a free port (Raylet.MetricsAddr tells
	// which), or "" for no endpoint.
	MetricsAddr string
	// SessionName labels every metric session_name, as Ray's SessionName:
	// the cluster's session (the head's session directory's name), the
	// same on every node. "" leaves the label out.
	SessionName string

	// defaultStore: ObjectStoreMemory was left to its default, which
	// error messages say.
	defaultStore bool
	// MemoryUsageThreshold is the fraction of the node's memory (its
	// memory cgroup's limit, or the machine's memory when it has none)
	// above which the raylet's memory monitor kills a worker (see
	// docs/memory.md, "The memory monitor"); 0 or less turns the monitor
	// off. The CLI and embedded clusters default to
	// DefaultMemoryUsageThreshold.
	MemoryUsageThreshold float64
	// MemoryMonitorInterval is how often the monitor reads the node's
	// memory (default DefaultMemoryMonitorInterval).
	MemoryMonitorInterval time.Duration
	// ReadMemory replaces how the monitor reads the node's memory (a
	// test's hook); nil reads the memory cgroup or /proc/meminfo
	// (ReadMemoryUsage).
	ReadMemory func() (MemoryUsage, error)

	// FetchPackage writes the content of a runtime env object (a job
	// binary "bin/<sha256>" or working-directory package "pkg/<sha256>",
	// gcs.BucketPackages) to w, waiting for an upload still under way
	// until ctx ends. nil: jobs run only from binaries on this node.
	FetchPackage func(ctx context.Context, name string, w io.Writer) error
	// RuntimeEnvCacheBytes caps the node's runtime env cache
	// (SessionDir/runtime_resources): unused binaries and packages are
	// removed past it, least recently used first. 0 means
	// DefaultRuntimeEnvCacheBytes.
	RuntimeEnvCacheBytes int64
	// ExtraCollectors are served by the node's metrics endpoint besides its
	// own (the head's: the GCS's, gcs.Server.Collector).
	ExtraCollectors []prometheus.Collector
	// LogRotateBytes caps a worker's log file (stdout or stderr): past it
	// the file is renamed with a timestamp and a new one begun, keeping
	// LogRotateBackups old files. 0 means DefaultLogRotateBytes and
	// DefaultLogRotateBackups (Ray's 512 MB and 5).
	LogRotateBytes   int64
	LogRotateBackups int
	// Platform is the node's GOOS/GOARCH, which picks the job binary its
	// workers run and is its PlatformLabel. "" means this process's
	// (runtime.GOOS/runtime.GOARCH), or $GORAY_NODE_PLATFORM, which tests
	// set to play a node of another platform.
	Platform string
}

// Worker log rotation defaults (Ray's RAY_ROTATION_MAX_BYTES and
// RAY_ROTATION_BACKUP_COUNT).
const (
	DefaultLogRotateBytes   = 512 << 20
	DefaultLogRotateBackups = 5
)

// logRotateMB is LogRotateBytes in lumberjack's unit, megabytes (at least
// one).
func (c *Config) logRotateMB() int {
	return int(max(1, (c.LogRotateBytes+(1<<20)-1)>>20))
}

// EnvNodePlatform overrides a node's platform (Config.Platform); for
// tests of clusters mixing platforms on one machine.
const EnvNodePlatform = "GORAY_NODE_PLATFORM"

// DefaultMemoryUsageThreshold is the memory monitor's threshold unless
// set otherwise, Ray's memory_usage_threshold.
const DefaultMemoryUsageThreshold = 0.95

// DefaultMemoryMonitorInterval is Config.MemoryMonitorInterval's default,
// Ray's memory_monitor_refresh_ms.
const DefaultMemoryMonitorInterval = 250 * time.Millisecond

func (c *Config) setDefaults() {
	if c.Resources == nil {
		c.Resources = ResourceSet{CPU: int64(runtime.NumCPU()) * resourceUnit}
	}
	if c.ObjectStoreMemory == 0 {
		c.ObjectStoreMemory = defaultStoreMemory()
		c.defaultStore = true
	}
	if c.ShmDir == "" {
		c.ShmDir = objstore.DefaultShmDir
	}
	// Workers, in other working directories, open the segment by its
	// path.
	if abs, err := filepath.Abs(c.ShmDir); err == nil {
		c.ShmDir = abs
	}
	if c.MaxWorkers == 0 {
		c.MaxWorkers = int(math.Max(4, 2*math.Ceil(c.Resources.Get(CPU))))
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = time.Second
	}
	if c.FinishedJobLinger == 0 {
		c.FinishedJobLinger = DefaultFinishedJobLinger
	}
	if c.MemoryMonitorInterval <= 0 {
		c.MemoryMonitorInterval = DefaultMemoryMonitorInterval
	}
	if c.NodeIP == "" {
		c.NodeIP = "127.0.0.1"
	}
	if c.NodeID.IsZero() {
		c.NodeID = protos.NewUniqueID()
	}
	if c.LogRotateBytes <= 0 {
		c.LogRotateBytes, c.LogRotateBackups = DefaultLogRotateBytes, DefaultLogRotateBackups
	}
	if c.Platform == "" {
		c.Platform = os.Getenv(EnvNodePlatform)
	}
	if c.Platform == "" {
		c.Platform = runtime.GOOS + "/" + runtime.GOARCH
	}
	labels := maps.Clone(c.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[PlatformLabel] = c.Platform
	c.Labels = labels
}
