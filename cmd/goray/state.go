package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/state"
)

// goray list <kind> and goray get <kind> <id>: the cluster's resources as
// Ray's state CLI shows them.

// stateOptions are the flags of list and get.
type stateOptions struct {
	address string
	filters []string
	limit   int
	detail  bool
	format  string
	timeout time.Duration
}

func (o *stateOptions) register(cmd *cobra.Command, list bool) {
	f := cmd.Flags()
	f.StringVar(&o.address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
	f.StringVar(&o.format, "format", state.FormatTable, "table, json or yaml")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the GCS")
	if list {
		f.StringArrayVar(&o.filters, "filter", nil, "keep rows whose field equals (field=value) or differs from (field!=value) a value; repeatable; fields as in --format json")
		f.IntVar(&o.limit, "limit", 100, "at most this many rows (0: all)")
		f.BoolVar(&o.detail, "detail", false, "full ids in the table")
	}
}

// withSource runs f with the cluster's GCS (and the credentials to reach
// its raylets).
func withSource(cmd *cobra.Command, o *stateOptions, sec *securityOptions, log zerolog.Logger, f func(ctx context.Context, src stateapi.Source) error) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	t, _, err := clusterInfo(ctx, o.address, sec, log)
	if err != nil {
		return err
	}
	c, _, err := dialCluster(ctx, t.address, t.creds, log)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(ctx, stateapi.Source{GCS: c, Auth: t.creds.Handshaker(auth.LabelWire), Log: log})
}

// listed fetches, filters and prints one kind.
func listed[T any](ctx context.Context, src stateapi.Source, o *stateOptions, fetch func(context.Context, stateapi.Source) ([]T, error)) error {
	filters, err := parseFilters(o.filters)
	if err != nil {
		return err
	}
	rows, err := fetch(ctx, src)
	if err != nil {
		return err
	}
	if rows, err = state.Select(rows, filters, o.limit); err != nil {
		return err
	}
	return state.Print(os.Stdout, rows, o.format, o.detail)
}

// got fetches one kind and prints the row whose id starts with prefix.
func got[T any](ctx context.Context, src stateapi.Source, o *stateOptions, prefix string, fetch func(context.Context, stateapi.Source) ([]T, error), id func(T) string) error {
	rows, err := fetch(ctx, src)
	if err != nil {
		return err
	}
	row, err := stateapi.ByIDPrefix(rows, prefix, id)
	if err != nil {
		return err
	}
	format := o.format
	if format == state.FormatTable {
		// One resource: every field, as Ray's `ray get` prints.
		format = state.FormatYAML
	}
	if format == state.FormatYAML || format == state.FormatJSON {
		return state.Print(os.Stdout, []T{row}, format, true)
	}
	return fmt.Errorf("format %q: want table, json or yaml", o.format)
}

// kindCommand is one kind's list and get.
type kindCommand struct {
	kind  string
	short string
	list  func(ctx context.Context, src stateapi.Source, o *stateOptions) error
	get   func(ctx context.Context, src stateapi.Source, o *stateOptions, id string) error
}

// kindOf is the list and get of one kind, whose rows fetch reads and id
// names.
func kindOf[T any](kind, short string, fetch func(context.Context, stateapi.Source) ([]T, error), id func(T) string) kindCommand {
	return kindCommand{kind: kind, short: short,
		list: func(ctx context.Context, src stateapi.Source, o *stateOptions) error {
			return listed(ctx, src, o, fetch)
		},
		get: func(ctx context.Context, src stateapi.Source, o *stateOptions, prefix string) error {
			return got(ctx, src, o, prefix, fetch, id)
		},
	}
}

func kindCommands() []kindCommand {
	return []kindCommand{
		kindOf(state.KindNodes, "nodes, alive and dead, with their resources", stateapi.Nodes, func(n state.Node) string { return n.NodeID }),
		kindOf(state.KindJobs, "jobs (driver runs), running and finished", stateapi.Jobs, func(j state.Job) string { return j.JobID }),
		kindOf(state.KindActors, "actors, alive and dead: class, state, name, node, pid, restarts", stateapi.Actors,
			func(a state.Actor) string { return a.ActorID }),
		{kind: state.KindTasks, short: "task attempts (from their task events): name, state, job, node, worker, duration, error",
			list: listTasks, get: getTask},
		kindOf(state.KindObjects, "objects: size, owner, where, pins, why alive (what goray memory shows)", stateapi.Objects,
			func(o state.ObjectMemory) string { return o.ID }),
		kindOf(state.KindPlacementGroups, "live placement groups and where their bundles are", stateapi.PlacementGroups,
			func(g state.PlacementGroup) string { return g.PlacementGroupID }),
		kindOf(state.KindWorkers, "worker processes of every alive node: job, pid, state, runtime env, log files", stateapi.Workers,
			func(w state.Worker) string { return w.WorkerID }),
	}
}

// addListKinds adds `goray list <kind>` for every kind.
func addListKinds(list *cobra.Command, log zerolog.Logger, sec *securityOptions) {
	for _, k := range kindCommands() {
		o := &stateOptions{}
		cmd := &cobra.Command{
			Use:   k.kind,
			Short: "List " + k.short,
			Long: "List " + k.short + `.

--filter field=value (or field!=value) keeps matching rows, on any field
--format json shows; ids print as hex. --format json|yaml prints every
field. The cluster is --address, else $GORAY_ADDRESS, else the one goray
start --head recorded on this machine.`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return withSource(cmd, o, sec, log, func(ctx context.Context, src stateapi.Source) error { return k.list(ctx, src, o) })
			},
		}
		o.register(cmd, true)
		list.AddCommand(cmd)
	}
}

func newGetCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	get := &cobra.Command{
		Use:   "get",
		Short: "Show one resource of the cluster, every field",
		Args:  cobra.NoArgs,
	}
	for _, k := range kindCommands() {
		o := &stateOptions{}
		singular := strings.TrimSuffix(k.kind, "s")
		cmd := &cobra.Command{
			Use:   singular + " ID",
			Short: "Show one of the " + k.short + " (the id may be a prefix of 4 or more hex digits)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withSource(cmd, o, sec, log, func(ctx context.Context, src stateapi.Source) error { return k.get(ctx, src, o, args[0]) })
			},
		}
		o.register(cmd, false)
		get.AddCommand(cmd)
	}
	return get
}

// newSummaryCmd is `goray summary actors`: the cluster's actors counted by
// class and state.
func newSummaryCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	summary := &cobra.Command{
		Use:   "summary",
		Short: "Count the cluster's resources by kind and state",
		Args:  cobra.NoArgs,
	}
	o := &stateOptions{}
	actors := &cobra.Command{
		Use:   "actors",
		Short: "Count actors by class and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSource(cmd, o, sec, log, func(ctx context.Context, src stateapi.Source) error {
				as, err := stateapi.Actors(ctx, src)
				if err != nil {
					return err
				}
				return state.PrintActorSummary(os.Stdout, state.SummarizeActors(as), o.format)
			})
		},
	}
	o.register(actors, false)
	summary.AddCommand(actors)

	oo := &stateOptions{}
	objects := &cobra.Command{
		Use:   "objects",
		Short: "Count objects and their bytes by owner",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSource(cmd, oo, sec, log, func(ctx context.Context, src stateapi.Source) error {
				objs, err := stateapi.Objects(ctx, src)
				if err != nil {
					return err
				}
				return state.PrintObjectSummary(os.Stdout, state.SummarizeObjects(objs), oo.format)
			})
		},
	}
	oo.register(objects, false)
	summary.AddCommand(objects)

	to := &stateOptions{}
	var job string
	tasks := &cobra.Command{
		Use:   "tasks",
		Short: "Count task attempts by function and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSource(cmd, to, sec, log, func(ctx context.Context, src stateapi.Source) error {
				var id protos.JobID
				if job != "" {
					j, err := stateapi.JobByPrefix(ctx, src, job)
					if err != nil {
						return err
					}
					if id, err = protos.UniqueIDFromHex(j.JobID); err != nil {
						return err
					}
				}
				sums, info, err := stateapi.TaskSummaries(ctx, src, id)
				if err != nil {
					return err
				}
				if err := state.PrintTaskSummary(os.Stdout, sums, to.format); err != nil {
					return err
				}
				warnIncomplete(info)
				return nil
			})
		},
	}
	to.register(tasks, false)
	tasks.Flags().StringVar(&job, "job", "", "only this job's tasks (a job id or its prefix)")
	summary.AddCommand(tasks)
	return summary
}

// listTasks is `goray list tasks`: the task manager filters and limits.
func listTasks(ctx context.Context, src stateapi.Source, o *stateOptions) error {
	filters, err := parseFilters(o.filters)
	if err != nil {
		return err
	}
	ts, err := stateapi.Tasks(ctx, src, filters, o.limit)
	if err != nil {
		return err
	}
	if err := state.Print(os.Stdout, ts.Tasks, o.format, o.detail); err != nil {
		return err
	}
	if len(ts.Tasks) < ts.Total {
		fmt.Fprintf(os.Stderr, "(%d of %d task attempts shown, the newest; --limit 0 shows all)\n", len(ts.Tasks), ts.Total)
	}
	warnIncomplete(ts)
	return nil
}

// getTask is `goray get task ID`: every attempt of the task.
func getTask(ctx context.Context, src stateapi.Source, o *stateOptions, prefix string) error {
	if len(prefix) < 4 {
		return fmt.Errorf("task id %q: give at least 4 hex digits", prefix)
	}
	ts, err := stateapi.Tasks(ctx, src, []state.Filter{{Field: "task_id", Value: prefix}}, 0)
	if err != nil {
		return err
	}
	if len(ts.Tasks) == 0 {
		warnIncomplete(ts)
		return fmt.Errorf("no task with an id starting %q", prefix)
	}
	for _, t := range ts.Tasks[1:] {
		if t.TaskID != ts.Tasks[0].TaskID {
			return fmt.Errorf("task id prefix %q is ambiguous: %s and %s", prefix, ts.Tasks[0].TaskID, t.TaskID)
		}
	}
	slices.SortFunc(ts.Tasks, func(a, b state.Task) int { return cmp.Compare(a.Attempt, b.Attempt) })
	format := o.format
	if format == state.FormatTable {
		format = state.FormatYAML
	}
	return state.Print(os.Stdout, ts.Tasks, format, true)
}

// warnIncomplete says on stderr what a task listing may lack.
func warnIncomplete(ts state.Tasks) {
	if ts.DroppedEvents > 0 {
		fmt.Fprintf(os.Stderr, "warning: %d task events were dropped before they were kept (a process's buffer or a job's stream was full): some tasks are missing or show an earlier state\n", ts.DroppedEvents)
	}
	if ts.EvictedTasks > 0 {
		fmt.Fprintf(os.Stderr, "warning: %d older task attempts were evicted by the task manager's bound\n", ts.EvictedTasks)
	}
}

func parseFilters(exprs []string) ([]state.Filter, error) {
	var filters []state.Filter
	for _, s := range exprs {
		f, err := state.ParseFilter(s)
		if err != nil {
			return nil, err
		}
		filters = append(filters, f)
	}
	return filters, nil
}
