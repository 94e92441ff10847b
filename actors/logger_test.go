package actors

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// lines decodes every JSON line the logger wrote.
func lines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf, zerolog.WarnLevel)
	l.Info().Msg("no")
	l.Warn().Msg("yes")
	got := lines(t, buf.String())
	if len(got) != 1 || got[0]["message"] != "yes" {
		t.Fatalf("got %v", got)
	}
	if _, ok := got[0]["time"]; !ok {
		t.Errorf("no timestamp: %v", got[0])
	}
}
