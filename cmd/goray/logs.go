package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/state"
)

// goray logs: workers' log files, read from their nodes' raylets, so the
// logs of any node are reachable from any machine of the cluster.

type logsOptions struct {
	stateOptions
	worker, actor, job, task string
	node                     string
	tail                     int
	follow                   bool
	stderrOnly               bool
	stdoutOnly               bool
}

func newLogsCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	o := &logsOptions{}
	cmd := &cobra.Command{
		Use:   "logs (--worker ID | --actor ID | --task ID | --job ID | --node ID)",
		Short: "Print (and follow) workers' logs, from whichever node they run on",
		Long: `Print the log files of a worker, of the worker hosting an actor, of the
worker that ran (or runs) a task's latest attempt (from its task events), or
of every live worker of a job, or a node daemon's own log (--node): stdout,
then stderr, the last --tail lines of each;
--follow keeps printing what they write. Ids may be prefixes of 4 or more hex
digits. The files are read through each node's raylet, so this works from any
machine of the cluster (goray list workers shows the files' paths).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := 0
			for _, s := range []string{o.worker, o.actor, o.task, o.job, o.node} {
				if s != "" {
					n++
				}
			}
			if n != 1 {
				return flagError{err: errors.New("give one of --worker, --actor, --task, --job or --node"), cmd: cmd.CommandPath()}
			}
			if o.follow {
				o.timeout = 0
			}
			return withSource(cmd, &o.stateOptions, sec, log, func(ctx context.Context, src stateapi.Source) error {
				return runLogs(ctx, src, o)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the cluster (without --follow)")
	f.StringVar(&o.worker, "worker", "", "a worker's id")
	f.StringVar(&o.actor, "actor", "", "an actor's id: the logs of the worker hosting it")
	f.StringVar(&o.task, "task", "", "a task's id: the logs of the worker that ran its latest attempt")
	f.StringVar(&o.job, "job", "", "a job's id: the logs of its live workers")
	f.StringVar(&o.node, "node", "", "a node's id: the log of its daemon (goray-head.log or goray-node.log)")
	f.IntVar(&o.tail, "tail", 100, "print the last N lines of each file (0: none, only what --follow brings)")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing what the workers write, until interrupted")
	f.BoolVar(&o.stderrOnly, "err", false, "stderr only")
	f.BoolVar(&o.stdoutOnly, "out", false, "stdout only")
	return cmd
}

// logTarget is one log file to read.
type logTarget struct {
	w state.Worker
	// node: the node daemon's own log (w names only the node).
	node   bool
	stderr bool
	conn   *wire.Conn
	offset int64
}

func runLogs(ctx context.Context, src stateapi.Source, o *logsOptions) error {
	if o.follow {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt)
		defer stop()
	}
	var picked []state.Worker
	var err error
	if o.node != "" {
		nodes, err := stateapi.Nodes(ctx, src)
		if err != nil {
			return err
		}
		n, err := stateapi.ByIDPrefix(nodes, o.node, func(n state.Node) string { return n.NodeID })
		if err != nil {
			return fmt.Errorf("--node: %w", err)
		}
		picked = []state.Worker{{NodeID: n.NodeID}}
	} else if picked, err = pickWorkers(ctx, src, o); err != nil {
		return err
	}
	endpoints, err := rayletEndpoints(ctx, src)
	if err != nil {
		return err
	}
	conns := map[string]*wire.Conn{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var targets []*logTarget
	seen := map[string]bool{}
	// add reads w's files from offset (-1: the last lines).
	add := func(w state.Worker, offset int64) error {
		seen[w.WorkerID] = true
		c := conns[w.NodeID]
		if c == nil {
			if c, err = wire.Dial(ctx, endpoints[w.NodeID], nil, wire.WithLogger(src.Log), wire.WithAuthenticator(src.Auth)); err != nil {
				return fmt.Errorf("node %s: %w", w.NodeID[:12], err)
			}
			conns[w.NodeID] = c
		}
		if o.node != "" {
			targets = append(targets, &logTarget{w: w, node: true, conn: c, offset: offset})
			return nil
		}
		for _, stderr := range []bool{false, true} {
			if stderr && o.stdoutOnly || !stderr && o.stderrOnly {
				continue
			}
			targets = append(targets, &logTarget{w: w, stderr: stderr, conn: c, offset: offset})
		}
		return nil
	}
	for _, w := range picked {
		if err := add(w, -1); err != nil {
			return err
		}
	}
	prefix := len(picked) > 1 || o.job != ""
	for _, t := range targets {
		if err := t.read(ctx, os.Stdout, o.tail, prefix); err != nil {
			return err
		}
	}
	for round := 1; o.follow; round++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(300 * time.Millisecond):
		}
		if o.job != "" && round%7 == 0 {
			// A job's new workers (on new nodes too) join the follow,
			// from their first line.
			if more, err := pickWorkers(ctx, src, o); err == nil {
				if eps, err := rayletEndpoints(ctx, src); err == nil {
					endpoints = eps
				}
				for _, w := range more {
					if !seen[w.WorkerID] {
						if err := add(w, 0); err != nil {
							return err
						}
					}
				}
			}
		}
		kept := targets[:0]
		for _, t := range targets {
			if err := t.read(ctx, os.Stdout, 0, prefix); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// Its node died or left: the others are followed on.
				fmt.Fprintf(os.Stderr, "goray logs: no longer following %s: %v\n", t.name(), err)
				continue
			}
			kept = append(kept, t)
		}
		targets = kept
	}
	return nil
}

// pickWorkers finds the live workers o names.
func pickWorkers(ctx context.Context, src stateapi.Source, o *logsOptions) ([]state.Worker, error) {
	workers, err := stateapi.Workers(ctx, src)
	if err != nil {
		return nil, err
	}
	var picked []state.Worker
	switch {
	case o.worker != "":
		w, err := stateapi.ByIDPrefix(workers, o.worker, func(w state.Worker) string { return w.WorkerID })
		if err != nil {
			return nil, fmt.Errorf("--worker: %w (goray list workers shows live ones)", err)
		}
		picked = []state.Worker{w}
	case o.actor != "":
		w, _, err := stateapi.ActorWorker(ctx, src, o.actor, workers)
		if err != nil {
			return nil, fmt.Errorf("--actor %s: %w", o.actor, err)
		}
		picked = []state.Worker{w}
	case o.task != "":
		ts, err := stateapi.Tasks(ctx, src, []state.Filter{{Field: "task_id", Value: o.task}}, 0)
		if err != nil {
			return nil, err
		}
		var ran *state.Task
		for i, t := range ts.Tasks {
			if t.WorkerID != "" && (ran == nil || t.Attempt > ran.Attempt) {
				ran = &ts.Tasks[i]
			}
		}
		if ran == nil {
			return nil, fmt.Errorf("--task %s: no task of that id has run on a worker (goray list tasks shows them)", o.task)
		}
		for _, w := range workers {
			if w.WorkerID == ran.WorkerID {
				picked = append(picked, w)
			}
		}
		if len(picked) == 0 {
			return nil, fmt.Errorf("--task %s: worker %s (pid %d on node %s), which ran attempt %d, has exited", o.task, ran.WorkerID[:12], ran.WorkerPID, ran.NodeID[:12], ran.Attempt)
		}
	default:
		for _, w := range workers {
			if strings.HasPrefix(w.JobID, strings.ToLower(o.job)) {
				picked = append(picked, w)
			}
		}
		if len(picked) == 0 {
			return nil, fmt.Errorf("--job %s: no live worker of such a job", o.job)
		}
	}
	return picked, nil
}

// name says whose log t is.
func (t *logTarget) name() string {
	if t.node {
		return "node " + t.w.NodeID[:12]
	}
	return "worker " + t.w.WorkerID[:12]
}

// read prints what the file holds from t.offset on (the last tail lines
// the first time), a line prefix naming the worker when several are read.
func (t *logTarget) read(ctx context.Context, w io.Writer, tail int, prefix bool) error {
	for {
		var rep protos.ReadLogReply
		wid, _ := protos.UniqueIDFromHex(t.w.WorkerID)
		req := &protos.ReadLogRequest{Stderr: t.stderr, Offset: t.offset, TailLines: int32(tail), Node: t.node}
		if !t.node {
			req.WorkerId = wid.Bytes()
		}
		if err := t.conn.Call(ctx, protos.Method_READ_LOG, req, &rep); err != nil {
			return fmt.Errorf("%s: %w", t.name(), err)
		}
		data := rep.GetData()
		t.offset = rep.GetNextOffset()
		if len(data) == 0 {
			return nil
		}
		if prefix {
			stream := "out"
			if t.stderr {
				stream = "err"
			}
			tag := fmt.Sprintf("(worker %s pid=%d %s) ", t.w.WorkerID[:8], t.w.PID, stream)
			text := strings.TrimSuffix(string(data), "\n")
			data = []byte(tag + strings.ReplaceAll(text, "\n", "\n"+tag) + "\n")
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		if len(rep.GetData()) < 1<<20 {
			return nil
		}
	}
}

// rayletEndpoints maps each node (hex id) to where its raylet is reached
// from another machine.
func rayletEndpoints(ctx context.Context, src stateapi.Source) (map[string]string, error) {
	nodes, err := src.GCS.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	eps := make(map[string]string, len(nodes))
	for _, n := range nodes {
		ep := n.GetRayletTcpEndpoint()
		if ep == "" {
			ep = n.GetRayletEndpoint()
		}
		eps[hex.EncodeToString(n.GetNodeId())] = ep
	}
	return eps, nil
}
