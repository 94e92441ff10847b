package tests

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// TestRuntimeEnvShipsTheBinary runs a job whose driver's binary no node
// has: the driver runs from a copy of this test binary, deleted once the
// job started. Three nodes (separate session directories, as separate
// machines) run its tasks and actors from the binary the driver uploaded;
// a working directory and environment variables reach the tasks that ask
// for them; a fourth node, playing another platform, refuses the job's
// work naming both platforms; and a second job with the same binary
// uploads nothing and finds it in every node's cache.
func TestRuntimeEnvShipsTheBinary(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "2"}, nodeSpec{"--num-cpus", "2"}, nodeSpec{"--num-cpus", "2"})
	other := c.addNodeEnv(nodeSpec{"--num-cpus", "1"}, "GORAY_NODE_PLATFORM=linux/riscv64")
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		st, err := sdk.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		if len(st.Nodes) != 4 {
			return errorf("%d nodes, want 4", len(st.Nodes))
		}
		return nil
	})
	nodes := []string{c.head.id, c.nodes[0].id, c.nodes[1].id}

	data := filepath.Join(t.TempDir(), "app")
	mustWrite(t, filepath.Join(data, "data.txt"), "shipped data\n")
	mustWrite(t, filepath.Join(data, ".git", "HEAD"), "ref: refs/heads/main\n")
	extra := filepath.Join(t.TempDir(), "data.txt")
	mustWrite(t, extra, "extra file\n")

	// A copy of this binary with bytes appended: a program no node and no
	// earlier job of this cluster has (the test process, a driver too,
	// uploaded the unmodified binary).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 64)
	_, _ = rand.Read(suffix)
	bin1 := filepath.Join(t.TempDir(), "driver")
	digest := copyWithSuffix(t, self, bin1, suffix)

	env := append(cliEnv(t.TempDir()),
		envRuntimeEnvDriver+"=1",
		"GORAY_LOG_LEVEL=info",
		"RTENV_ADDRESS="+c.addr,
		"RTENV_TOKEN_FILE="+tokenFile(c.head.dir),
		"RTENV_NODES="+strings.Join(nodes, ","),
		"RTENV_DATA_DIR="+data,
		"RTENV_EXTRA_FILE="+extra,
		"RTENV_OTHER_NODE="+other.id,
	)
	rep1, log1 := runRuntimeEnvDriver(t, bin1, env, true)
	t.Logf("job 1: Init to the first task's result on a node without the binary: %.0f ms", rep1.FirstRemoteMs)
	if !strings.Contains(log1, "job binary uploaded") {
		t.Errorf("job 1 did not say it uploaded its binary:\n%s", log1)
	}
	checkRuntimeEnvReport(t, rep1, nodes, bin1)

	// A second job, same binary at another path (deleted too): nothing
	// to upload, every node has it cached.
	bin2 := filepath.Join(t.TempDir(), "driver-again")
	copyWithSuffix(t, self, bin2, suffix)
	rep2, log2 := runRuntimeEnvDriver(t, bin2, env, true)
	t.Logf("job 2: Init to the first task's result on a node that cached the binary: %.0f ms", rep2.FirstRemoteMs)
	if strings.Contains(log2, "job binary uploaded") || !strings.Contains(log2, "job binary already in the cluster") {
		t.Errorf("job 2 uploaded the binary job 1 had uploaded:\n%s", log2)
	}
	checkRuntimeEnvReport(t, rep2, nodes, bin2)

	// Every node that ran the job has the binary once, fetched once (the
	// driver's node linked its file), used by both jobs.
	out, err := runGoray(c.bin, c.env, "list", "runtime-envs", "--json", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir))
	if err != nil {
		t.Fatalf("goray list runtime-envs: %v\n%s", err, out)
	}
	var rows []struct {
		NodeID string `json:"node_id"`
		Kind   string `json:"kind"`
		Digest string `json:"digest"`
		Source string `json:"source"`
		Jobs   []string
	}
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "]")+1]), &rows); err != nil {
		t.Fatalf("goray list runtime-envs --json: %v\n%s", err, out)
	}
	for i, n := range nodes {
		var got []string
		for _, r := range rows {
			if r.NodeID == n && r.Kind == "binary" && r.Digest == digest {
				got = append(got, r.Source)
				if len(r.Jobs) != 2 {
					t.Errorf("node %s: the binary is used by jobs %v, want both", n[:8], r.Jobs)
				}
			}
		}
		want := "fetched"
		if i == 0 {
			want = "local"
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("node %s caches binary %s as %v, want once, %s\n%s", n[:8], digest[:12], got, want, out)
		}
	}
	// The table, as an operator reads it.
	table, err := runGoray(c.bin, c.env, "list", "runtime-envs", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir))
	if err != nil || !strings.Contains(table, "NODE") || !strings.Contains(table, digest[:12]) || !strings.Contains(table, "fetched") {
		t.Errorf("goray list runtime-envs: %v\n%s", err, table)
	}
	t.Logf("goray list runtime-envs:\n%s", table)
	for _, r := range rows {
		if r.NodeID == other.id && r.Digest == digest {
			t.Errorf("the node of another platform cached the binary: %+v", r)
		}
	}

	// A third job gives a build for the other platform (a copy of this
	// binary marked riscv64 in its ELF header, which this machine cannot
	// run): the node of that platform fetches that build and tries it.
	riscv := filepath.Join(t.TempDir(), "driver-riscv64")
	riscvDigest := copyWithSuffix(t, self, riscv, suffix, func(b []byte) { binary.LittleEndian.PutUint16(b[18:], uint16(elf.EM_RISCV)) })
	bin3 := filepath.Join(t.TempDir(), "driver-3")
	copyWithSuffix(t, self, bin3, suffix)
	rep3, log3 := runRuntimeEnvDriver(t, bin3, append(slices.Clip(env), "RTENV_OTHER_BUILD="+riscv), false)
	if rep3.MismatchIsEnv || strings.Contains(rep3.Mismatch, "has binaries for") || !strings.Contains(rep3.Mismatch, "exec format error") {
		t.Errorf("a task on the riscv64 node with a riscv64 build: %q; want that build started (and refused by this machine's kernel)\n%s", rep3.Mismatch, log3)
	}
	t.Logf("a task on the riscv64 node with a riscv64 build: %s", rep3.Mismatch)
	out, err = runGoray(c.bin, c.env, "list", "runtime-envs", "--json", "--address", c.addr, "--auth-token-file", tokenFile(c.head.dir))
	if err != nil || !strings.Contains(out, riscvDigest) || !strings.Contains(out, "linux/riscv64") {
		t.Errorf("the riscv64 build is not in the riscv64 node's cache: %v\n%s", err, out)
	}
}

