package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/cluster"
	"github.com/goray/goray/internal/digest"
	"github.com/goray/goray/internal/localcluster"
	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

// EnvAddress names the cluster Init joins when no Address option is given
// (Ray's RAY_ADDRESS). "auto" means the cluster `goray start` runs on this
// machine.
const EnvAddress = "GORAY_ADDRESS"

// InitOption configures Init.
type InitOption func(*initOptions)

type initOptions struct {
	address     string
	resources   map[string]float64
	storeMemory uint64
	shmDir      string
	sessionDir  string
	logger      *zerolog.Logger
	logToDriver bool
	namespace   string
	maxWorkers  int
	logWriter   io.Writer
	metricsAddr string
	runtimeEnv  []RuntimeEnvPart
	tokenFile   string
	authNone    bool
	tls         auth.TLSFiles
	// reconnectTimeout bounds how long a driver waits for the cluster
	// (its GCS, its node's raylet) to come back after losing it.
	reconnectTimeout time.Duration
}

// DefaultReconnectTimeout is how long a driver joined to a cluster waits for
// its head (GCS and, on the head's machine, the raylet) to come back.
const DefaultReconnectTimeout = 2 * time.Minute

// ReconnectTimeout bounds how long a driver joined to a cluster keeps
// reconnecting when it loses the cluster's head or its node's raylet, and
// how long control-plane calls wait meanwhile; tasks waiting for a worker
// fail after it.
func ReconnectTimeout(d time.Duration) InitOption {
	return func(o *initOptions) { o.reconnectTimeout = d }
}

// Address joins a running cluster (a `goray start` head's NATS URL, or
// "auto") instead of starting an embedded one.
func Address(addr string) InitOption { return func(o *initOptions) { o.address = addr } }

// NodeCPUs sets the CPUs of the embedded cluster's node (default: the
// machine's).
func NodeCPUs(n float64) InitOption { return func(o *initOptions) { o.resources["CPU"] = n } }

// NodeGPUs sets the GPUs of the embedded cluster's node.
func NodeGPUs(n float64) InitOption { return func(o *initOptions) { o.resources["GPU"] = n } }

// NodeResources adds custom resources to the embedded cluster's node.
func NodeResources(r map[string]float64) InitOption {
	return func(o *initOptions) {
		for k, v := range r {
			o.resources[k] = v
		}
	}
}

// ObjectStoreMemory sets the embedded node's object store size in bytes.
func ObjectStoreMemory(bytes uint64) InitOption {
	return func(o *initOptions) { o.storeMemory = bytes }
}

// ShmDir sets the directory, a tmpfs, of the embedded node's object store
// segment (default /dev/shm).
func ShmDir(dir string) InitOption { return func(o *initOptions) { o.shmDir = dir } }

// SessionDir sets where the embedded cluster keeps its state, sockets and
// logs (default: a new directory under $TMPDIR/goray).
func SessionDir(dir string) InitOption { return func(o *initOptions) { o.sessionDir = dir } }

// Logger sets goray's logger (default: warnings and errors to stderr).
func Logger(l zerolog.Logger) InitOption { return func(o *initOptions) { o.logger = &l } }

// LogToDriver streams worker output to the driver's stdout and stderr,
// each line prefixed with "(Function pid=N)" (default true).
func LogToDriver(on bool) InitOption { return func(o *initOptions) { o.logToDriver = on } }

// LogWriter sends the streamed worker output to w instead of the driver's
// stdout and stderr.
func LogWriter(w io.Writer) InitOption { return func(o *initOptions) { o.logWriter = w } }

// Namespace sets the job's namespace, where its named actors live unless
// they name another (default "default").
func Namespace(ns string) InitOption { return func(o *initOptions) { o.namespace = ns } }

// MaxWorkers caps the embedded node's worker processes per job.
func MaxWorkers(n int) InitOption { return func(o *initOptions) { o.maxWorkers = n } }

// MetricsAddress makes the embedded cluster's node serve Prometheus metrics
// at http://addr/metrics (see docs/metrics.md). addr is a host:port to
// listen on; "127.0.0.1:0" picks a free port, which MetricsURL tells.
// Default: no metrics endpoint. A `goray start` cluster serves metrics
// with --metrics-port instead.
func MetricsAddress(addr string) InitOption {
	return func(o *initOptions) { o.metricsAddr = addr }
}

