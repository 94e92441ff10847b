package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/cluster"
	"github.com/goray/goray/internal/localcluster"
)

// Worker nodes: `goray start --address ADDR` runs a raylet that joins the
// cluster at ADDR. Each node daemon records itself in
// $TMPDIR/goray/nodes/PID (its session directory), so that `goray stop` on
// the machine finds and stops it.

const nodeLogName = "goray-node.log"

func nodesDir() string { return filepath.Join(filepath.Dir(localcluster.AddressFile()), "nodes") }

// parseLabels reads --labels: k=v pairs separated by commas.
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok || k == "":
			return nil, fmt.Errorf("invalid --labels %s: %q is not key=value", quoteArg(s), kv)
		case v == "":
			return nil, fmt.Errorf("invalid --labels %s: label %q has an empty value", quoteArg(s), k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("invalid --labels %s: label %q is given twice", quoteArg(s), k)
		}
		out[k] = v
	}
	return out, nil
}

// startNodeDaemon runs `goray start --address ... --block` in the
// background and waits until the node has joined.
func startNodeDaemon(ctx context.Context, o *startOptions, log zerolog.Logger) error {
	dir, err := prepareSessionDir(o.sessionDir)
	if err != nil {
		return err
	}
	args := append([]string{"start", "--address", o.address, "--block", "--notify-fd=3", "--session-dir", dir}, o.nodeArgs()...)
	args = append(args, o.sec.daemonArgs()...)
	if o.metricsPort != 0 {
		args = append(args, "--metrics-host", o.metricsHost, "--metrics-port", strconv.Itoa(o.metricsPort))
	}
	d, lines, err := runDaemon(filepath.Join(dir, "logs", nodeLogName), args, "node")
	if err != nil {
		return err
	}
	defer d.close()
	fmt.Printf(`Started a goray node that joined the cluster at %s.
  Node id:      %s
  Session dir:  %s
  Log:          %s
  Daemon pid:   %d

goray status --address %s shows the cluster; goray stop on this machine
stops the node.
`, o.address, lines[0], dir, d.logPath, d.pid, o.address)
	return nil
}

// runNode runs a worker node in this process until SIGINT/SIGTERM or the
// cluster's shutdown.
func runNode(ctx context.Context, o *startOptions, log zerolog.Logger) error {
	if ctx == nil {
		ctx = context.Background()
	}
	var notify *os.File
	if o.notifyFD > 0 {
		syscall.CloseOnExec(o.notifyFD)
		notify = os.NewFile(uintptr(o.notifyFD), "notify")
		defer notify.Close()
	}
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigc)

	dir, err := prepareSessionDir(o.sessionDir)
	if err != nil {
		return err
	}
	addr := o.address
	if !strings.Contains(addr, "://") {
		addr = "nats://" + addr
	}
	creds, err := o.sec.client(addr)
	if err != nil {
		return err
	}
	if !creds.Enabled() {
		warnNoAuth()
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	n, err := cluster.JoinNode(sctx, addr, cluster.NodeConfig{
		Credentials:       creds,
		SessionDir:        dir,
		Resources:         o.res,
		ObjectStoreMemory: o.storeBytes,
		ShmDir:            o.shmDir,
		Labels:            o.labelMap,
		NodeIP:            o.nodeIP,
		MetricsAddr:       o.metricsAddr(),
		Logger:            log,

		MemoryUsageThreshold: o.memoryUsageThreshold(),
	})
	cancel()
	if err != nil {
		return fmt.Errorf("join the cluster at %s: %w", o.address, err)
	}
	rec := filepath.Join(nodesDir(), strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(nodesDir(), 0o755); err == nil {
		_ = localcluster.WriteFileAtomic(rec, dir+"\n")
	}
	defer os.Remove(rec)
	id := n.Raylet.NodeID().String()
	fmt.Printf("goray node %s joined the cluster at %s (pid %d, session %s)\n", id, o.address, os.Getpid(), dir)
	if notify != nil {
		fmt.Fprintln(notify, id)
		notify.Close()
	}
	select {
	case sig := <-sigc:
		fmt.Printf("Received %v, leaving the cluster.\n", sig)
	case <-n.Done():
		fmt.Println("The cluster is shutting down.")
	}
	n.Shutdown()
	fmt.Println("goray node stopped.")
	return nil
}

// stopLocalNodes stops the worker node daemons on this machine (SIGTERM:
// each leaves the cluster cleanly), waiting for them to exit. It returns
// how many it stopped.
func stopLocalNodes() (int, error) {
	entries, err := os.ReadDir(nodesDir())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) != nil {
			_ = os.Remove(filepath.Join(nodesDir(), e.Name())) // gone
			continue
		}
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(termGrace)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		fmt.Printf("Stopped goray node process %d.\n", pid)
	}
	return len(pids), nil
}
