package state

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// ActorSummary counts a class's actors by state (Ray's `ray summary
// actors`).
type ActorSummary struct {
	ClassName string         `json:"class_name"`
	Total     int            `json:"total"`
	States    map[string]int `json:"states"`
}

// SummarizeActors groups actors by class, classes by name.
func SummarizeActors(actors []Actor) []ActorSummary {
	by := map[string]*ActorSummary{}
	for _, a := range actors {
		s := by[a.ClassName]
		if s == nil {
			s = &ActorSummary{ClassName: a.ClassName, States: map[string]int{}}
			by[a.ClassName] = s
		}
		s.Total++
		s.States[a.State]++
	}
	out := make([]ActorSummary, 0, len(by))
	for _, s := range by {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b ActorSummary) int { return cmp.Compare(a.ClassName, b.ClassName) })
	return out
}

// actorStates are the columns of the summary table, in lifecycle order.
var actorStates = []string{"PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"}

// PrintActorSummary writes summaries as a table (a column per state), or
// as json or yaml.
func PrintActorSummary(w io.Writer, sums []ActorSummary, format string) error {
	rows := make([]countRow, len(sums))
	for i, s := range sums {
		rows[i] = countRow{name: s.ClassName, total: s.Total, states: s.States}
	}
	return printCounts(w, sums, rows, format, "CLASS", actorStates, "No actors.")
}

// countRow is one line of a summary table.
type countRow struct {
	name, kind string
	total      int
	states     map[string]int
}

// printCounts writes a summary: v (the summaries themselves) as json or
// yaml, or rows as a table of a column per state. kinds adds a TYPE column.
func printCounts(w io.Writer, v any, rows []countRow, format, nameColumn string, states []string, none string) error {
	switch format {
	case FormatJSON, FormatYAML:
		if reflect.ValueOf(v).IsNil() {
			v = []struct{}{}
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if format == FormatYAML {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
		} else {
			b = append(b, '\n')
		}
		_, err = w.Write(b)
		return err
	case FormatTable, "":
	default:
		return fmt.Errorf("format %q: want table, json or yaml", format)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, none)
		return err
	}
	kinds := false
	for _, r := range rows {
		kinds = kinds || r.kind != ""
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := nameColumn
	if kinds {
		head += "\tTYPE"
	}
	fmt.Fprintf(tw, "%s\tTOTAL\t%s\n", head, strings.Join(states, "\t"))
	for _, r := range rows {
		counts := make([]string, len(states))
		for i, st := range states {
			counts[i] = fmt.Sprint(r.states[st])
		}
		name := r.name
		if kinds {
			name += "\t" + r.kind
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", name, r.total, strings.Join(counts, "\t"))
	}
	return tw.Flush()
}