// MetricsURL returns the URL of the embedded cluster's metrics endpoint,
// or "" if there is none: Init joined a running cluster, or was not given
// MetricsAddress, or has not been called.
func MetricsURL() string {
	sessMu.Lock()
	defer sessMu.Unlock()
	if sess == nil || sess.head == nil {
		return ""
	}
	if addr := sess.head.Raylet.MetricsAddr(); addr != "" {
		if sess.creds.TLS() != nil {
			return "https://" + addr + raylet.MetricsPath
		}
		return "http://" + addr + raylet.MetricsPath
	}
	return ""
}

// session is what Init set up and Shutdown tears down.
type session struct {
	cw     *Worker
	head   *cluster.Head
	gcs    *gcs.Client
	ownGCS bool
	logSub *nats.Subscription
	creds  *auth.Credentials
	// binDigest delivers the SHA-256 of this program's binary.
	binDigest <-chan digestResult
	// register is how this driver registered with its raylet, sent again
	// to the next raylet of its machine if that one dies (rebind.go).
	register *protos.RegisterClientRequest
	// rebindTimeout bounds the wait for a new raylet.
	rebindTimeout time.Duration
	// uploads ship the job's binaries to the packages store.
	uploads *binaryUploads
}

type digestResult struct {
	digest string
	err    error
}

var (
	sessMu sync.Mutex
	sess   *session
)

// Init connects this program to goray. With no Address (and no
// GORAY_ADDRESS) it starts an embedded single-node cluster inside the
// process. In a worker process started by goray it runs the worker loop
// and never returns, so call it early in main, before other work.
func Init(ctx context.Context, opts ...InitOption) error {
	WorkerMain()
	o := initOptions{resources: map[string]float64{}, logToDriver: true, namespace: "default", reconnectTimeout: DefaultReconnectTimeout}
	for _, f := range opts {
		f(&o)
	}
	if o.address == "" {
		o.address = os.Getenv(EnvAddress)
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}).With().Timestamp().Logger().Level(logLevel(zerolog.WarnLevel))
	if o.logger != nil {
		log = *o.logger
	}
	sessMu.Lock()
	defer sessMu.Unlock()
	if sess != nil {
		return ErrAlreadyInitialized
	}
	// The binary's digest names it in the job's record; hashing it runs
	// while the cluster starts.
	binDigest := make(chan digestResult, 1)
	go func() {
		d, err := digest.File(executable())
		binDigest <- digestResult{d, err}
	}()
	s := &session{binDigest: binDigest}
	var node *protos.NodeInfo
	var err error
	if o.address == "" {
		if s.creds, err = o.credentials(true, ""); err != nil {
			return err
		}
		if !s.creds.Enabled() {
			log.Warn().Msg("goray: the embedded cluster runs WITHOUT AUTHENTICATION (AuthNone / GORAY_AUTH=none): anyone who reaches its ports can run code as this user")
		}
		s.head, err = cluster.StartHead(ctx, cluster.Config{
			SessionDir:        o.sessionDir,
			Resources:         o.resources,
			ObjectStoreMemory: o.storeMemory,
			ShmDir:            o.shmDir,
			MaxWorkers:        o.maxWorkers,
			MetricsAddr:       o.metricsAddr,
			Logger:            log,
			Credentials:       s.creds,
		})
		if err != nil {
			return fmt.Errorf("goray: start embedded cluster: %w", err)
		}
		s.gcs = s.head.Client
		node = s.head.Raylet.NodeInfo()
	} else {
		addr, err := resolveAddress(o.address)
		if err != nil {
			return err
		}
		if s.creds, err = o.credentials(false, addr); err != nil {
			return err
		}
		natsOpts, err := s.creds.NATSOptions(auth.RoleDriver)
		if err != nil {
			return fmt.Errorf("goray: join cluster at %s: %w", addr, err)
		}
		s.gcs, err = gcs.Dial(ctx, addr, log, natsOpts...)
		if err != nil {
			return fmt.Errorf("goray: join cluster at %s: %w", addr, err)
		}
		// Calls to the GCS wait while the head restarts.
		s.gcs.SetOutageWait(o.reconnectTimeout)
		s.ownGCS = true
		node, err = localNode(ctx, s.gcs)
		if err != nil {
			s.gcs.Close()
			return fmt.Errorf("goray: join cluster at %s: %w", addr, err)
		}
	}
	if err := s.connect(ctx, log, node, o); err != nil {
		s.teardown()
		return err
	}
	sess = s
	cur.Store(s.cw)
	return nil
}

