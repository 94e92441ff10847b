package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/cluster"
	"github.com/goray/goray/internal/dashboard"
	"github.com/goray/goray/internal/localcluster"
	"github.com/goray/goray/raylet"
)

// DefaultPort is the head's NATS port when --port is not given. Ray's GCS
// uses 6379; goray takes the next one so both can run on one machine.
const DefaultPort = 6380

const (
	// startTimeout bounds how long `goray start` waits for the daemon.
	startTimeout = 60 * time.Second
	headLogName  = "goray-head.log"
)

type startOptions struct {
	head              bool
	numCPUs           float64
	numGPUs           float64
	cpusSet, gpusSet  bool
	resources         string
	objectStoreMemory string
	shmDir            string
	port              int
	host              string
	metricsHost       string
	metricsPort       int
	// dashboardHost and dashboardPort (head only): where the dashboard
	// listens; dashboardPortSet: --dashboard-port was given, so a port
	// in use fails the start rather than moving to a free one.
	dashboardHost    string
	dashboardPort    int
	dashboardPortSet bool
	sessionDir       string
	block            bool
	// address is the cluster a worker node joins (instead of --head).
	address string
	// labels (--labels k=v,...) and nodeIP (--node-ip) describe the node.
	labels   string
	labelMap map[string]string
	nodeIP   string
	// nats (--nats) is an existing NATS cluster the head uses instead of
	// embedding a server; replicas (--nats-replicas) its buckets' replicas.
	nats     string
	replicas int
	// syncInterval (--nats-sync-interval, head only) is how often the
	// embedded NATS fsyncs the GCS's JetStream files; 0 after every write.
	syncInterval time.Duration
	// nodeTimeout (--node-timeout, head only) is how long a node may go
	// silent before the GCS declares it dead.
	nodeTimeout time.Duration
	// notifyFD is set in the daemon `goray start` re-executes: the daemon
	// writes its address to it once the cluster is up, then closes it.
	notifyFD int
	// sec: how the cluster authenticates (flags of every command).
	sec *securityOptions

	// memoryThreshold (--memory-usage-threshold) is the fraction of the
	// node's memory above which its memory monitor kills a worker; 0
	// turns the monitor off. memoryThresholdSet: the flag was given.
	memoryThreshold    float64
	memoryThresholdSet bool

	// Parsed.
	res        map[string]float64
	storeBytes uint64
}

func newStartCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	o := &startOptions{sec: sec}
	cmd := &cobra.Command{
		Use:   "start (--head | --address ADDR) [flags]",
		Short: "Start a goray head node, or a node that joins a cluster, on this machine",
		Long: `Start a goray head node: NATS with JetStream, the GCS and a raylet with its
object store, in one daemon process. With --address instead of --head,
start a worker node (a raylet with its object store) that joins the cluster
whose head is at ADDR; several may run on one machine, each with its own
session directory, ports and shm segment.

Without --block, goray start runs the daemon in the background (logs in
<session-dir>/logs/` + headLogName + `), waits until the cluster answers, prints
its address and exits. The address is also written to
$TMPDIR/goray/current_cluster, which sdk.Address("auto"), goray status and
goray stop read.

The daemon stops on SIGINT or SIGTERM, or when asked with goray stop; a
worker node leaves the cluster cleanly when stopped (goray stop on its
machine), and stops when the cluster shuts down.

Every connection to the cluster authenticates with its token (see
docs/security.md). The head makes one unless --auth-token-file,
GORAY_AUTH_TOKEN or GORAY_AUTH_TOKEN_FILE gives it, and keeps it in
<session-dir>/auth_token (mode 0600), where goray commands and programs on
this machine find it. Other machines need a copy: pass it to goray start
--address with --auth-token-file, and to programs with
GORAY_AUTH_TOKEN_FILE. --tls-cert, --tls-key and --tls-ca add mutual TLS.`,
		Example: `  goray start --head
  goray start --head --num-cpus 8 --num-gpus 1 --resources '{"TPU": 4}'
  goray start --head --port 0 --object-store-memory 2GiB --block
  goray start --head --metrics-port 8080   # Prometheus metrics at http://127.0.0.1:8080/metrics
  goray start --address 10.0.0.1:6380 --auth-token-file ./token --num-cpus 16 --labels zone=a,disk=ssd --node-ip 10.0.0.2
  goray start --head --tls-cert node.pem --tls-key node-key.pem --tls-ca ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.cpusSet = cmd.Flags().Changed("num-cpus")
			o.gpusSet = cmd.Flags().Changed("num-gpus")
			o.memoryThresholdSet = cmd.Flags().Changed("memory-usage-threshold")
			o.dashboardPortSet = cmd.Flags().Changed("dashboard-port")
			if err := o.validate(); err != nil {
				return err
			}
			switch {
			case o.block && o.head:
				return runHead(cmd.Context(), o, log)
			case o.block:
				return runNode(cmd.Context(), o, log)
			case o.head:
				return startDaemon(cmd.Context(), o, log)
			}
			return startNodeDaemon(cmd.Context(), o, log)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.head, "head", false, "start a head node (NATS, the GCS and a raylet)")
	f.StringVar(&o.address, "address", "", "join the cluster whose head's NATS is at this address as a worker node")
	f.StringVar(&o.labels, "labels", "", "node labels for label selectors, e.g. zone=a,disk=ssd")
	f.StringVar(&o.nodeIP, "node-ip", "127.0.0.1", "address other nodes reach this node's raylet, workers and object transfer at")
	f.StringVar(&o.nats, "nats", "", "head only: use this existing NATS (with JetStream) instead of embedding one; comma-separated URLs of one NATS cluster, e.g. nats://n1:4222,nats://n2:4222,nats://n3:4222")
	f.IntVar(&o.replicas, "nats-replicas", 1, "head only: JetStream replicas of the GCS's buckets (3 on a three-server NATS cluster)")
	f.DurationVar(&o.syncInterval, "nats-sync-interval", gcs.DefaultSyncInterval, "head only: how often the embedded NATS fsyncs the GCS's JetStream files (a power loss loses at most this much of acknowledged writes); 0 fsyncs every write before acknowledging it, at a cost (docs/fault-tolerance.md)")
	f.DurationVar(&o.nodeTimeout, "node-timeout", 0, "head only: how long a node may go silent before it is declared dead (default 10s)")
	f.Float64Var(&o.numCPUs, "num-cpus", 0, "CPUs of the node (default: the machine's CPU count)")
	f.Float64Var(&o.numGPUs, "num-gpus", 0, "GPUs of the node")
	f.StringVar(&o.resources, "resources", "", `custom resources as a JSON object, e.g. '{"TPU": 4, "db_conn": 2}'`)
	f.Float64Var(&o.memoryThreshold, "memory-usage-threshold", raylet.DefaultMemoryUsageThreshold, "fraction of the node's memory (its memory cgroup's limit, or the machine's) above which the memory monitor kills a worker, newest retriable task first (docs/memory.md); 0 turns the monitor off; without the flag, $"+cluster.EnvMemoryUsageThreshold+" if set")
	f.StringVar(&o.objectStoreMemory, "object-store-memory", "", "object store size in bytes; suffixes KiB, MiB, GiB, KB, MB, GB are accepted (default: 30% of RAM)")
	f.StringVar(&o.shmDir, "shm-dir", "", "directory (a tmpfs) of the node's object store segment; it needs as much free space as the store (default /dev/shm)")
	f.IntVar(&o.port, "port", DefaultPort, "NATS port drivers connect to; 0 picks a free port")
	f.StringVar(&o.host, "host", "127.0.0.1", "address NATS listens on (0.0.0.0 for all interfaces)")
	f.StringVar(&o.metricsHost, "metrics-host", "127.0.0.1", "address the metrics endpoint listens on; beyond loopback, scrapers must send the bearer token goray metrics-token prints")
	f.IntVar(&o.metricsPort, "metrics-port", 0, "port of the node's Prometheus metrics endpoint, http://HOST:PORT/metrics (see docs/metrics.md); -1 picks a free port, 0 serves none")
	f.StringVar(&o.dashboardHost, "dashboard-host", "127.0.0.1", "head only: address the web dashboard listens on (0.0.0.0 for all interfaces; it asks for the cluster token)")
	f.IntVar(&o.dashboardPort, "dashboard-port", dashboard.DefaultPort, "head only: port of the web dashboard (docs/dashboard.md); -1 picks a free port, 0 serves none; without the flag, a free port if 8265 is taken")
	f.StringVar(&o.sessionDir, "session-dir", "", "directory for the cluster's state, sockets and logs (default: a new one under $TMPDIR/goray)")
	f.BoolVar(&o.block, "block", false, "run in the foreground until interrupted instead of starting a daemon")
	f.IntVar(&o.notifyFD, "notify-fd", 0, "")
	_ = f.MarkHidden("notify-fd")
	return cmd
}

// durability says where the GCS keeps its tables and what a failure can
// take (the startup banner shows it).
func (o *startOptions) durability() string {
	if o.nats != "" {
		return fmt.Sprintf("JetStream on the NATS cluster %s, %d replica(s), its servers' own fsync setting", o.nats, o.replicas)
	}
	if o.syncInterval == 0 {
		return "JetStream in the session dir, fsynced on every write (--nats-sync-interval 0); restart the head on this session dir to recover"
	}
	return fmt.Sprintf("JetStream in the session dir, fsynced every %v (a power loss loses at most that); restart the head on this session dir to recover", o.syncInterval)
}

// syncIntervalGCS is --nats-sync-interval as gcs.Options wants it.
func (o *startOptions) syncIntervalGCS() time.Duration {
	if o.syncInterval == 0 {
		return gcs.SyncAlways
	}
	return o.syncInterval
}

func (o *startOptions) validate() error {
	switch {
	case o.head && o.address != "":
		return errors.New("--head and --address exclude each other: a head starts a cluster, --address joins one")
	case !o.head && o.address == "":
		return errors.New("say what to start: --head for a new cluster, or --address ADDR to join the cluster at ADDR")
	case !o.head && o.nodeTimeout != 0:
		return errors.New("--node-timeout is a setting of the head (goray start --head)")
	case !o.head && o.syncInterval != gcs.DefaultSyncInterval:
		return errors.New("--nats-sync-interval is a setting of the head (goray start --head)")
	case o.syncInterval < 0:
		return fmt.Errorf("invalid --nats-sync-interval %v: want 0 (every write) or a positive duration", o.syncInterval)
	case !o.head && (o.nats != "" || o.replicas != 1):
		return errors.New("--nats and --nats-replicas are settings of the head (goray start --head); a node joins with --address")
	case o.replicas < 1 || o.replicas > 5:
		return fmt.Errorf("invalid --nats-replicas %d: JetStream allows 1 to 5", o.replicas)
	case o.nodeTimeout < 0:
		return fmt.Errorf("invalid --node-timeout %v: want a positive duration", o.nodeTimeout)
	}
	if o.memoryThresholdSet && (o.memoryThreshold < 0 || o.memoryThreshold > 1) {
		return fmt.Errorf("invalid --memory-usage-threshold %v: want a fraction from 0 to 1 (0 turns the memory monitor off)", o.memoryThreshold)
	}
	labels, err := parseLabels(o.labels)
	if err != nil {
		return err
	}
	o.labelMap = labels
	if net.ParseIP(o.nodeIP) == nil {
		return fmt.Errorf("invalid --node-ip %q: want an IP address of this machine", o.nodeIP)
	}
	if o.cpusSet {
		if err := checkQuantity("--num-cpus", o.numCPUs); err != nil {
			return err
		}
	}
	if o.gpusSet {
		if err := checkQuantity("--num-gpus", o.numGPUs); err != nil {
			return err
		}
	}
	res, err := parseResources(o.resources)
	if err != nil {
		return err
	}
	if o.cpusSet {
		res[raylet.CPU] = o.numCPUs
	}
	if o.gpusSet {
		res[raylet.GPU] = o.numGPUs
	}
	o.res = res
	if o.objectStoreMemory != "" {
		n, err := parseBytes(o.objectStoreMemory)
		if err != nil {
			return fmt.Errorf("invalid --object-store-memory %q: %w", o.objectStoreMemory, err)
		}
		if n < 1<<20 {
			return fmt.Errorf("invalid --object-store-memory %q: the object store needs at least 1 MiB (omit the flag for the default, 30%% of RAM)", o.objectStoreMemory)
		}
		o.storeBytes = n
	}
	if o.port < 0 || o.port > 65535 {
		return fmt.Errorf("invalid --port %d: want 1-65535, or 0 for a free port", o.port)
	}
	if o.metricsPort < -1 || o.metricsPort > 65535 {
		return fmt.Errorf("invalid --metrics-port %d: want 1-65535, -1 for a free port, or 0 for no metrics endpoint", o.metricsPort)
	}
	if o.metricsPort > 0 && o.metricsPort == o.port {
		return fmt.Errorf("invalid --metrics-port %d: it is the NATS --port", o.metricsPort)
	}
	if o.dashboardPort < -1 || o.dashboardPort > 65535 {
		return fmt.Errorf("invalid --dashboard-port %d: want 1-65535, -1 for a free port, or 0 for no dashboard", o.dashboardPort)
	}
	if o.dashboardPort > 0 && (o.dashboardPort == o.port || o.dashboardPort == o.metricsPort) {
		return fmt.Errorf("invalid --dashboard-port %d: it is the NATS --port or the --metrics-port", o.dashboardPort)
	}
	if strings.TrimSpace(o.host) == "" {
		return errors.New("invalid --host \"\": want an address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
	}
	if o.sessionDir != "" {
		abs, err := filepath.Abs(o.sessionDir)
		if err != nil {
			return fmt.Errorf("invalid --session-dir %q: %w", o.sessionDir, err)
		}
		o.sessionDir = abs
	}
	if o.shmDir != "" {
		abs, err := filepath.Abs(o.shmDir)
		if err != nil {
			return fmt.Errorf("invalid --shm-dir %q: %w", o.shmDir, err)
		}
		o.shmDir = abs
	}
	return nil
}

func checkQuantity(flag string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return fmt.Errorf("invalid %s %v: want a number >= 0", flag, v)
	}
	return nil
}

// parseResources reads --resources: a JSON object of non-negative
// quantities. CPU and GPU have their own flags, as in Ray.
func parseResources(s string) (map[string]float64, error) {
	res := map[string]float64{}
	if strings.TrimSpace(s) == "" {
		return res, nil
	}
	bad := func(why string) error {
		return fmt.Errorf("invalid --resources %s: %s", quoteArg(s), why)
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&raw); err != nil || dec.More() {
		why := "trailing data after the object"
		if err != nil {
			why = err.Error()
		}
		return nil, bad(`want a JSON object of resource quantities like '{"TPU": 4, "db_conn": 2}' (` + why + ")")
	}
	if raw == nil {
		return nil, bad(`want a JSON object of resource quantities like '{"TPU": 4}', got null`)
	}
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		switch {
		case strings.TrimSpace(name) == "":
			return nil, bad("a resource name is empty")
		case name == raylet.CPU:
			return nil, bad("set CPUs with --num-cpus, not in --resources")
		case name == raylet.GPU:
			return nil, bad("set GPUs with --num-gpus, not in --resources")
		}
		var v float64
		if err := json.Unmarshal(raw[name], &v); err != nil {
			return nil, bad(fmt.Sprintf("quantity of %q is %s, want a number", name, bytes.TrimSpace(raw[name])))
		}
		if v < 0 {
			return nil, bad(fmt.Sprintf("quantity of %q is %v, want a number >= 0", name, v))
		}
		res[name] = v
	}
	return res, nil
}

func quoteArg(s string) string {
	if !strings.Contains(s, "'") {
		return "'" + s + "'"
	}
	return strconv.Quote(s)
}

// parseBytes reads a byte count: "268435456", "256MiB", "2GB", "1.5GiB".
func parseBytes(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[unit]
	if mult == 0 || num == "" {
		return 0, errors.New("want a byte count such as 268435456, 256MiB or 2GB")
	}
	if unit == "" || unit == "b" {
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return 0, errors.New("want a whole number of bytes, or a size such as 256MiB or 2GB")
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult >= math.MaxUint64 {
		return 0, errors.New("want a byte count such as 268435456, 256MiB or 2GB")
	}
	return uint64(f * mult), nil
}

// checkNotRunning fails if the current-cluster file names a cluster that
// is still up; a stale file (its head gone) is removed.
func checkNotRunning(ctx context.Context, sec *securityOptions, log zerolog.Logger) error {
	rec, ok, err := localcluster.Read()
	if err != nil {
		return fmt.Errorf("read %s: %w", localcluster.AddressFile(), err)
	}
	if !ok {
		return nil
	}
	creds, err := sec.client(rec.Address)
	if err != nil {
		creds = auth.None(nil) // a cluster that refuses us answers all the same
	}
	if clusterAnswers(ctx, rec.Address, creds, log) {
		pid := ""
		if rec.Alive() {
			pid = fmt.Sprintf(" (head process %d)", rec.PID)
		}
		return fmt.Errorf("a goray cluster is already running on this machine at %s%s; stop it first with `goray stop`", rec.Address, pid)
	}
	if rec.Alive() {
		return fmt.Errorf("a goray head process (pid %d) is running but its cluster at %s does not answer; stop it first with `goray stop`", rec.PID, rec.Address)
	}
	log.Info().Str("address", rec.Address).Msg("removing the record of a cluster that is gone")
	localcluster.Remove(rec)
	return nil
}

// checkPortFree gives a clear error when the fixed port is taken, before
// a daemon is started only to fail.
func checkPortFree(host string, port int) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("--port %d is in use on %s (by another goray cluster? `goray status --address %s` tells; `--port 0` picks a free port)", port, host, addr)
		}
		return fmt.Errorf("cannot listen on --host %s --port %d: %w", host, port, err)
	}
	return ln.Close()
}

// dashboardAddr is the dashboard's listen address ("" for none).
func (o *startOptions) dashboardAddr() string { return listenAddr(o.dashboardHost, o.dashboardPort) }

// metricsAddr is the raylet's metrics listen address for --metrics-port
// ("" for none).
func (o *startOptions) metricsAddr() string { return listenAddr(o.metricsHost, o.metricsPort) }

// listenAddr is the address a --*-port flag asks for: none for 0, a free
// port for -1.
func listenAddr(host string, port int) string {
	switch {
	case port == 0:
		return ""
	case port < 0:
		return net.JoinHostPort(host, "0")
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// metricsURL is the URL to scrape the metrics endpoint listening on addr
// at (an unspecified host, such as 0.0.0.0, is reached on loopback).
func metricsURL(addr string, tls bool) string {
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return scheme + addr + raylet.MetricsPath
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return scheme + net.JoinHostPort(host, port) + raylet.MetricsPath
}

// checkMetricsPortFree is checkPortFree for --metrics-port.
func checkMetricsPortFree(host string, port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("--metrics-port %d is in use on %s (`--metrics-port -1` picks a free port)", port, host)
		}
		return fmt.Errorf("cannot listen on --host %s --metrics-port %d: %w", host, port, err)
	}
	return ln.Close()
}

func prepareSessionDir(dir string) (string, error) {
	if dir == "" {
		d, err := cluster.NewSessionDir()
		if err != nil {
			return "", fmt.Errorf("create session dir: %w", err)
		}
		return d, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("invalid --session-dir: %w", err)
	}
	return dir, nil
}

// startDaemon runs `goray start --block` in a new session with its output
// in the session's log, waits until its cluster answers, and reports how
// to use it.
func startDaemon(ctx context.Context, o *startOptions, log zerolog.Logger) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := checkNotRunning(ctx, o.sec, log); err != nil {
		return err
	}
	if o.port != 0 && o.nats == "" {
		if err := checkPortFree(o.host, o.port); err != nil {
			return err
		}
	}
	if o.metricsPort > 0 {
		if err := checkMetricsPortFree(o.metricsHost, o.metricsPort); err != nil {
			return err
		}
	}
	dir, err := prepareSessionDir(o.sessionDir)
	if err != nil {
		return err
	}
	args := []string{"start", "--head", "--block", "--notify-fd=3",
		"--host", o.host, "--port", strconv.Itoa(o.port), "--session-dir", dir}
	args = append(args, o.nodeArgs()...)
	args = append(args, o.sec.daemonArgs()...)
	if o.metricsPort != 0 {
		args = append(args, "--metrics-host", o.metricsHost, "--metrics-port", strconv.Itoa(o.metricsPort))
	}
	args = append(args, "--dashboard-host", o.dashboardHost)
	if o.dashboardPortSet {
		args = append(args, "--dashboard-port", strconv.Itoa(o.dashboardPort))
	}
	if o.nodeTimeout != 0 {
		args = append(args, "--node-timeout", o.nodeTimeout.String())
	}
	if o.nats != "" {
		args = append(args, "--nats", o.nats, "--nats-replicas", strconv.Itoa(o.replicas))
	}
	if o.syncInterval != gcs.DefaultSyncInterval {
		args = append(args, "--nats-sync-interval", o.syncInterval.String())
	}
	// The daemon writes its address, then "metrics=URL" and
	// "dashboard=URL" for what it serves, a line each.
	d, lines, err := runDaemon(filepath.Join(dir, "logs", headLogName), args, "head node")
	if err != nil {
		return err
	}
	defer d.close()
	addr, metrics, dashURL := lines[0], "", ""
	for _, l := range lines[1:] {
		if v, ok := strings.CutPrefix(l, "metrics="); ok {
			metrics = v
		} else if v, ok := strings.CutPrefix(l, "dashboard="); ok {
			dashURL = v
		}
	}
	pid, logPath, stopChild, fail := d.pid, d.logPath, d.stop, d.fail
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	creds, err := o.sec.client(addr)
	if err != nil {
		stopChild()
		return fail("the head node at %s: %v; stopped it (pid %d)", addr, err, pid)
	}
	c, info, err := dialCluster(vctx, addr, creds, log)
	if err != nil {
		stopChild()
		return fail("the head node reported %s but does not answer there: %v; stopped it (pid %d)", addr, err, pid)
	}
	c.Close()

	var nodeLine string
	for _, n := range info.GetNodes() {
		if n.GetIsHead() {
			nodeLine = fmt.Sprintf("%s, object store %s", formatResources(n.GetTotal().GetAmounts()), formatBytes(n.GetStoreCapacity()))
		}
	}
	metricsLine := ""
	if metrics != "" {
		metricsLine = fmt.Sprintf("  Metrics:      %s\n", metrics)
	}
	if dashURL != "" {
		metricsLine += fmt.Sprintf("  Dashboard:    %s (log in with the auth token)\n", dashURL)
	}
	authLine := fmt.Sprintf("  Auth token:   %s (mode 0600)\n", cluster.TokenFile(dir))
	if !creds.Enabled() {
		authLine = "  Auth:         NONE (--auth none): anyone who reaches the ports can run code here\n"
	}
	if creds.TLS() != nil {
		authLine += "  TLS:          mutual TLS on NATS, wire, object transfer and metrics\n"
	}
	authLine += "  GCS store:    " + o.durability() + "\n"
	fmt.Printf(`Started a goray head node.
  Address:      %s
  Resources:    %s
  Session dir:  %s
%s  Log:          %s
  Daemon pid:   %d
%s
To run a Go program on this cluster, either start it with
    GORAY_ADDRESS=%s ./yourprogram
or call sdk.Init(ctx, sdk.Address("auto")) in it (on this machine).
`, addr, nodeLine, dir, authLine, logPath, pid, metricsLine, addr)
	if creds.Enabled() {
		fmt.Printf(`
Other machines need a copy of the token file (keep it mode 0600), e.g.
    scp %s node2:goray-token
then on node2:
    goray start --address %s --auth-token-file goray-token
    GORAY_AUTH_TOKEN_FILE=goray-token GORAY_ADDRESS=%s ./yourprogram
`, cluster.TokenFile(dir), strings.TrimPrefix(addr, "nats://"), addr)
	}
	fmt.Println("\ngoray status shows the cluster; goray stop stops it.")
	return nil
}

// nodeArgs are the flags describing the node, passed on to the daemon.
func (o *startOptions) nodeArgs() []string {
	var args []string
	if o.cpusSet {
		args = append(args, "--num-cpus", strconv.FormatFloat(o.numCPUs, 'g', -1, 64))
	}
	if o.gpusSet {
		args = append(args, "--num-gpus", strconv.FormatFloat(o.numGPUs, 'g', -1, 64))
	}
	if o.resources != "" {
		args = append(args, "--resources", o.resources)
	}
	if o.storeBytes != 0 {
		args = append(args, "--object-store-memory", strconv.FormatUint(o.storeBytes, 10))
	}
	if o.shmDir != "" {
		args = append(args, "--shm-dir", o.shmDir)
	}
	if o.labels != "" {
		args = append(args, "--labels", o.labels)
	}
	if o.memoryThresholdSet {
		args = append(args, "--memory-usage-threshold", strconv.FormatFloat(o.memoryThreshold, 'g', -1, 64))
	}
	return append(args, "--node-ip", o.nodeIP)
}

// memoryUsageThreshold is --memory-usage-threshold as cluster.NodeConfig
// wants it: 0 (the flag not given) leaves it to the environment and the
// default, negative turns the monitor off.
func (o *startOptions) memoryUsageThreshold() float64 {
	switch {
	case !o.memoryThresholdSet:
		return 0
	case o.memoryThreshold == 0:
		return -1
	}
	return o.memoryThreshold
}

// daemon is a `goray start --block` process started in the background, in
// a session of its own, with its output in logPath. It reports that it is
// up by writing lines to a pipe (--notify-fd) and closing it.
type daemon struct {
	child    *exec.Cmd
	pid      int
	logPath  string
	logStart int64
	what     string
	logf     *os.File
	exited   chan error
	ready    chan string
	sigc     chan os.Signal
	pr       *os.File
}

func spawnDaemon(logPath string, args []string, what string) (*daemon, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", what, err)
	}
	d := &daemon{logPath: logPath, what: what, logf: logf, exited: make(chan error, 1), ready: make(chan string, 1), sigc: make(chan os.Signal, 1)}
	d.logStart, _ = logf.Seek(0, io.SeekEnd)
	exe, err := os.Executable()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("find the goray executable: %w", err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		logf.Close()
		return nil, err
	}
	defer devnull.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	d.pr = pr
	child := exec.Command(exe, args...)
	child.Stdin, child.Stdout, child.Stderr = devnull, logf, logf
	child.ExtraFiles = []*os.File{pw}
	child.Dir = "/"
	// A new session: no controlling terminal, so closing the terminal
	// or Ctrl-C in it does not reach the daemon.
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	fmt.Fprintf(logf, "=== %s goray start: %s\n", time.Now().Format(time.DateTime), strings.Join(append([]string{exe}, args...), " "))
	if err := child.Start(); err != nil {
		pw.Close()
		d.close()
		return nil, fmt.Errorf("start the %s daemon: %w", what, err)
	}
	pw.Close()
	d.child, d.pid = child, child.Process.Pid
	go func() { d.exited <- child.Wait() }()
	go func() {
		b, _ := io.ReadAll(pr) // EOF when the daemon closes it or dies
		d.ready <- strings.TrimSpace(string(b))
	}()
	signal.Notify(d.sigc, os.Interrupt, syscall.SIGTERM)
	return d, nil
}

// runDaemon spawns a daemon and waits until it is up; the caller closes
// the daemon (its log and pipe, not the process) when done with it.
func runDaemon(logPath string, args []string, what string) (*daemon, []string, error) {
	d, err := spawnDaemon(logPath, args, what)
	if err != nil {
		return nil, nil, err
	}
	lines, err := d.wait()
	if err != nil {
		d.close()
		return nil, nil, err
	}
	return d, lines, nil
}

func (d *daemon) close() {
	signal.Stop(d.sigc)
	d.logf.Close()
	d.pr.Close()
}

// fail prints the end of the daemon's log and returns the error.
func (d *daemon) fail(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if tail := logTail(d.logPath, d.logStart, 30); tail != "" {
		fmt.Fprintf(os.Stderr, "Last lines of %s:\n%s\n", d.logPath, tail)
	}
	return errors.New(msg)
}

// stop ends the daemon: SIGTERM, then SIGKILL.
func (d *daemon) stop() {
	_ = d.child.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = d.child.Process.Kill()
		<-d.exited
	}
}

// wait returns the non-empty lines the daemon wrote once it was up.
func (d *daemon) wait() ([]string, error) {
	var out string
	select {
	case out = <-d.ready:
	case sig := <-d.sigc:
		d.stop()
		return nil, fmt.Errorf("interrupted (%v) while the %s was starting; stopped it", sig, d.what)
	case <-time.After(startTimeout):
		d.stop()
		return nil, d.fail("the %s did not come up within %v; stopped it (pid %d)", d.what, startTimeout, d.pid)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 0 {
		return lines, nil
	}
	var err error
	select {
	case err = <-d.exited:
	case <-time.After(10 * time.Second):
		d.stop()
		err = errors.New("it closed its notification pipe without an address")
	}
	status := "exited"
	if err != nil {
		status = err.Error()
	}
	return nil, d.fail("the %s failed to start (daemon pid %d: %s); see %s", d.what, d.pid, status, d.logPath)
}

// logTail returns up to n last lines of path written after offset.
func logTail(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

// runHead runs the head node in this process until SIGINT/SIGTERM or a
// client's shutdown request.
func runHead(ctx context.Context, o *startOptions, log zerolog.Logger) error {
	if ctx == nil {
		ctx = context.Background()
	}
	var notify *os.File
	if o.notifyFD > 0 {
		syscall.CloseOnExec(o.notifyFD) // keep it from worker processes
		notify = os.NewFile(uintptr(o.notifyFD), "notify")
		defer notify.Close()
	}
	// Signals are handled from here on: one during startup still shuts
	// the node down cleanly once it is up.
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigc)

	if err := checkNotRunning(ctx, o.sec, log); err != nil {
		return err
	}
	dir, err := prepareSessionDir(o.sessionDir)
	if err != nil {
		return err
	}
	creds, generated, err := o.sec.head(dir)
	if err != nil {
		return err
	}
	if !creds.Enabled() {
		warnNoAuth()
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	h, err := cluster.StartHead(sctx, cluster.Config{
		Credentials:       creds,
		SessionDir:        dir,
		Resources:         o.res,
		ObjectStoreMemory: o.storeBytes,
		ShmDir:            o.shmDir,
		Host:              o.host,
		Port:              o.port,
		MetricsAddr:       o.metricsAddr(),
		Labels:            o.labelMap,
		NodeIP:            o.nodeIP,
		NodeTimeout:       o.nodeTimeout,
		NATSURL:           o.nats,
		Replicas:          o.replicas,
		SyncInterval:      o.syncIntervalGCS(),
		Logger:            log,
		JobServer:         true,
		DashboardAddr:     o.dashboardAddr(),
		DashboardFallback: !o.dashboardPortSet,

		MemoryUsageThreshold: o.memoryUsageThreshold(),
	})
	cancel()
	if err != nil {
		return fmt.Errorf("start head node: %w", err)
	}
	addr := h.Address()
	rec, err := localcluster.Write(addr, dir)
	if err != nil {
		h.Shutdown()
		return fmt.Errorf("record the cluster in %s: %w", localcluster.AddressFile(), err)
	}
	fmt.Printf("goray head node running at %s (pid %d, session %s)\n", addr, os.Getpid(), dir)
	if generated {
		fmt.Printf("Made a new cluster token: %s (mode 0600)\n", cluster.TokenFile(dir))
	}
	metrics := ""
	if m := h.Raylet.MetricsAddr(); m != "" {
		metrics = metricsURL(m, creds.TLS() != nil)
		fmt.Printf("Prometheus metrics at %s\n", metrics)
	}
	dashURL := h.DashboardURL()
	if dashURL != "" {
		fmt.Printf("Dashboard at %s\n", dashURL)
	}
	if notify != nil {
		fmt.Fprintln(notify, addr)
		if metrics != "" {
			fmt.Fprintln(notify, "metrics="+metrics)
		}
		if dashURL != "" {
			fmt.Fprintln(notify, "dashboard="+dashURL)
		}
		notify.Close()
	} else {
		fmt.Printf("Connect with GORAY_ADDRESS=%s, or sdk.Address(\"auto\") on this machine. Press Ctrl-C to stop.\n", addr)
	}

	select {
	case sig := <-sigc:
		fmt.Printf("Received %v, shutting down.\n", sig)
	case <-h.Done():
		fmt.Println("Shutdown requested by a client, shutting down.")
	}
	go func() {
		// A second Ctrl-C while shutting down means now; SIGTERM (goray
		// stop escalating) lets the shutdown under way finish.
		for sig := range sigc {
			if sig == os.Interrupt {
				fmt.Fprintf(os.Stderr, "Interrupted again, exiting without cleanup.\n")
				localcluster.Remove(rec)
				os.Exit(1)
			}
		}
	}()
	h.Shutdown()
	localcluster.Remove(rec)
	fmt.Println("goray head node stopped.")
	return nil
}
