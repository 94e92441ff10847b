package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/memreport"
	"github.com/goray/goray/state"
)

func newMemoryCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	var (
		address string
		opts    state.MemoryPrintOptions
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "memory",
		Short: "List the cluster's objects, where they are and why they are alive",
		Long: `List the cluster's objects, as ray memory does: for each object its owner,
size, where it is (a node's shared memory, a spill file, or inline in its
owner), its store pins and why it is still alive (LOCAL_REFERENCE,
USED_BY_PENDING_TASK, CAPTURED_IN_OBJECT, BORROWED, PINNED_IN_MEMORY,
ESCAPED, with the pids holding it); before them each node's object store:
used, pinned and spilled bytes and spill/restore totals.

Every alive node's raylet answers for its store and the drivers and workers
connected to it; nodes that do not answer are listed, the others shown.

The cluster is --address, else $GORAY_ADDRESS, else the one goray start
--head recorded on this machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.Validate(); err != nil {
				return flagError{err: err, cmd: cmd.CommandPath()}
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			t, info, err := clusterInfo(ctx, address, sec, log)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			report, ferr := memreport.FetchMemoryReport(ctx, info.GetNodes(), log, t.creds.Handshaker(auth.LabelWire))
			if asJSON {
				report.SortObjects(opts.SortBy)
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else if err := report.PrintWith(os.Stdout, opts); err != nil {
				return err
			}
			return ferr
		},
	}
	f := cmd.Flags()
	f.StringVar(&address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
	f.StringVar(&opts.GroupBy, "group-by", state.GroupByNone, "group objects by node (its store's objects and its processes' inline ones) or owner (process), or none")
	f.StringVar(&opts.SortBy, "sort", state.SortBySize, "order objects by size (largest first) or ref (object id)")
	f.BoolVar(&opts.FullIDs, "full-ids", false, "print object ids whole instead of shortened")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON (all objects, all fields)")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the nodes' answers")
	return cmd
}
