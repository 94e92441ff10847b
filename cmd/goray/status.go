package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
	"github.com/goray/goray/state"
)

type gcsInfo = protos.ClusterInfoReply

func newStatusCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's nodes, resources, demands and jobs",
		Long: `Show the cluster's nodes with their resources (used/total), object store,
workers, pending and infeasible resource demands, and its jobs.

The cluster is --address, else $GORAY_ADDRESS, else the one goray start
--head recorded on this machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			t, info, err := clusterInfo(ctx, address, sec, log)
			if err != nil {
				return err
			}
			printStatus(os.Stdout, t.address, info)
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
	return cmd
}

func printStatus(w io.Writer, addr string, info *gcsInfo) {
	fmt.Fprintf(w, "goray cluster at %s\n", addr)
	if d := info.GetSessionDir(); d != "" {
		fmt.Fprintf(w, "Session dir: %s\n", d)
	}

	nodes := info.GetNodes()
	var alive, dead []*protos.NodeInfo
	for _, n := range nodes {
		if n.GetState() == protos.NodeInfo_ALIVE {
			alive = append(alive, n)
		} else {
			dead = append(dead, n)
		}
	}
	fmt.Fprintf(w, "\nNodes: %d alive", len(alive))
	if len(dead) > 0 {
		fmt.Fprintf(w, ", %d dead", len(dead))
	}
	fmt.Fprintln(w)
	for _, n := range alive {
		printNode(w, n, alive)
	}
	for _, n := range dead {
		fmt.Fprintf(w, "  %s  %s%s  %s\n", nodeShort(n), n.GetHostname(), headMark(n), stateName(n.GetState()))
	}

	jobs := info.GetJobs()
	fmt.Fprintf(w, "\nJobs: %d\n", len(jobs))
	if len(jobs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tSTATE\tDRIVER PID\tSTARTED\tPROGRAM")
	for _, j := range jobs {
		state := "running"
		if j.GetFinished() {
			state = "finished"
		}
		id := shortID(j.GetJobId())
		pid := fmt.Sprint(j.GetDriverPid())
		if host, _ := os.Hostname(); j.GetDriverHost() != "" && j.GetDriverHost() != host {
			pid += " on " + j.GetDriverHost()
		}
		started := "-"
		if ms := j.GetStartTimeUnixMs(); ms > 0 {
			started = time.UnixMilli(ms).Format(time.DateTime)
		}
		prog := filepath.Base(j.GetExecutable())
		if ns := j.GetNamespace(); ns != "" {
			prog += " (namespace " + ns + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", id, state, pid, started, prog)
	}
	tw.Flush()
}

func printNode(w io.Writer, n *protos.NodeInfo, alive []*protos.NodeInfo) {
	fmt.Fprintf(w, "  %s  %s%s  %s\n", nodeShort(n), n.GetHostname(), headMark(n), stateName(n.GetState()))
	total, avail := n.GetTotal().GetAmounts(), n.GetAvailable().GetAmounts()
	var parts []string
	for _, name := range resourceNames(total) {
		used := total[name] - avail[name]
		if used < 0 {
			used = 0
		}
		parts = append(parts, fmt.Sprintf("%s %s/%s", name, formatQuantity(name, used), formatQuantity(name, total[name])))
	}
	res := strings.Join(parts, ", ")
	if res == "" {
		res = "none"
	}
	fmt.Fprintf(w, "    Resources:     %s\n", res)
	if ls := n.GetLabels(); len(ls) > 0 {
		kv := make([]string, 0, len(ls))
		for k, v := range ls {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		fmt.Fprintf(w, "    Labels:        %s\n", strings.Join(kv, ","))
	}
	fmt.Fprintf(w, "    Object store:  %s/%s (%d objects)\n", formatBytes(n.GetStoreUsed()), formatBytes(n.GetStoreCapacity()), n.GetStoreObjects())
	if st := n.GetStoreStats(); st.GetSpilledObjectsTotal() > 0 || st.GetNumSpilled() > 0 {
		fmt.Fprintf(w, "    Spilled:       %d objects (%s) on disk now; %d objects (%s) spilled, %d (%s) restored since start\n",
			st.GetNumSpilled(), formatBytes(st.GetSpilledBytes()), st.GetSpilledObjectsTotal(), formatBytes(st.GetSpilledBytesTotal()),
			st.GetRestoredObjectsTotal(), formatBytes(st.GetRestoredBytesTotal()))
	}
	fmt.Fprintf(w, "    Workers:       %d\n", n.GetNumWorkers())
	if len(n.GetPending()) == 0 && len(n.GetInfeasible()) == 0 {
		fmt.Fprintf(w, "    Demands:       none\n")
		return
	}
	for _, d := range n.GetPending() {
		fmt.Fprintf(w, "    Pending:       %s: %d pending\n", formatDemand(d), d.GetCount())
	}
	for _, d := range n.GetInfeasible() {
		fmt.Fprintf(w, "    Infeasible:    %s: %d pending, infeasible: %s\n", formatDemand(d), d.GetCount(), infeasibleReason(d, alive))
	}
}

// infeasibleReason says which resource of shape no node has enough of.
func infeasibleReason(d *protos.ResourceDemand, alive []*protos.NodeInfo) string {
	shape := d.GetShape().GetAmounts()
	var matching []*protos.NodeInfo
	for _, n := range alive {
		if labelsMatch(d.GetLabels(), n.GetLabels()) {
			matching = append(matching, n)
		}
	}
	if len(matching) == 0 {
		return "no node has labels " + formatSelector(d.GetLabels())
	}
	alive = matching
	var why []string
	for _, name := range resourceNames(shape) {
		need, best := shape[name], 0.0
		for _, n := range alive {
			best = math.Max(best, n.GetTotal().GetAmounts()[name])
		}
		switch {
		case best <= 0:
			why = append(why, "no node has "+name)
		case best < need:
			why = append(why, fmt.Sprintf("no node has %s %s (largest: %s)", formatQuantity(name, need), name, formatQuantity(name, best)))
		}
	}
	if len(why) == 0 {
		return "no node could provide it when it was requested"
	}
	return strings.Join(why, "; ")
}

func headMark(n *protos.NodeInfo) string {
	if n.GetIsHead() {
		return "  head"
	}
	return ""
}

func stateName(s protos.NodeInfo_State) string {
	switch s {
	case protos.NodeInfo_ALIVE:
		return "ALIVE"
	case protos.NodeInfo_DEAD:
		return "DEAD"
	}
	return "UNKNOWN"
}

func nodeShort(n *protos.NodeInfo) string { return shortID(n.GetNodeId()) }

func shortID(b []byte) string {
	id, err := protos.UniqueIDFromBytes(b)
	if err != nil {
		return fmt.Sprintf("%x", b)
	}
	return id.Short()
}

// resourceNames orders CPU, GPU and memory first, then the rest by name.
func resourceNames(m map[string]float64) []string {
	rank := map[string]int{raylet.CPU: 0, raylet.GPU: 1, raylet.Memory: 2}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		ri, oki := rank[names[i]]
		rj, okj := rank[names[j]]
		switch {
		case oki && okj:
			return ri < rj
		case oki != okj:
			return oki
		}
		return names[i] < names[j]
	})
	return names
}

func formatResources(m map[string]float64) string {
	var parts []string
	for _, name := range resourceNames(m) {
		parts = append(parts, fmt.Sprintf("%s %s", name, formatQuantity(name, m[name])))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// formatShape prints a demand as {CPU: 1, GPU: 0.5}.
// formatDemand is a demand's shape and, if it has one, its label selector.
func formatDemand(d *protos.ResourceDemand) string {
	s := formatShape(d.GetShape().GetAmounts())
	if len(d.GetLabels()) > 0 {
		s += " on nodes with " + formatSelector(d.GetLabels())
	}
	return s
}

// formatSelector renders a label selector as "zone in (a, b), disk=ssd".
func formatSelector(ls map[string]*protos.LabelValues) string {
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if vs := ls[k].GetValues(); len(vs) == 1 {
			parts = append(parts, k+"="+vs[0])
		} else {
			parts = append(parts, fmt.Sprintf("%s in (%s)", k, strings.Join(vs, ", ")))
		}
	}
	return strings.Join(parts, ", ")
}

// labelsMatch reports whether node labels satisfy a selector.
func labelsMatch(sel map[string]*protos.LabelValues, labels map[string]string) bool {
	for k, vs := range sel {
		v, ok := labels[k]
		if !ok || !slices.Contains(vs.GetValues(), v) {
			return false
		}
	}
	return true
}

func formatShape(m map[string]float64) string {
	var parts []string
	for _, name := range resourceNames(m) {
		parts = append(parts, fmt.Sprintf("%s: %g", name, m[name]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// formatQuantity prints 2 as "2.0" and 0.25 as "0.25"; memory in bytes.
func formatQuantity(name string, v float64) string {
	if name == raylet.Memory {
		return formatBytes(uint64(math.Max(v, 0)))
	}
	if r := math.Round(v*10) / 10; math.Abs(r-v) < 1e-9 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%g", v)
}

func formatBytes(n uint64) string { return state.FormatBytes(n) }
