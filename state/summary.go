package state

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
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
	switch format {
	case FormatJSON, FormatYAML:
		if sums == nil {
			sums = []ActorSummary{}
		}
		b, err := json.MarshalIndent(sums, "", "  ")
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
	if len(sums) == 0 {
		_, err := fmt.Fprintln(w, "No actors.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CLASS\tTOTAL\t%s\n", strings.Join(actorStates, "\t"))
	for _, s := range sums {
		counts := make([]string, len(actorStates))
		for i, st := range actorStates {
			counts[i] = fmt.Sprint(s.States[st])
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", s.ClassName, s.Total, strings.Join(counts, "\t"))
	}
	return tw.Flush()
}
