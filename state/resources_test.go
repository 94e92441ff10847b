package state

import (
	"bytes"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestSelect(t *testing.T) {
	actors := []Actor{
		{ActorID: "aa01", ClassName: "main.A", State: "ALIVE", Name: "x", PID: 7},
		{ActorID: "aa02", ClassName: "main.A", State: "DEAD"},
		{ActorID: "bb03", ClassName: "main.B", State: "ALIVE"},
	}
	for _, tc := range []struct {
		filters []string
		limit   int
		want    []string
		err     string
	}{
		{want: []string{"aa01", "aa02", "bb03"}},
		{limit: 2, want: []string{"aa01", "aa02"}},
		{filters: []string{"state=alive"}, want: []string{"aa01", "bb03"}},
		{filters: []string{"state!=ALIVE"}, want: []string{"aa02"}},
		{filters: []string{"class_name=main.A", "state=ALIVE"}, want: []string{"aa01"}},
		{filters: []string{"pid=7"}, want: []string{"aa01"}},
		// name is left out of a row where it is empty: it matches "".
		{filters: []string{"name="}, want: []string{"aa02", "bb03"}},
		{filters: []string{"state=ALIVE"}, limit: 1, want: []string{"aa01"}},
		{filters: []string{"colour=red"}, err: `"colour": no such field`},
	} {
		var fs []Filter
		for _, s := range tc.filters {
			f, err := ParseFilter(s)
			if err != nil {
				t.Fatal(err)
			}
			fs = append(fs, f)
		}
		got, err := Select(actors, fs, tc.limit)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: %v, want an error with %q", tc.filters, err, tc.err)
			}
			continue
		}
		var ids []string
		for _, a := range got {
			ids = append(ids, a.ActorID)
		}
		if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%v limit %d: %v, want %v (%v)", tc.filters, tc.limit, ids, tc.want, err)
		}
	}
	if _, err := ParseFilter("state"); err == nil {
		t.Error("a filter without = was accepted")
	}
}

func TestPrint(t *testing.T) {
	nodes := []Node{{NodeID: "0123456789abcdef0123456789abcdef", State: "ALIVE", IsHead: true, Hostname: "h",
		ResourcesTotal:     map[string]float64{"CPU": 2, "CPU_group_0_ab": 1},
		ResourcesAvailable: map[string]float64{"CPU": 1, "CPU_group_0_ab": 1}}}
	var b bytes.Buffer
	if err := Print(&b, nodes, FormatTable, false); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "0123456789ab ") || strings.Contains(out, "0123456789abc") || !strings.Contains(out, "CPU 1/2") || strings.Contains(out, "_group_") {
		t.Errorf("table:\n%s", out)
	}
	b.Reset()
	if err := Print(&b, nodes, FormatTable, true); err != nil || !strings.Contains(b.String(), nodes[0].NodeID) {
		t.Errorf("detail table: %v\n%s", err, b.String())
	}
	b.Reset()
	if err := Print(&b, nodes, FormatYAML, false); err != nil {
		t.Fatal(err)
	}
	var back []Node
	if err := yaml.Unmarshal(b.Bytes(), &back); err != nil || len(back) != 1 || back[0].NodeID != nodes[0].NodeID || back[0].ResourcesTotal["CPU_group_0_ab"] != 1 {
		t.Errorf("yaml: %v %+v\n%s", err, back, b.String())
	}
	b.Reset()
	if err := Print(&b, []Actor(nil), FormatJSON, false); err != nil || strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("no rows as json: %v %q", err, b.String())
	}
	b.Reset()
	if err := Print(&b, []Actor(nil), FormatTable, false); err != nil || !strings.Contains(b.String(), "No resources found") {
		t.Errorf("no rows as a table: %v %q", err, b.String())
	}
	if err := Print(&b, nodes, "xml", false); err == nil {
		t.Error("format xml accepted")
	}
}

func TestSummarizeActors(t *testing.T) {
	sums := SummarizeActors([]Actor{
		{ClassName: "main.B", State: "ALIVE"},
		{ClassName: "main.A", State: "DEAD"},
		{ClassName: "main.B", State: "ALIVE"},
		{ClassName: "main.B", State: "RESTARTING"},
	})
	if len(sums) != 2 || sums[0].ClassName != "main.A" || sums[1].Total != 3 || sums[1].States["ALIVE"] != 2 || sums[1].States["RESTARTING"] != 1 {
		t.Fatalf("%+v", sums)
	}
	var b bytes.Buffer
	if err := PrintActorSummary(&b, sums, FormatTable); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CLASS") || strings.Join(strings.Fields(lines[2]), " ") != "main.B 3 0 2 1 0" {
		t.Errorf("table:\n%s", b.String())
	}
}
