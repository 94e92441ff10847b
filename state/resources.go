package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"
)

// The cluster's resources as Ray's state API shows them (`ray list
// actors`, `ray get nodes <id>`): goray's own types, ids as lowercase hex,
// times as RFC 3339. The goray CLI (`goray list`, `goray get`) and the sdk
// print and return these.

// Kinds of resource the state API lists.
const (
	KindNodes           = "nodes"
	KindJobs            = "jobs"
	KindActors          = "actors"
	KindPlacementGroups = "placement-groups"
	KindWorkers         = "workers"
)

// Kinds lists every kind, in the order the CLI's help names them.
var Kinds = []string{KindNodes, KindJobs, KindActors, KindTasks, KindObjects, KindPlacementGroups, KindWorkers}

// Node is a node of the cluster.
type Node struct {
	NodeID             string             `json:"node_id"`
	State              string             `json:"state"`
	IsHead             bool               `json:"is_head"`
	Hostname           string             `json:"hostname"`
	RayletAddress      string             `json:"raylet_address"`
	ResourcesTotal     map[string]float64 `json:"resources_total"`
	ResourcesAvailable map[string]float64 `json:"resources_available"`
	Labels             map[string]string  `json:"labels,omitempty"`
	NumWorkers         int                `json:"num_workers"`
	ObjectStoreUsed    uint64             `json:"object_store_used_bytes"`
	ObjectStoreTotal   uint64             `json:"object_store_total_bytes"`
	StartTime          time.Time          `json:"start_time"`
	// MemoryUsed and MemoryTotal are the node's memory as its memory
	// monitor counts it; CPUBusy the fraction of its machine's CPU time
	// busy lately (0..1), as of its last report.
	MemoryUsed  uint64  `json:"memory_used_bytes"`
	MemoryTotal uint64  `json:"memory_total_bytes"`
	CPUBusy     float64 `json:"cpu_busy"`
}

// Job is a driver run.
type Job struct {
	JobID        string    `json:"job_id"`
	Status       string    `json:"status"`
	Namespace    string    `json:"namespace"`
	DriverPID    int       `json:"driver_pid"`
	DriverHost   string    `json:"driver_host"`
	Entrypoint   string    `json:"entrypoint"`
	StartTime    time.Time `json:"start_time"`
	EndTime      time.Time `json:"end_time,omitzero"`
	BinaryDigest string    `json:"binary_digest"`
	// Platforms the job has builds for (GOOS/GOARCH).
	Platforms []string `json:"platforms,omitempty"`
	// RuntimeEnv is the job's runtime env: variable names and the working
	// directory package's digest.
	RuntimeEnvVars    []string `json:"runtime_env_vars,omitempty"`
	RuntimeEnvPackage string   `json:"runtime_env_package,omitempty"`
}

// Actor is an actor, alive or dead.
type Actor struct {
	ActorID     string    `json:"actor_id"`
	ClassName   string    `json:"class_name"`
	State       string    `json:"state"`
	Name        string    `json:"name,omitempty"`
	Namespace   string    `json:"namespace"`
	JobID       string    `json:"job_id"`
	NodeID      string    `json:"node_id,omitempty"`
	PID         int       `json:"pid,omitempty"`
	NumRestarts int       `json:"num_restarts"`
	Detached    bool      `json:"detached"`
	DeathCause  string    `json:"death_cause,omitempty"`
	StartTime   time.Time `json:"start_time,omitzero"`
	EndTime     time.Time `json:"end_time,omitzero"`
}

// PlacementGroup is a placement group and where its bundles are.
type PlacementGroup struct {
	PlacementGroupID string    `json:"placement_group_id"`
	Name             string    `json:"name,omitempty"`
	Namespace        string    `json:"namespace"`
	JobID            string    `json:"job_id"`
	State            string    `json:"state"`
	Strategy         string    `json:"strategy"`
	Detached         bool      `json:"detached"`
	Bundles          []Bundle  `json:"bundles"`
	PendingReason    string    `json:"pending_reason,omitempty"`
	CreateTime       time.Time `json:"create_time"`
}

