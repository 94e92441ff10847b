package state

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// KindObjects lists the cluster's objects (what `goray memory` shows).
const KindObjects = "objects"

// ObjectSummary counts one owner's objects (Ray's `ray summary objects`
// groups by call site; goray's owner is the process that made them).
type ObjectSummary struct {
	Owner      ProcessIdent `json:"owner"`
	Objects    int          `json:"objects"`
	TotalBytes uint64       `json:"total_bytes"`
	InMemory   int          `json:"in_memory"`
	Spilled    int          `json:"spilled"`
	Inline     int          `json:"inline"`
	// RefTypes counts the objects alive for each reason.
	RefTypes map[RefType]int `json:"reference_types"`
}

// SummarizeObjects groups objects by owner, the largest total first.
func SummarizeObjects(objs []ObjectMemory) []ObjectSummary {
	by := map[ProcessIdent]*ObjectSummary{}
	for _, o := range objs {
		s := by[o.Owner]
		if s == nil {
			s = &ObjectSummary{Owner: o.Owner, RefTypes: map[RefType]int{}}
			by[o.Owner] = s
		}
		s.Objects++
		s.TotalBytes += o.Size
		if o.InMemory {
			s.InMemory++
		}
		if o.Spilled {
			s.Spilled++
		}
		if o.Inline {
			s.Inline++
		}
		for _, r := range o.RefTypes {
			s.RefTypes[r.Type]++
		}
	}
	out := make([]ObjectSummary, 0, len(by))
	for _, s := range by {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b ObjectSummary) int {
		return cmp.Or(cmp.Compare(b.TotalBytes, a.TotalBytes), cmp.Compare(a.Owner.WorkerID, b.Owner.WorkerID))
	})
	return out
}

// PrintObjectSummary writes summaries as a table, or as json or yaml.
func PrintObjectSummary(w io.Writer, sums []ObjectSummary, format string) error {
	if format != FormatTable && format != "" {
		return printCounts(w, sums, nil, format, "", nil, "")
	}
	if len(sums) == 0 {
		_, err := fmt.Fprintln(w, "No objects.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OWNER\tOBJECTS\tTOTAL\tIN_MEMORY\tSPILLED\tINLINE\tREFERENCE_TYPES")
	for _, s := range sums {
		var refs []string
		for _, t := range RefTypeOrder {
			if n := s.RefTypes[t]; n > 0 {
				refs = append(refs, fmt.Sprintf("%s:%d", t, n))
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\n", ownerString(s.Owner, true), s.Objects, FormatBytes(s.TotalBytes), s.InMemory, s.Spilled, s.Inline, strings.Join(refs, " "))
	}
	return tw.Flush()
}
