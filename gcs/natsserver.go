package gcs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// NATSOptions configures an embedded NATS server.
type NATSOptions struct {
	// Host to listen on; "" means 127.0.0.1, so a single-machine cluster
	// is not reachable from the network unless the daemon asks for it.
	Host string
	// Port to listen on; 0 picks a free port.
	Port int
	// StoreDir is the JetStream file store directory (required).
	StoreDir string
	// SyncInterval is how often JetStream fsyncs its files: zero means
	// DefaultSyncInterval, SyncAlways fsyncs every write before it is
	// acknowledged.
	SyncInterval time.Duration
	// ServerName appears in `nats server ls` and in logs; "" lets
	// nats-server generate one.
	ServerName string
	// ReadyTimeout bounds how long StartNATS waits for the listener and
	// JetStream; default 5 s.
	ReadyTimeout time.Duration
	Logger       zerolog.Logger
	// Users are the nkey users the server accepts (auth.NATSUsers); with
	// none, the server accepts any client, which only a cluster started
	// with --auth none asks for.
	Users []*server.NkeyUser
	// TLS, if set, makes the server require TLS with a client
	// certificate (the config says which CAs it trusts).
	TLS *tls.Config
}

// DefaultSyncInterval is how often the embedded NATS fsyncs the GCS's
// JetStream files unless told otherwise: at most the last second of
// acknowledged writes can be lost on power loss (a process crash loses
// nothing: the writes are in the kernel's page cache), as with Redis's
// appendfsync everysec, which Ray's GCS fault tolerance runs on. Fsyncing
// every write (SyncAlways) costs about 4x on packed actor creation and 2-3x
// on placement group create/remove on this project's reference machine
// (docs/benchmarks.md, "GCS durability"); nats-server's own default is 2
// minutes.
const DefaultSyncInterval = time.Second

// SyncAlways, as a SyncInterval, fsyncs every JetStream write before it is
// acknowledged.
const SyncAlways time.Duration = -1

// NATSServer is an in-process nats-server with JetStream.
type NATSServer struct {
	srv  *server.Server
	url  string
	log  *natsLogger
	once sync.Once
}

// StartNATS starts an embedded nats-server and returns once it accepts
// clients and JetStream is enabled. It is on the critical path of cluster
// start, so it configures server.Options directly (no config file) and polls
// readiness instead of sleeping.
func StartNATS(opts NATSOptions) (*NATSServer, error) {
	if opts.StoreDir == "" {
		return nil, fmt.Errorf("%w: embedded NATS needs a JetStream StoreDir", ErrInvalid)
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	readyTimeout := opts.ReadyTimeout
	if readyTimeout <= 0 {
		readyTimeout = 5 * time.Second
	}
	sopts := &server.Options{
		ServerName: opts.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		// The owning daemon handles signals; nats-server must not react to
		// SIGTERM/SIGHUP on its own.
		NoSigs: true,
		// No monitoring port: `nats` CLI covers inspection and an extra
		// listener costs startup time.
		HTTPPort: 0,
		// A client has this long to authenticate (TLS included) before
		// the server drops it.
		AuthTimeout: 2,
		Nkeys:       opts.Users,
	}
	switch {
	case opts.SyncInterval == 0:
		sopts.SyncInterval = DefaultSyncInterval
	case opts.SyncInterval < 0:
		sopts.SyncAlways = true
	default:
		sopts.SyncInterval = opts.SyncInterval
	}
	if opts.TLS != nil {
		sopts.TLSConfig, sopts.TLS, sopts.TLSVerify, sopts.TLSTimeout = opts.TLS, true, true, 2
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("gcs: configure embedded NATS: %w", err)
	}
	nl := newNATSLogger(opts.Logger)
	debug, trace := nl.flags()
	srv.SetLoggerV2(nl, debug, trace, false)

	// Start runs the accept loop setup and JetStream enablement inline, so
	// failures surface through Fatalf before it returns or soon after.
	srv.Start()
	deadline := time.Now().Add(readyTimeout)
	for {
		if msg, failed := nl.fatalError(); failed {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, fmt.Errorf("gcs: embedded NATS failed to start: %s", msg)
		}
		// A 1 ms window keeps ReadyForConnections from its internal 25 ms
		// sleep; the listener is normally up on the first check.
		if srv.ReadyForConnections(time.Millisecond) && srv.JetStreamEnabled() {
			break
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, fmt.Errorf("gcs: embedded NATS not ready after %s", readyTimeout)
		}
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("gcs: embedded NATS has no TCP listener")
	}
	n := &NATSServer{srv: srv, log: nl, url: clientURL(host, addr.Port)}
	opts.Logger.Debug().Str("url", n.url).Str("store_dir", opts.StoreDir).Msg("embedded NATS started")
	return n, nil
}

// clientURL names the server for clients on this machine: a wildcard listen
// address is not something to dial, loopback is.
func clientURL(host string, port int) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	u := url.URL{Scheme: "nats", Host: net.JoinHostPort(host, strconv.Itoa(port))}
	return u.String()
}

// ClientURL is the nats:// URL clients connect to.
func (n *NATSServer) ClientURL() string { return n.url }

// Server exposes the nats-server, e.g. for nats.InProcessServer.
func (n *NATSServer) Server() *server.Server { return n.srv }

// Shutdown stops the server and waits until it has stopped, so the store
// directory can be reused or removed right after. Safe to call repeatedly.
func (n *NATSServer) Shutdown() {
	n.once.Do(func() {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	})
}
