package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// recipeMarker starts the block of docs/nats.md this test runs.
const recipeMarker = "<!-- recipes: run by tests/nats_recipes_test.go -->"

// recipe is one line of the block: a command and its comment.
type recipe struct {
	cmd, comment string
}

func (r recipe) untilInterrupted() bool { return strings.Contains(r.comment, "(until Ctrl-C)") }

// readRecipes reads the sh block that follows the marker in docs/nats.md.
func readRecipes(t *testing.T) []recipe {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "nats.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), recipeMarker)
	if !ok {
		t.Fatalf("docs/nats.md has no %s", recipeMarker)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/nats.md: no sh block after the recipes marker")
	}
	var out []recipe
	for _, line := range strings.Split(block, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		cmd, comment, _ := strings.Cut(line, "  #")
		out = append(out, recipe{cmd: strings.TrimSpace(cmd), comment: comment})
	}
	if len(out) < 10 {
		t.Fatalf("docs/nats.md: only %d recipes", len(out))
	}
	return out
}

// TestNATSRecipes runs every recipe of docs/nats.md with the real nats CLI
// as the read-only operator, on a cluster of two nodes with a job, an
// actor, tasks and a submitted job to look at: each must succeed and
// print what it promises (records and replies as JSON with hex ids).
func TestNATSRecipes(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "1"}, nodeSpec{"--num-cpus", "1"})
	natsCLI := natsBin(t)
	counter, err := CounterActor.Remote(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CounterInc.Remote(ctx, counter, 1).Get(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Add.Remote(ctx, 1, 2).Get(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := runGoray(c.bin, c.env, "job", "submit", "--submission-id", "recipes", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir), "--", "true"); err != nil {
		t.Fatalf("goray job submit: %v\n%s", err, out)
	}
	seed := filepath.Join(t.TempDir(), "ops.nk")
	if out, err := runGoray(c.bin, c.env, "nats-creds", "--read-only", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir), "--out", seed); err != nil {
		t.Fatalf("goray nats-creds: %v\n%s", err, out)
	}
	ids := map[string]string{
		"<node-id>":       c.head.id,
		"<job-id>":        sdk.GetRuntimeContext(ctx).JobID.String(),
		"<actor-id>":      counter.ID().String(),
		"<submission-id>": "recipes",
	}
	env := append(os.Environ(), "HOME="+t.TempDir(), "NATS_URL="+c.addr, "NATS_NKEY="+seed,
		"PATH="+filepath.Dir(natsCLI)+string(os.PathListSeparator)+os.Getenv("PATH"))
	if cert, key, ca, ok := tlsFiles(); ok {
		env = append(env, "NATS_CERT="+cert, "NATS_KEY="+key, "NATS_CA="+ca)
	}

	for _, r := range readRecipes(t) {
		cmd := r.cmd
		for k, v := range ids {
			cmd = strings.ReplaceAll(cmd, k, v)
		}
		if strings.Contains(cmd, "<") {
			t.Fatalf("recipe %q has a placeholder this test does not fill", r.cmd)
		}
		out := runRecipe(t, ctx, env, cmd, r, func() {
			// Something to see on the live subjects: an actor's
			// events and record changes.
			a, err := CounterActor.Remote(ctx, 5)
			if err == nil {
				_ = sdk.Kill(ctx, a, true)
			}
		})
		checkRecipe(t, cmd, out, ids)
	}
}

// runRecipe runs one recipe with sh; one marked (until Ctrl-C) runs until
// it has printed what it shows (poke makes something happen), then is
// interrupted.
func runRecipe(t *testing.T, ctx context.Context, env []string, cmd string, r recipe, poke func()) string {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := exec.CommandContext(rctx, "sh", "-c", cmd)
	c.Env = env
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuffer
	c.Stdout, c.Stderr = &out, &out
	c.WaitDelay = 5 * time.Second
	if !r.untilInterrupted() {
		if err := c.Run(); err != nil {
			t.Fatalf("recipe %q: %v\n%s", cmd, err, out.String())
		}
		return out.String()
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGINT)
		_ = c.Wait()
	}()
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	poked := false
	for time.Now().Before(deadline) {
		if s := out.String(); strings.Contains(s, "Received on") || strings.Contains(s, "{") {
			return s
		}
		// Once the command subscribed (or after 3 s if it does not say
		// so), make something happen.
		if !poked && (strings.Contains(out.String(), "Subscribing") || time.Since(start) > 3*time.Second) {
			poked = true
			poke()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("recipe %q showed nothing in 15 s:\n%s", cmd, out.String())
	return ""
}

// checkRecipe checks what a recipe printed: no refusal, and the JSON it
// promises.
func checkRecipe(t *testing.T, cmd, out string, ids map[string]string) {
	t.Helper()
	for _, bad := range []string{"Violation", "nats: error", "no responders"} {
		if strings.Contains(out, bad) {
			t.Fatalf("recipe %q: %s\n%s", cmd, bad, out)
		}
	}
	if strings.TrimSpace(out) == "" {
		t.Fatalf("recipe %q printed nothing", cmd)
	}
	jsonOut := strings.Contains(cmd, "--raw") && strings.Contains(cmd, "kv get") || strings.Contains(cmd, "Goray-Encoding:json")
	if !jsonOut {
		return
	}
	i := strings.Index(out, "{")
	if i < 0 {
		t.Fatalf("recipe %q: no JSON\n%s", cmd, out)
	}
	var v any
	if err := json.NewDecoder(bytes.NewReader([]byte(out[i:]))).Decode(&v); err != nil {
		t.Fatalf("recipe %q: %v\n%s", cmd, err, out)
	}
	if strings.Contains(out, `"error"`) {
		t.Fatalf("recipe %q answered an error:\n%s", cmd, out)
	}
	// The ids a record or reply names are hex, as goray prints them.
	for _, k := range []string{"<node-id>", "<job-id>", "<actor-id>"} {
		if strings.Contains(cmd, ids[k]) && !strings.Contains(out, fmt.Sprintf("%q", ids[k])) {
			t.Fatalf("recipe %q: the id %s is not in the JSON as hex:\n%s", cmd, ids[k], out)
		}
	}
}