func checkRuntimeEnvReport(t *testing.T, rep rtReport, nodes []string, bin string) {
	t.Helper()
	for i, n := range nodes {
		for _, c := range []struct {
			what string
			ps   []rtProbe
		}{{"task", rep.Plain}, {"task with EnvVars", rep.WithEnv}, {"task with WorkingDir", rep.WithDir}, {"actor", rep.Actors},
			{"actor with EnvVars", rep.ActorsWithEnv}, {"task submitted by a task with EnvVars and Files", rep.Nested}} {
			if len(c.ps) != len(nodes) {
				t.Fatalf("%s: %d results, want %d", c.what, len(c.ps), len(nodes))
			}
			p := c.ps[i]
			if p.Node != n {
				t.Errorf("%s for node %s ran on %s", c.what, n[:8], p.Node)
			}
			if p.Exe == bin {
				t.Errorf("%s on node %s ran the driver's file %s", c.what, n[:8], bin)
			}
			if p.Job != "job" {
				t.Errorf("%s on node %s: RTENV_JOB=%q, want the job's %q", c.what, n[:8], p.Job, "job")
			}
		}
		if got := rep.WithEnv[i].Task; got != "task" {
			t.Errorf("task with EnvVars on node %s: RTENV_TASK=%q, want %q", n[:8], got, "task")
		}
		if got := rep.ActorsWithEnv[i].Task; got != "actor" {
			t.Errorf("actor with EnvVars on node %s: RTENV_TASK=%q, want %q", n[:8], got, "actor")
		}
		// A task's children inherit its runtime env, Files included.
		if got := rep.Nested[i]; got.Task != "parent" || got.Data != "extra file\n" {
			t.Errorf("task submitted by a task with a runtime env on node %s: RTENV_TASK=%q, data.txt %q; want the parent's", n[:8], got.Task, got.Data)
		}
		for _, p := range []rtProbe{rep.Plain[i], rep.WithDir[i], rep.Actors[i]} {
			if p.Task != "" {
				t.Errorf("a task without the variable on node %s sees RTENV_TASK=%q", n[:8], p.Task)
			}
		}
		if d := rep.WithDir[i]; d.Data != "shipped data\n" || d.GitSeen {
			t.Errorf("task with WorkingDir on node %s (in %s): data.txt %q, .git shipped %v", n[:8], d.Dir, d.Data, d.GitSeen)
		}
		if d := rep.Plain[i]; d.Data != "" {
			t.Errorf("task without WorkingDir on node %s found data.txt in %s", n[:8], d.Dir)
		}
	}
	if len(rep.Spread) != 12 {
		t.Errorf("%d spread actors and tasks answered, want 12", len(rep.Spread))
	}
	for _, p := range rep.Spread {
		if !slices.Contains(nodes, p.Node) {
			t.Errorf("an actor or task spread over the cluster ran on node %s, which has no build of the job", p.Node)
		}
	}
	if !rep.MismatchIsEnv || !strings.Contains(rep.Mismatch, "linux/riscv64") || !strings.Contains(rep.Mismatch, "linux/amd64") {
		t.Errorf("task on the node of another platform: %q (ErrRuntimeEnvSetup: %v), want an error naming both platforms", rep.Mismatch, rep.MismatchIsEnv)
	}
}

// runRuntimeEnvDriver runs the driver from bin, deletes bin once the job
// started (if the driver gets that far: waitStart), and returns its report
// and its log.
func runRuntimeEnvDriver(t *testing.T, bin string, env []string, waitStart bool) (rtReport, string) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = env
	var stderr strings.Builder
	var mu sync.Mutex
	cmd.Stderr = lockedWriter{&mu, &stderr}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	log := func() string { mu.Lock(); defer mu.Unlock(); return stderr.String() }
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	var rep rtReport
	started, reported := false, false
	for lines.Scan() {
		l := lines.Text()
		switch {
		case l == "STARTED":
			started = true
			if err := os.Remove(bin); err != nil {
				t.Fatal(err)
			}
			_, _ = io.WriteString(stdin, "go\n")
		case strings.HasPrefix(l, "{"):
			if err := json.Unmarshal([]byte(l), &rep); err != nil {
				t.Fatalf("driver report %q: %v", l, err)
			}
			reported = true
		}
	}
	err = cmd.Wait()
	if started != waitStart || !reported || err != nil {
		t.Fatalf("driver (started %v, reported %v): %v\n%s", started, reported, err, log())
	}
	return rep, log()
}

// copyWithSuffix copies src to dst (executable) with suffix appended and
// returns the copy's SHA-256.
func copyWithSuffix(t *testing.T, src, dst string, suffix []byte, edits ...func([]byte)) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, suffix...)
	for _, e := range edits {
		e(b)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
