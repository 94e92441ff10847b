package goraytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/cluster"
	"github.com/goray/goray/raylet"
)

// A node of a Cluster is the test binary run again with envNode set to a
// daemonConfig: Main then runs the node the way `goray start --block`
// does (internal/cluster), tells the parent on the pipe at ReadyFD that it
// is up, and stops on SIGTERM, or when its stdin (a pipe from the test
// process) closes because the test process is gone.

// envNode names the environment variable that makes the test binary a
// node daemon; its value is the daemon's JSON config.
const envNode = "GORAYTEST_NODE"

type daemonConfig struct {
	// Head starts NATS, the GCS and a raylet; otherwise the node joins
	// the cluster at Address.
	Head       bool   `json:"head,omitempty"`
	Address    string `json:"address,omitempty"`
	SessionDir string `json:"session_dir"`
	// TokenFile is the head's token file, which a joining node
	// authenticates with; AuthNone says the head has no authentication.
	TokenFile         string             `json:"token_file,omitempty"`
	AuthNone          bool               `json:"auth_none,omitempty"`
	Resources         map[string]float64 `json:"resources,omitempty"`
	Labels            map[string]string  `json:"labels,omitempty"`
	ObjectStoreMemory uint64             `json:"object_store_memory,omitempty"`
	// NodeTimeout is the head's: how long a node may go silent before the
	// GCS declares it dead.
	NodeTimeout  time.Duration `json:"node_timeout,omitempty"`
	StartTimeout time.Duration `json:"start_timeout"`
	// ReadyFD is the pipe the daemon writes its readyMsg to.
	ReadyFD int `json:"ready_fd"`
}

// readyMsg is what a daemon reports once its node is up.
type readyMsg struct {
	NodeID string `json:"node_id"`
	// Address and AuthNone are the head's: where drivers and nodes join,
	// and whether they need the token.
	Address  string `json:"address,omitempty"`
	AuthNone bool   `json:"auth_none,omitempty"`
}

// runDaemon runs a node until it is told to stop and returns the
// process's exit status.
func runDaemon(raw string) int {
	var cfg daemonConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "goraytest node: %s: %v\n", envNode, err)
		return 2
	}
	if cfg.ReadyFD < 3 {
		fmt.Fprintf(os.Stderr, "goraytest node: %s: no ready pipe\n", envNode)
		return 2
	}
	// The raylet's workers must not hold the pipe: the parent waits for
	// its end of file.
	syscall.CloseOnExec(cfg.ReadyFD)
	ready := os.NewFile(uintptr(cfg.ReadyFD), "goraytest-ready")
	defer ready.Close()
	// Signals are caught from the start: one during startup still stops
	// the node cleanly once it is up.
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	parentGone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(parentGone)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	stop, done, msg, err := startDaemonNode(ctx, cfg, daemonLogger())
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "goraytest node: %v\n", err)
		return 1
	}
	if err := json.NewEncoder(ready).Encode(msg); err != nil {
		fmt.Fprintf(os.Stderr, "goraytest node: report readiness: %v\n", err)
		stop()
		return 1
	}
	_ = ready.Close()
	select {
	case <-sigc:
	case <-parentGone:
	case <-done: // the cluster was shut down
	}
	stop()
	return 0
}

// startDaemonNode starts the head or joins the cluster, as `goray start
// --head` and `goray start --address` do, and returns how to stop the node
// and what closes when the cluster shuts down.
func startDaemonNode(ctx context.Context, cfg daemonConfig, log zerolog.Logger) (stop func(), done <-chan struct{}, msg readyMsg, err error) {
	const nodeIP = "127.0.0.1"
	if cfg.Head {
		// A fresh token, whatever the environment says, as for sdk.Init's
		// embedded cluster: the test's cluster is nobody else's.
		creds, _, err := auth.Resolve(auth.Source{Embedded: true})
		if err != nil {
			return nil, nil, msg, fmt.Errorf("credentials: %w", err)
		}
		h, err := cluster.StartHead(ctx, cluster.Config{
			Credentials:       creds,
			SessionDir:        cfg.SessionDir,
			Resources:         cfg.Resources,
			ObjectStoreMemory: cfg.ObjectStoreMemory,
			Host:              nodeIP,
			Labels:            cfg.Labels,
			NodeIP:            nodeIP,
			NodeTimeout:       cfg.NodeTimeout,
			Logger:            log,
		})
		if err != nil {
			return nil, nil, msg, fmt.Errorf("start head node: %w", err)
		}
		msg = readyMsg{NodeID: h.Raylet.NodeID().String(), Address: h.Address(), AuthNone: !creds.Enabled()}
		return h.Shutdown, h.Done(), msg, nil
	}
	src := auth.Source{Mode: auth.ModeToken, TokenFile: cfg.TokenFile}
	if cfg.AuthNone {
		src = auth.Source{Mode: auth.ModeNone}
	}
	creds, _, err := auth.Resolve(src)
	if err != nil {
		return nil, nil, msg, fmt.Errorf("credentials of the cluster at %s: %w", cfg.Address, err)
	}
	n, err := cluster.JoinNode(ctx, cfg.Address, cluster.NodeConfig{
		Credentials:       creds,
		SessionDir:        cfg.SessionDir,
		Resources:         cfg.Resources,
		ObjectStoreMemory: cfg.ObjectStoreMemory,
		Labels:            cfg.Labels,
		NodeIP:            nodeIP,
		Logger:            log,
	})
	if err != nil {
		return nil, nil, msg, fmt.Errorf("join the cluster at %s: %w", cfg.Address, err)
	}
	return n.Shutdown, n.Done(), readyMsg{NodeID: n.Raylet.NodeID().String()}, nil
}

// daemonLogger logs warnings and errors to stderr, which the test process
// collects and shows when something fails; GORAY_LOG_LEVEL asks for more.
func daemonLogger() zerolog.Logger {
	level := zerolog.WarnLevel
	if l, err := zerolog.ParseLevel(strings.ToLower(os.Getenv(raylet.EnvLogLevel))); err == nil && l != zerolog.NoLevel {
		level = l
	}
	w := zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000", NoColor: true}
	return zerolog.New(w).Level(level).With().Timestamp().Int("pid", os.Getpid()).Logger()
}
