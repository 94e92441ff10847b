package raylet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/goray/goray/protos"
)

// A worker's log files rotate: past LogRotateBytes the file is renamed
// and a new one begun, and only LogRotateBackups old ones are kept.
func TestWorkerLogsRotate(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{SessionDir: dir, LogRotateBytes: 1 << 20, LogRotateBackups: 2, Logger: zerolog.Nop()}
	r := &Raylet{cfg: cfg}
	l, err := newWorkerLogs(r, protos.NewUniqueID(), protos.NewUniqueID())
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 1023) + "\n"
	l.pump(strings.NewReader(strings.Repeat(line, 5<<10)), false) // 5 MiB
	l.close()
	if fi, err := os.Stat(l.outPath); err != nil || fi.Size() > 1<<20 {
		t.Fatalf("current log file: %v, %v; want at most 1 MiB", fi, err)
	}
	base := strings.TrimSuffix(filepath.Base(l.outPath), ".out")
	waitFor(t, "old log files trimmed to 2", func() bool {
		old, _ := filepath.Glob(filepath.Join(dir, "logs", base+"-*.out"))
		return len(old) == 2
	})
	if fi, err := os.Stat(l.errPath); err != nil || fi.Size() != 0 {
		t.Errorf("stderr file of a worker that wrote none: %v, %v", fi, err)
	}
}