// connect makes this process the job's driver on node.
func (s *session) connect(ctx context.Context, log zerolog.Logger, node *protos.NodeInfo, o initOptions) error {
	sp, err := buildEnvSpec(o.runtimeEnv)
	if err != nil {
		return err
	}
	jobEnv := o.jobEnv(s.gcs.NATS().ConnectedUrl(), sp)
	jobID := protos.NewUniqueID()
	cw := newWorker(log, false, jobID, protos.NewUniqueID(), s.creds)
	s.cw = cw
	cw.gcs = s.gcs
	// The job's runtime env: its package is uploaded before any worker
	// can need it.
	var pkg *uploadedPackage
	if sp.hasPackage() {
		if pkg, err = cw.uploadPackage(ctx, sp.pack); err != nil {
			return fmt.Errorf("goray: the job's runtime env: %w", err)
		}
	} else if pkg, err = submittedPackage(); err != nil {
		return err
	}
	userSp := &envSpec{vars: sp.userVars()}
	runtimeEnv := mergeEnv(nil, userSp, pkg)
	cw.jobEnv = runtimeEnv
	cw.namespace = o.namespace
	if err := cw.listen(raylet.SocketDir(node.GetSessionDir()), endpointHost(node.GetRayletTcpEndpoint())); err != nil {
		return fmt.Errorf("goray: %w", err)
	}
	c, err := cw.dial(ctx, node.GetRayletEndpoint())
	if err != nil {
		return fmt.Errorf("goray: connect to raylet at %s: %w", node.GetRayletEndpoint(), err)
	}
	cw.setup(func(b *nodeBinding) { b.raylet = c })
	wd, _ := os.Getwd()
	bin := <-s.binDigest
	if bin.err != nil {
		return fmt.Errorf("goray: this program's binary: %w", bin.err)
	}
	own := ownBinary(bin.digest)
	extra, err := extraBinaries(own, sp.binaries)
	if err != nil {
		return fmt.Errorf("goray: the job's runtime env: %w", err)
	}
	bins := append([]jobBinary{own}, extra...)
	binInfos := make([]*protos.JobBinary, len(bins))
	for i, b := range bins {
		binInfos[i] = b.info
	}
	var reply protos.RegisterClientReply
	s.register = &protos.RegisterClientRequest{
		JobId: jobID.Bytes(), WorkerId: cw.workerID.Bytes(), Executable: executable(), FunctionDigest: cw.digest, Env: jobEnv, WorkingDir: wd,
		BinaryDigest: bin.digest, Binaries: binInfos, RuntimeEnv: runtimeEnv,
	}
	if err := c.Call(ctx, protos.Method_REGISTER_CLIENT, s.register, &reply); err != nil {
		return fmt.Errorf("goray: register driver with raylet: %w", err)
	}
	cw.attachNode(reply.GetNode())
	if s.head != nil {
		st := s.head.Raylet.Store()
		cw.setup(func(b *nodeBinding) {
			b.store, b.seg = localStore{st, st.NewHolder(), s.head.Raylet.ObjectsDeleted}, st.Segment()
		})
	} else {
		seg, err := objstore.OpenSegment(node.GetStorePath())
		if err != nil {
			return fmt.Errorf("goray: map object store %s: %w", node.GetStorePath(), err)
		}
		cw.setup(func(b *nodeBinding) { b.store, b.seg = rayletStore{c}, seg })
		cw.ownSeg = true
		s.rebindTimeout = o.reconnectTimeout
		cw.rebinds.Store(true)
		go s.keepRaylet(cw.node())
	}
	if o.logToDriver {
		sub, err := s.gcs.NATS().Subscribe(cluster.LogsSubject(jobID), logPrinter(o.logWriter))
		if err != nil {
			return fmt.Errorf("goray: subscribe to worker logs: %w", err)
		}
		s.logSub = sub
	}
	if err := cw.watchNodes(); err != nil {
		return fmt.Errorf("goray: %w", err)
	}
	table, digest := functionTable()
	table.JobId = jobID.Bytes()
	host, _ := os.Hostname()
	if err := s.gcs.RegisterJob(ctx, &protos.JobInfo{JobId: jobID.Bytes(), Executable: executable(), DriverPid: int32(os.Getpid()), DriverHost: host,
		StartTimeUnixMs: time.Now().UnixMilli(), FunctionDigest: digest, Namespace: o.namespace, Env: jobEnv, WorkingDir: wd,
		BinaryDigest: bin.digest, Binaries: binInfos, RuntimeEnv: runtimeEnv}); err != nil {
		return fmt.Errorf("goray: register job: %w", err)
	}
	if err := s.startBinaryUploads(bins, node.GetNodeId()); err != nil {
		return fmt.Errorf("goray: %w", err)
	}
	if err := s.gcs.RegisterFunctions(ctx, table); err != nil {
		return fmt.Errorf("goray: register functions: %w", err)
	}
	return nil
}

