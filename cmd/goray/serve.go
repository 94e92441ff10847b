package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/goray/goray/sdk"
	"github.com/goray/goray/serve"
)

// goray serve: Serve's applications on a cluster, as Ray's `serve status`
// and `serve shutdown`. The command joins the cluster as a short-lived
// driver and asks the Serve controller.

func newServeCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "serve", Short: "Serve's applications on the cluster (status, shutdown)"}
	var address, format string
	var timeout time.Duration
	withServe := func(cmd *cobra.Command, f func(ctx context.Context) error) error {
		t, err := resolveTarget(address, sec)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		opts := []sdk.InitOption{sdk.Address(t.address), sdk.LogToDriver(false), sdk.LogWriter(io.Discard)}
		if sec.tokenFile != "" {
			opts = append(opts, sdk.AuthTokenFile(sec.tokenFile))
		}
		if err := sdk.Init(ctx, opts...); err != nil {
			return fmt.Errorf("join the cluster at %s: %w", t.address, err)
		}
		defer sdk.Shutdown()
		return f(ctx)
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the applications, their deployments and replicas, and the proxies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withServe(cmd, func(ctx context.Context) error {
				st, err := serve.GetStatus(ctx)
				if err != nil {
					return err
				}
				return printServeStatus(os.Stdout, st, format)
			})
		},
	}
	status.Flags().StringVar(&format, "format", "table", "table or json")
	shutdown := &cobra.Command{
		Use:   "shutdown",
		Short: "Stop every application, the proxies and the controller",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withServe(cmd, func(ctx context.Context) error {
				if err := serve.Shutdown(ctx); err != nil {
					return err
				}
				fmt.Println("Serve stopped.")
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{status, shutdown} {
		c.Flags().StringVar(&address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
		c.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for the cluster")
		cmd.AddCommand(c)
	}
	return cmd
}

func printServeStatus(w io.Writer, st serve.Status, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	case "table":
	default:
		return fmt.Errorf("--format %q: want table or json", format)
	}
	if len(st.Apps) == 0 {
		fmt.Fprintln(w, "No applications.")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, a := range st.Apps {
		route := a.RoutePrefix
		if route == "" {
			route = "(handles only)"
		}
		fmt.Fprintf(tw, "APPLICATION %s\troute %s\tingress %s\n", a.Name, route, a.Ingress)
		for _, d := range a.Deployments {
			states := map[string]int{}
			for _, r := range d.Replicas {
				states[r.State]++
			}
			var parts []string
			for _, s := range []string{"RUNNING", "STARTING", "UNHEALTHY", "STOPPING"} {
				if states[s] > 0 {
					parts = append(parts, fmt.Sprintf("%d %s", states[s], s))
				}
			}
			fmt.Fprintf(tw, "  %s\t%s\ttarget %d replicas\t%s\n", d.Name, d.State, d.Target, strings.Join(parts, ", "))
		}
	}
	for _, p := range st.Proxies {
		fmt.Fprintf(tw, "PROXY\tnode %.12s\thttp://%s\t\n", p.Node, p.Addr)
	}
	if st.Stopping > 0 {
		fmt.Fprintf(tw, "STOPPING\t%d replicas of deleted applications\t\t\n", st.Stopping)
	}
	return tw.Flush()
}