// Worker is a worker process on a node.
type Worker struct {
	WorkerID string `json:"worker_id"`
	NodeID   string `json:"node_id"`
	JobID    string `json:"job_id"`
	PID      int    `json:"pid"`
	// State is STARTING, IDLE, LEASED (running tasks), ACTOR (hosting an
	// actor) or STOPPING.
	State     string    `json:"state"`
	Leases    int       `json:"leases"`
	Detached  bool      `json:"detached"`
	StartTime time.Time `json:"start_time"`
	// The worker's runtime env when it is not its job's: variable names
	// and the working directory package's digest.
	RuntimeEnvVars    []string `json:"runtime_env_vars,omitempty"`
	RuntimeEnvPackage string   `json:"runtime_env_package,omitempty"`
	StdoutPath        string   `json:"stdout_path"`
	StderrPath        string   `json:"stderr_path"`
}

// Bundle is one bundle of a placement group.
type Bundle struct {
	Index     int                `json:"index"`
	Resources map[string]float64 `json:"resources"`
	NodeID    string             `json:"node_id,omitempty"`
}

// Filter keeps the rows whose field (a JSON field name) equals, or with
// Not differs from, Value. Values compare as text, states case-blind.
type Filter struct {
	Field string
	Value string
	Not   bool
}

// ParseFilter reads "field=value" or "field!=value".
func ParseFilter(s string) (Filter, error) {
	if k, v, ok := strings.Cut(s, "!="); ok && k != "" {
		return Filter{Field: strings.TrimSpace(k), Value: strings.TrimSpace(v), Not: true}, nil
	}
	if k, v, ok := strings.Cut(s, "="); ok && k != "" {
		return Filter{Field: strings.TrimSpace(k), Value: strings.TrimSpace(v)}, nil
	}
	return Filter{}, fmt.Errorf("filter %q: want field=value or field!=value", s)
}

