package sdk

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/goray/goray/internal/core"
)

// EnvAddress names the cluster Init joins when no Address option is given
// (Ray's RAY_ADDRESS). "auto" means the cluster `goray start --head` runs
// on this machine.
const EnvAddress = "GORAY_ADDRESS"

// InitOption configures Init.
type InitOption interface{ initOption() core.InitOption }

type initOpt core.InitOption

func (o initOpt) initOption() core.InitOption { return core.InitOption(o) }

// Init connects this program to goray. With no Address (and no
// GORAY_ADDRESS) it starts an embedded single-node cluster inside the
// process. In a worker process started by goray it runs the worker loop
// and never returns, so call it early in main, before other work.
func Init(ctx context.Context, opts ...InitOption) error {
	co := make([]core.InitOption, len(opts))
	for i, o := range opts {
		co[i] = o.initOption()
	}
	return core.Init(ctx, co...)
}

// Shutdown disconnects from the cluster and, for an embedded cluster, stops
// it: no process, shm segment or socket of it remains. Idempotent.
func Shutdown() { core.Shutdown() }

// IsWorker reports whether this process was started by goray as a worker.
func IsWorker() bool { return core.IsWorker() }

// WorkerMain runs the worker loop and exits if this process was started by
// goray as a worker; otherwise it returns at once. Init calls it; a test
// binary whose tests use goray calls it first thing in TestMain (or uses
// goraytest.Main), since its workers re-run the test binary.
//
// Workers do not get the driver's command-line arguments: os.Args in a
// worker holds the binary's path only, because the arguments would have to
// travel in the job's record in the GCS, where a password given on a
// command line would be readable by the whole cluster. Call Init (or
// WorkerMain) before reading os.Args or doing other work in main.
func WorkerMain() { core.WorkerMain() }

// MetricsURL returns the URL of the embedded cluster's metrics endpoint,
// or "" if there is none: Init joined a running cluster, or was not given
// MetricsAddress, or has not been called.
func MetricsURL() string { return core.MetricsURL() }

// Address joins a running cluster (a `goray start --head` head's NATS
// URL, or "auto") instead of starting an embedded one.
func Address(addr string) InitOption { return initOpt(core.Address(addr)) }

// NodeCPUs sets the CPUs of the embedded cluster's node (default: the
// machine's).
func NodeCPUs(n float64) InitOption { return initOpt(core.NodeCPUs(n)) }

// NodeGPUs sets the GPUs of the embedded cluster's node.
func NodeGPUs(n float64) InitOption { return initOpt(core.NodeGPUs(n)) }

// NodeResources adds custom resources to the embedded cluster's node.
func NodeResources(r map[string]float64) InitOption { return initOpt(core.NodeResources(r)) }

// ObjectStoreMemory sets the embedded node's object store size in bytes
// (default: 30% of the machine's memory). Init fails with a message saying
// so if the store's directory (ShmDir) has less free space.
func ObjectStoreMemory(bytes uint64) InitOption { return initOpt(core.ObjectStoreMemory(bytes)) }

// ShmDir sets the directory of the embedded node's object store: a tmpfs
// holding its shared-memory segment (default /dev/shm, Ray's
// _plasma_directory). Use it where /dev/shm is too small for the store,
// as in a container with Docker's default 64 MiB.
func ShmDir(dir string) InitOption { return initOpt(core.ShmDir(dir)) }

// SessionDir sets where the embedded cluster keeps its state, sockets and
// logs (default: a new directory under $TMPDIR/goray). Unix socket paths
// are limited to 107 bytes, so Init refuses a directory too long for its
// sockets, naming the limit.
func SessionDir(dir string) InitOption { return initOpt(core.SessionDir(dir)) }

// Logger sends goray's own log records (not the workers' output) to l
// (default: warnings and errors to stderr). The level is l's.
func Logger(l *slog.Logger) InitOption { return initOpt(core.SlogLogger(l)) }

// LogToDriver streams worker output to the driver's stdout and stderr,
// each line prefixed with "(Function pid=N)" (default true).
func LogToDriver(on bool) InitOption { return initOpt(core.LogToDriver(on)) }

// DefaultReconnectTimeout is ReconnectTimeout's default: 2 minutes.
const DefaultReconnectTimeout = core.DefaultReconnectTimeout

// ReconnectTimeout bounds how long a driver joined to a cluster (Address)
// rides out the loss of the cluster's head: calls to the GCS (creating an
// actor, GetActor, placement groups) wait for it up to d, and a driver on
// the head's machine waits as long for the machine's new raylet, its tasks
// waiting for workers meanwhile. Tasks and actor calls already running on
// other nodes carry on. Default DefaultReconnectTimeout.
func ReconnectTimeout(d time.Duration) InitOption { return initOpt(core.ReconnectTimeout(d)) }

// LogWriter sends the streamed worker output to w instead of the driver's
// stdout and stderr.
func LogWriter(w io.Writer) InitOption { return initOpt(core.LogWriter(w)) }

// MaxWorkers caps the embedded node's worker processes per job.
func MaxWorkers(n int) InitOption { return initOpt(core.MaxWorkers(n)) }

// MetricsAddress makes the embedded cluster's node serve Prometheus metrics
// at http://addr/metrics (see docs/metrics.md). addr is a host:port to
// listen on; "127.0.0.1:0" picks a free port, which MetricsURL tells.
// Default: no metrics endpoint. A `goray start` cluster serves metrics
// with --metrics-port instead.
func MetricsAddress(addr string) InitOption { return initOpt(core.MetricsAddress(addr)) }

// A goray cluster authenticates every connection with its token (see
// docs/security.md). Init finds the token of the cluster it joins in this
// order: AuthTokenFile, GORAY_AUTH_TOKEN, GORAY_AUTH_TOKEN_FILE, then the
// token of the cluster `goray start --head` runs on this machine. The
// embedded cluster makes a token of its own; its workers get keys derived
// from it, never the token.

// AuthTokenFile names the file (mode 0600) holding the token of the
// cluster Init joins: a copy of the head's <session dir>/auth_token.
func AuthTokenFile(path string) InitOption { return initOpt(core.AuthTokenFile(path)) }

// AuthNone joins, or starts, a cluster without authentication (`goray
// start --auth none`, or GORAY_AUTH=none): anyone who reaches its ports
// can run code on it. For benchmarks on a machine of one's own only.
func AuthNone() InitOption { return initOpt(core.AuthNone()) }

// TLS turns on mutual TLS with the cluster (certificate, its key, and the
// CA that signed every certificate of the cluster); GORAY_TLS_CERT,
// GORAY_TLS_KEY and GORAY_TLS_CA do the same. An embedded cluster then
// uses TLS for its NATS and TCP connections too.
func TLS(cert, key, ca string) InitOption { return initOpt(core.TLS(cert, key, ca)) }