// Shutdown disconnects from the cluster and, for an embedded cluster, stops
// it: no process, shm segment or socket of it remains. Idempotent.
func Shutdown() {
	sessMu.Lock()
	defer sessMu.Unlock()
	if sess == nil {
		return
	}
	sess.teardown()
	sess = nil
}

func (s *session) teardown() {
	cur.CompareAndSwap(s.cw, nil)
	// A node may be fetching the binary: let an upload under way finish.
	s.uploads.stop(5 * time.Second)
	if s.cw != nil {
		if s.gcs != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			_ = s.gcs.FinishJob(ctx, s.cw.jobID)
			cancel()
		}
		s.cw.close()
	}
	if s.logSub != nil {
		_ = s.logSub.Unsubscribe()
	}

	if s.head != nil {
		s.head.Shutdown()
	}
	if s.ownGCS && s.gcs != nil {
		s.gcs.Close()
	}
}

// localNode picks the cluster node on this machine.
func localNode(ctx context.Context, c *gcs.Client) (*protos.NodeInfo, error) {
	nodes, err := c.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	var alive []*protos.NodeInfo
	for _, n := range nodes {
		if n.GetState() == protos.NodeInfo_ALIVE {
			alive = append(alive, n)
		}
	}
	// Several nodes may run on this machine (a test cluster): the head's
	// raylet is the driver's, as in Ray.
	var mine *protos.NodeInfo
	for _, n := range alive {
		if n.GetHostname() == host && (mine == nil || n.GetIsHead()) {
			mine = n
		}
	}
	if mine != nil {
		return mine, nil
	}
	if len(alive) == 0 {
		return nil, errors.New("the cluster has no live node")
	}
	return nil, fmt.Errorf("no node of the cluster runs on this machine (%s): a driver needs a local raylet", host)
}

// endpointHost is the host of a "tcp:host:port" endpoint ("" if none).
func endpointHost(ep string) string {
	_, addr, ok := strings.Cut(ep, ":")
	if !ok {
		return ""
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return host
}

// CurrentClusterFile is where `goray start --head` records its address, so
// "auto" finds it.
func CurrentClusterFile() string { return localcluster.AddressFile() }

func resolveAddress(addr string) (string, error) {
	if addr != "auto" {
		if !strings.Contains(addr, "://") {
			addr = "nats://" + addr
		}
		return addr, nil
	}
	b, err := os.ReadFile(CurrentClusterFile())
	if err != nil {
		return "", fmt.Errorf("goray: address \"auto\": no cluster started with `goray start --head` on this machine (%v)", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func logLevel(def zerolog.Level) zerolog.Level {
	if v := os.Getenv(raylet.EnvLogLevel); v != "" {
		if l, err := zerolog.ParseLevel(v); err == nil {
			return l
		}
	}
	return def
}
