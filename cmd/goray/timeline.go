package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/state"
)

// newTimelineCmd is `goray timeline`: the task events as a Chrome trace.
func newTimelineCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	o := &stateOptions{}
	var job, out string
	cmd := &cobra.Command{
		Use:   "timeline",
		Short: "Write the tasks' spans as a Chrome trace (chrome://tracing, ui.perfetto.dev)",
		Long: `Write a Chrome trace (JSON) of the task and actor call attempts that ran:
a process per node, a thread per worker process, a span per attempt from
its start to its end. Open it in chrome://tracing or https://ui.perfetto.dev.

--job keeps one job's tasks (an id or its prefix); --filter narrows further
as in goray list tasks. The cluster is --address, else $GORAY_ADDRESS, else
the one goray start --head recorded on this machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSource(cmd, o, sec, log, func(ctx context.Context, src stateapi.Source) error {
				return timeline(ctx, src, o, job, out)
			})
		},
	}
	o.register(cmd, false)
	f := cmd.Flags()
	f.StringVar(&job, "job", "", "only this job's tasks (a job id or its prefix)")
	f.StringArrayVar(&o.filters, "filter", nil, "keep tasks whose field equals (field=value) or differs from (field!=value) a value, as goray list tasks")
	f.StringVarP(&out, "output", "o", "", "write the trace to this file (default: timeline-<time>.json; - for stdout)")
	return cmd
}

func timeline(ctx context.Context, src stateapi.Source, o *stateOptions, job, out string) error {
	filters, err := parseFilters(o.filters)
	if err != nil {
		return err
	}
	if job != "" {
		j, err := stateapi.JobByPrefix(ctx, src, job)
		if err != nil {
			return err
		}
		filters = append(filters, state.Filter{Field: "job_id", Value: j.JobID})
	}
	ts, err := stateapi.Tasks(ctx, src, filters, 0)
	if err != nil {
		return err
	}
	var w io.Writer = os.Stdout
	if out == "" {
		out = "timeline-" + time.Now().Format("2006-01-02_15-04-05") + ".json"
	}
	if out != "-" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if err := state.WriteChromeTrace(w, ts.Tasks, time.Now()); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if out != "-" {
		fmt.Fprintf(os.Stderr, "Wrote the spans of %d task attempts to %s: open it in chrome://tracing or https://ui.perfetto.dev\n", countRan(ts.Tasks), out)
	}
	warnIncomplete(ts)
	return nil
}

func countRan(ts []state.Task) int {
	n := 0
	for _, t := range ts {
		if !t.StartTime.IsZero() {
			n++
		}
	}
	return n
}
