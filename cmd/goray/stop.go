package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/localcluster"
	"github.com/goray/goray/protos"
)

// How long `goray stop` gives the head at each step.
const (
	stopGrace   = 20 * time.Second // after the shutdown request
	termGrace   = 10 * time.Second // after SIGTERM
	killGrace   = 5 * time.Second  // after SIGKILL
	remoteGrace = 20 * time.Second // a head not on this machine
)

func newStopCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the goray cluster",
		Long: `Ask the cluster to shut down and wait until its head process has exited
(sending SIGTERM, then SIGKILL, if it takes too long). Stopping when no
cluster runs is not an error.

The cluster is --address, else $GORAY_ADDRESS, else the one goray start
--head recorded on this machine. Worker nodes started on this machine with
goray start --address leave their cluster first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return runStop(ctx, address, sec, log)
		},
	}
	cmd.Flags().StringVar(&address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
	return cmd
}

func runStop(ctx context.Context, address string, sec *securityOptions, log zerolog.Logger) error {
	// Worker nodes on this machine leave first, cleanly, as Ray's `ray
	// stop` stops the local processes.
	nodes, err := stopLocalNodes()
	if err != nil {
		return fmt.Errorf("stop the nodes on this machine: %w", err)
	}
	t, err := resolveTarget(address, sec)
	if errors.Is(err, errNoCluster) {
		if nodes == 0 {
			fmt.Println("No goray cluster is running on this machine.")
		}
		return nil
	}
	if err != nil {
		return err
	}
	rec := t.record
	host, _ := os.Hostname()

	var segments []string
	requested := false
	c, info, err := dialCluster(ctx, t.address, t.creds, log)
	answered := err == nil
	if errors.Is(err, gcs.ErrUnauthorized) && rec == nil {
		// A cluster runs there and refuses us; only its own machine
		// could stop it without its token.
		if t.credsErr != nil {
			return t.credsErr
		}
		return err
	}
	if answered {
		for _, n := range info.GetNodes() {
			if n.GetHostname() == host && n.GetState() == protos.NodeInfo_ALIVE && n.GetStorePath() != "" {
				segments = append(segments, n.GetStorePath())
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = c.RequestShutdown(rctx)
		cancel()
		c.Close()
		if err != nil && (errors.Is(err, gcs.ErrClosed) || errors.Is(err, gcs.ErrUnavailable)) && !clusterAnswers(ctx, t.address, t.creds, log) {
			// The GCS went down before its reply reached us: the request
			// was taken.
			log.Debug().Err(err).Msg("shutdown reply lost, but the cluster is gone")
			err = nil
		}
		if err == nil {
			requested = true
			fmt.Printf("Asked the goray cluster at %s to shut down.\n", t.address)
		} else if rec == nil || !rec.Alive() {
			return fmt.Errorf("the cluster at %s refused the shutdown request: %w", t.address, err)
		} else {
			fmt.Fprintf(os.Stderr, "The cluster at %s refused the shutdown request: %v\n", t.address, err)
		}
	}
	if !answered && (rec == nil || !rec.Alive()) {
		if rec != nil && localcluster.Remove(*rec) {
			fmt.Printf("No goray cluster is running at %s; removed the stale record in %s.\n", t.address, localcluster.AddressFile())
			removeDeadSegments(rec.PID)
			return nil
		}
		fmt.Printf("No goray cluster is running at %s.\n", t.address)
		return nil
	}

	if rec == nil {
		// Not started on this machine (or not by goray start): all we
		// can do is wait until it stops answering.
		deadline := time.Now().Add(remoteGrace)
		for clusterAnswers(ctx, t.address, t.creds, log) {
			if time.Now().After(deadline) {
				return fmt.Errorf("the cluster at %s still answers %v after the shutdown request", t.address, remoteGrace)
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Printf("Stopped the goray cluster at %s.\n", t.address)
		return nil
	}

	t0 := time.Now()
	switch {
	case !answered:
		fmt.Printf("The cluster at %s does not answer; stopping its head process %d.\n", t.address, rec.PID)
	case !requested:
		fmt.Printf("Stopping its head process %d with signals instead.\n", rec.PID)
	}
	killed, err := stopProcess(*rec, requested)
	if err != nil {
		return err
	}
	// The head process is gone; what it did not clean up (killed, or a
	// failed shutdown) nobody else will.
	for _, seg := range segments {
		// Only the head's own (raylet.StorePath: goray-PID-NODE).
		if !strings.HasPrefix(seg, fmt.Sprintf("/dev/shm/goray-%d-", rec.PID)) {
			continue
		}
		if os.Remove(seg) == nil {
			fmt.Printf("Removed the object store segment %s left behind.\n", seg)
		}
	}
	if killed {
		removeDeadSegments(rec.PID)
		if info != nil && info.GetSessionDir() != "" {
			_ = os.RemoveAll(filepath.Join(info.GetSessionDir(), "sockets"))
		}
	}
	localcluster.Remove(*rec)
	fmt.Printf("Stopped the goray cluster (head process %d exited after %.1fs).\n", rec.PID, time.Since(t0).Seconds())
	return nil
}

// stopProcess waits for the head process to exit, escalating to SIGTERM
// and then SIGKILL. killed reports whether SIGKILL was needed.
func stopProcess(rec localcluster.Record, requested bool) (killed bool, err error) {
	if requested && localcluster.WaitGone(rec, stopGrace) {
		return false, nil
	}
	if requested {
		fmt.Printf("Head process %d still runs %v after the shutdown request; sending SIGTERM.\n", rec.PID, stopGrace)
	}
	if rec.Alive() {
		_ = syscall.Kill(rec.PID, syscall.SIGTERM)
	}
	if localcluster.WaitGone(rec, termGrace) {
		return false, nil
	}
	fmt.Printf("Head process %d still runs %v after SIGTERM; sending SIGKILL.\n", rec.PID, termGrace)
	if rec.Alive() {
		_ = syscall.Kill(rec.PID, syscall.SIGKILL)
	}
	if localcluster.WaitGone(rec, killGrace) {
		return true, nil
	}
	return true, fmt.Errorf("head process %d did not exit even after SIGKILL", rec.PID)
}

// removeDeadSegments removes the object store segments of a head process
// that died without cleaning up (raylet.StorePath names them
// goray-PID-NODE). The next raylet to start would remove them too.
func removeDeadSegments(pid int) {
	if pid <= 0 {
		return
	}
	if st, ok := localcluster.ProcStat(pid); ok && st.State != "Z" && st.State != "X" {
		return // a live process has that pid
	}
	paths, _ := filepath.Glob(fmt.Sprintf("/dev/shm/goray-%d-*", pid))
	for _, p := range paths {
		if os.Remove(p) == nil {
			fmt.Printf("Removed the object store segment %s left behind.\n", p)
		}
	}
}
