package tests

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// `make chaos` in short: cmd/goray-chaos runs its workload (dependent
// tasks, shared-memory objects passed between tasks, restarting actors, a
// detached service) on a cluster of its own for 15 s while it SIGKILLs a
// worker every 200 ms, the node once and the head once, and exits non-zero
// if any task or call was wrong, failed or hung.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("15 s of chaos")
	}
	goray := sharedGoray(t)
	bin := filepath.Join(t.TempDir(), "goray-chaos")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/goray/goray/cmd/goray-chaos").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/goray-chaos: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, bin, "-goray", goray, "-duration", "15s")
	// Its cluster's sessions and logs go in the test's directory.
	cmd.Env = cliEnv(t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("goray-chaos -duration 15s: %v\n%s", err, out.String())
	}
	t.Logf("goray-chaos -duration 15s:\n%s", out.String())
}
