package actors

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
)

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
	var started map[string]any
	for _, m := range lines(t, buf.String()) {
		if m["message"] == "actor system started" {
			started = m
		}
	}
	if started == nil {
		t.Fatalf("protoactor start line missing from zerolog output: %q", buf.String())
	}
	if started["level"] != "debug" || started["lib"] != "protoactor" ||
		started["actor_system"] != sys.ID || started["id"] != sys.ID {
		t.Errorf("start line not demoted, tagged or missing its attrs: %v", started)
	}

	buf.Reset()
	quiet := NewSystem(zerolog.New(&buf).Level(zerolog.InfoLevel))
	defer quiet.Shutdown()
	if s := buf.String(); s != "" {
		t.Errorf("info-level system logged %q", s)
	}
}

func TestInfoAsDebug(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(infoAsDebug{zerolog.NewSlogHandler(zerolog.New(&buf).Level(zerolog.TraceLevel))})
	log.Debug("d")
	log.Info("i")
	log.Log(context.Background(), slog.LevelInfo+2, "i+2")
	log.Warn("w")
	log.Error("e")
	// Loggers derived with attrs or groups must keep the demotion.
	log.With("a", 1).Info("with")
	log.WithGroup("g").Info("group", "k", "v")

	got := lines(t, buf.String())
	want := []struct{ msg, level string }{
		{"d", "debug"}, {"i", "debug"}, {"i+2", "debug"}, {"w", "warn"}, {"e", "error"}, {"with", "debug"}, {"group", "debug"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i]["message"] != w.msg || got[i]["level"] != w.level {
			t.Errorf("line %d = %v, want %s at %s", i, got[i], w.msg, w.level)
		}
	}
	if got[5]["a"] != float64(1) || got[6]["g.k"] != "v" {
		t.Errorf("derived lines lost their attrs: %v, %v", got[5], got[6])
	}

	info := slog.New(infoAsDebug{zerolog.NewSlogHandler(zerolog.New(&buf).Level(zerolog.InfoLevel))})
	if info.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("demoted info still enabled on an info-level logger")
	}
	if !info.Enabled(context.Background(), slog.LevelWarn) {
		t.Error("warn disabled on an info-level logger")
	}
}