// Select applies filters to rows (any of the kinds above), then keeps the
// first limit (0: all). It fails naming a field no row of the kind has.
func Select[T any](rows []T, filters []Filter, limit int) ([]T, error) {
	if len(filters) == 0 {
		if limit > 0 && len(rows) > limit {
			rows = rows[:limit]
		}
		return rows, nil
	}
	fields := fieldNames(reflect.TypeFor[T]())
	for _, f := range filters {
		if _, ok := fields[f.Field]; !ok {
			names := make([]string, 0, len(fields))
			for n := range fields {
				names = append(names, n)
			}
			slices.Sort(names)
			return nil, fmt.Errorf("filter on %q: no such field (fields: %s)", f.Field, strings.Join(names, ", "))
		}
	}
	var out []T
	for _, r := range rows {
		m, err := fieldsOf(r)
		if err != nil {
			return nil, err
		}
		keep := true
		for _, f := range filters {
			if matches(m[f.Field], f.Value) == f.Not {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, r)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

// fieldNames are the JSON names of t's fields.
func fieldNames(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	if t.Kind() != reflect.Struct {
		return out
	}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

// fieldsOf is v's JSON object (a field left out as empty reads as nil,
// which matches "").
func fieldsOf(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func matches(v any, want string) bool {
	var s string
	switch x := v.(type) {
	case nil:
		s = ""
	case string:
		s = x
	case bool:
		s = fmt.Sprint(x)
	case float64:
		s = fmt.Sprint(x)
	default:
		b, _ := json.Marshal(x)
		s = string(b)
	}
	return strings.EqualFold(s, want)
}

// Formats of Print.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatYAML  = "yaml"
)

// Print writes rows in format. A table shows each kind's main columns,
// with ids shortened unless detail; json and yaml show every field.
func Print[T any](w io.Writer, rows []T, format string, detail bool) error {
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []T{}
		}
		return enc.Encode(rows)
	case FormatYAML:
		b, err := json.Marshal(rows)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	case FormatTable, "":
		return printTable(w, rows, detail)
	}
	return fmt.Errorf("format %q: want table, json or yaml", format)
}

func printTable[T any](w io.Writer, rows []T, detail bool) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No resources found.")
		return err
	}
	id := func(s string) string {
		if detail || len(s) <= 12 {
			return s
		}
		return s[:12]
	}
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format(time.DateTime)
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for i, r := range rows {
		switch v := any(r).(type) {
		case Node:
			if i == 0 {
				fmt.Fprintln(tw, "NODE_ID\tSTATE\tHEAD\tHOSTNAME\tRESOURCES (AVAILABLE/TOTAL)\tWORKERS\tSTARTED")
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%d\t%s\n", id(v.NodeID), v.State, v.IsHead, v.Hostname, resources(v.ResourcesAvailable, v.ResourcesTotal), v.NumWorkers, when(v.StartTime))
		case Job:
			if i == 0 {
				fmt.Fprintln(tw, "JOB_ID\tSTATUS\tNAMESPACE\tDRIVER\tENTRYPOINT\tSTARTED\tENDED")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id(v.JobID), v.Status, v.Namespace, fmt.Sprintf("%s:%d", v.DriverHost, v.DriverPID), v.Entrypoint, when(v.StartTime), when(v.EndTime))
		case Actor:
			if i == 0 {
				fmt.Fprintln(tw, "ACTOR_ID\tCLASS\tSTATE\tNAME\tNAMESPACE\tJOB_ID\tNODE_ID\tPID\tRESTARTS")
			}
			pid := "-"
			if v.PID != 0 {
				pid = fmt.Sprint(v.PID)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", id(v.ActorID), v.ClassName, v.State, dash(v.Name), v.Namespace, id(v.JobID), dash(id(v.NodeID)), pid, v.NumRestarts)
		case PlacementGroup:
			if i == 0 {
				fmt.Fprintln(tw, "PLACEMENT_GROUP_ID\tNAME\tSTATE\tSTRATEGY\tBUNDLES\tNODES\tCREATED")
			}
			var nodes []string
			for _, b := range v.Bundles {
				nodes = append(nodes, dash(id(b.NodeID)))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", id(v.PlacementGroupID), dash(v.Name), v.State, v.Strategy, len(v.Bundles), strings.Join(nodes, ","), when(v.CreateTime))
		case Worker:
			if i == 0 {
				fmt.Fprintln(tw, "WORKER_ID\tNODE_ID\tJOB_ID\tPID\tSTATE\tLEASES\tRUNTIME_ENV\tSTARTED")
			}
			env := "-"
			if len(v.RuntimeEnvVars) > 0 || v.RuntimeEnvPackage != "" {
				env = strings.Join(v.RuntimeEnvVars, ",")
				if v.RuntimeEnvPackage != "" {
					env = strings.TrimPrefix(env+",pkg:"+id(v.RuntimeEnvPackage), ",")
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", id(v.WorkerID), id(v.NodeID), id(v.JobID), v.PID, v.State, v.Leases, env, when(v.StartTime))
		case ObjectMemory:
			if i == 0 {
				fmt.Fprintln(tw, "OBJECT_ID\tSIZE\tSTATE\tOWNER\tWHERE\tPINS\tREFERENCE_TYPES")
			}
			var refs []string
			for _, r := range v.RefTypes {
				refs = append(refs, r.String())
			}
			id := v.ID
			if !detail {
				id = shortObjectID(v.ID)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", id, FormatBytes(v.Size), dash(v.State), ownerString(v.Owner, true), v.Where, v.Pins, dash(strings.Join(refs, " ")))
		case Task:
			if i == 0 {
				fmt.Fprintln(tw, "TASK_ID\tATTEMPT\tNAME\tSTATE\tTYPE\tJOB_ID\tNODE_ID\tPID\tDURATION\tERROR")
			}
			pid, took := "-", "-"
			if v.WorkerPID != 0 {
				pid = fmt.Sprint(v.WorkerPID)
			}
			if !v.StartTime.IsZero() && !v.EndTime.IsZero() {
				took = v.EndTime.Sub(v.StartTime).Round(time.Microsecond).String()
			}
			errType := dash(v.ErrorType)
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id(v.TaskID), v.Attempt, v.Name, v.State, v.Type, id(v.JobID), dash(id(v.NodeID)), pid, took, errType)
		default:
			return fmt.Errorf("state: no table for %T", r)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// resources prints "CPU 1/2, memory ..." in name order. Placement
// groups' bundle resources (CPU_group_..., bundle_group_...) are left to
// --format json: the groups' own listing shows them.
func resources(avail, total map[string]float64) string {
	names := make([]string, 0, len(total))
	for n := range total {
		if !strings.Contains(n, "_group_") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %g/%g", n, avail[n], total[n]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
