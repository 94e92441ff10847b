package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/goray/goray/internal/nodecall"
	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/protos"
)

func newListCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the cluster's resources of one kind",
		Args:  cobra.NoArgs,
	}
	addListKinds(cmd, log, sec)
	cmd.AddCommand(newListRuntimeEnvsCmd(log, sec))
	return cmd
}

// runtimeEnvRow is one cache entry of one node, as printed.
type runtimeEnvRow struct {
	NodeID     string   `json:"node_id"`
	Kind       string   `json:"kind"`
	Digest     string   `json:"digest"`
	Platform   string   `json:"platform,omitempty"`
	Bytes      uint64   `json:"bytes"`
	Source     string   `json:"source"`
	Jobs       []string `json:"jobs"`
	LastUsedMs int64    `json:"last_used_unix_ms"`
}

func newListRuntimeEnvsCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	o := &stateOptions{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "runtime-envs",
		Short: "List what each node's runtime env cache holds",
		Long: `List each node's runtime env cache: the job binaries and working-directory
packages it holds (by SHA-256), where each came from (fetched from the
cluster's goray_packages object store, linked from a driver's file on the
node, or found from an earlier run), its size and the jobs using it.

The cluster is --address, else $GORAY_ADDRESS, else the one goray start
--head recorded on this machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSource(cmd, o, sec, log, func(ctx context.Context, src stateapi.Source) error { return listRuntimeEnvs(ctx, src, asJSON) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
	f.BoolVar(&asJSON, "json", false, "print the entries as JSON (full ids)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the nodes' answers")
	return cmd
}

// listRuntimeEnvs asks every alive node's raylet for its cache and prints
// the entries.
func listRuntimeEnvs(ctx context.Context, src stateapi.Source, asJSON bool) error {
	nodes, err := src.GCS.ListNodes(ctx)
	if err != nil {
		return err
	}
	answers := nodecall.Call(ctx, nodes, src.Log, src.Auth, protos.Method_RUNTIME_ENV_CACHE,
		&protos.RuntimeEnvCacheRequest{}, func() *protos.RuntimeEnvCacheReply { return &protos.RuntimeEnvCacheReply{} }, nil, nil)
	var rows []runtimeEnvRow
	var failed []string
	for _, a := range answers {
		node := hex.EncodeToString(a.Node.GetNodeId())
		if a.Err != nil {
			failed = append(failed, fmt.Sprintf("node %s: %v", node[:12], a.Err))
			continue
		}
		for _, e := range a.Reply.GetEntries() {
			r := runtimeEnvRow{NodeID: node, Kind: e.GetKind(), Digest: e.GetDigest(), Platform: e.GetPlatform(), Bytes: e.GetSize(),
				Source: e.GetSource(), Jobs: []string{}, LastUsedMs: e.GetLastUsedUnixMs()}
			for _, j := range e.GetJobIds() {
				r.Jobs = append(r.Jobs, hex.EncodeToString(j))
			}
			rows = append(rows, r)
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		printRuntimeEnvs(os.Stdout, rows)
	}
	for _, f := range failed {
		fmt.Fprintln(os.Stderr, "no answer from", f)
	}
	if len(failed) > 0 && len(failed) == len(answers) {
		return fmt.Errorf("no node answered")
	}
	return nil
}

func printRuntimeEnvs(w io.Writer, rows []runtimeEnvRow) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "No node caches a runtime env.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tKIND\tDIGEST\tPLATFORM\tSIZE\tSOURCE\tJOBS\tLAST USED")
	for _, r := range rows {
		jobs := make([]string, len(r.Jobs))
		for i, j := range r.Jobs {
			jobs[i] = j[:min(8, len(j))]
		}
		js := strings.Join(jobs, ",")
		if js == "" {
			js = "-"
		}
		plat := r.Platform
		if plat == "" {
			plat = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.NodeID[:12], r.Kind, r.Digest[:12], plat, formatBytes(r.Bytes), r.Source, js,
			time.UnixMilli(r.LastUsedMs).Format(time.TimeOnly))
	}
	_ = tw.Flush()
}
