package objstore

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const holderNode = "0123abcd"

// shmTestDir is a directory of its own in /dev/shm, so that sweeps in the
// tests see only the tests' files, on the file system segments live on.
func shmTestDir(t *testing.T) string {
	t.Helper()
	dir := segmentPath(t) + "-dir"
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}

// holder is another process holding a segment in dir, as a node's raylet
// does.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	path  string
}

func startHolder(t *testing.T, dir string) *holder {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+dir)
	cmd.Stderr = os.Stderr
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
	h := &holder{cmd: cmd, stdin: stdin, path: filepath.Join(dir, SegmentName(cmd.Process.Pid, holderNode))}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("holder process: %q, %v", line, err)
	}
	return h
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// A node killed with SIGKILL leaves its segment; the next sweep removes
// it, and only it: the segment of a live process stays.
func TestRemoveStaleSegmentsOfKilledProcess(t *testing.T) {
	dir := shmTestDir(t)
	live := startHolder(t, dir)
	doomed := startHolder(t, dir)
	ours, err := CreateSegment(filepath.Join(dir, SegmentName(os.Getpid(), "feedbeef")), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Remove()
	defer ours.Close()

	if removed, err := RemoveStaleSegments(dir); err != nil || len(removed) != 0 {
		t.Fatalf("sweep with every creator alive removed %v (%v)", removed, err)
	}
	if err := doomed.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = doomed.cmd.Wait()
	if !exists(doomed.path) {
		t.Fatal("the killed process removed its segment: the test proves nothing")
	}
	removed, err := RemoveStaleSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].Path != doomed.path || removed[0].PID != doomed.cmd.Process.Pid || removed[0].Reason != "process gone" || removed[0].Size != 1<<20 {
		t.Fatalf("sweep removed %+v, want only %s, its creator gone", removed, doomed.path)
	}
	if exists(doomed.path) {
		t.Error("stale segment still there")
	}
	for _, p := range []string{live.path, ours.Path()} {
		if !exists(p) {
			t.Errorf("live segment %s removed", p)
		}
	}
	// The live holder exits cleanly and removes its own.
	live.stdin.Close()
	if err := live.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if exists(live.path) {
		t.Error("holder did not remove its segment")
	}
}

// A killed creator that its parent has not reaped yet is a zombie: gone
// too, though its pid still exists.
func TestRemoveStaleSegmentsOfZombie(t *testing.T) {
	dir := shmTestDir(t)
	h := startHolder(t, dir)
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// The process shows as a zombie as soon as its main thread is done,
	// and lets go of its files when the last thread is: sweep until then.
	pid := h.cmd.Process.Pid
	for {
		state, _, ok := procStart(pid)
		if !ok || state != "Z" {
			time.Sleep(5 * time.Millisecond) // polling a condition, not timing
			continue
		}
		removed, err := RemoveStaleSegments(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(removed) == 0 {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if len(removed) != 1 || removed[0].Reason != "process is a zombie" {
			t.Fatalf("sweep removed %+v, want the zombie's segment", removed)
		}
		return
	}
}

// Files that are not a dead creator's segment are left alone: other names,
// other kinds of file, and a file whose creator may still be starting (its
// pid alive, started before the file was made, no lock yet).
func TestRemoveStaleSegmentsLeavesOthers(t *testing.T) {
	dir := shmTestDir(t)
	dead := strconv.Itoa(deadPID(t))
	keep := []string{
		"goray-" + dead + "-0123abc",     // short tag
		"goray-" + dead + "-0123ABCD",    // upper case
		"goray-" + dead + "-sdkfuzz0123", // test segments
		"goray-objstore-test-" + dead + "-00",
		"goray-0-0123abcd",
		"xgoray-" + dead + "-0123abcd",
		SegmentName(os.Getpid(), "0123abcd"), // alive, older than the file, unlocked
	}
	for _, name := range keep {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := SegmentName(deadPID(t), "0badc0de")
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
	stale := SegmentName(deadPID(t), "5a1e5a1e")
	if err := os.WriteFile(filepath.Join(dir, stale), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	removed, err := RemoveStaleSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || filepath.Base(removed[0].Path) != stale {
		t.Fatalf("sweep removed %+v, want only %s", removed, stale)
	}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	for _, name := range append(keep, link, "target") {
		if !slices.Contains(left, name) {
			t.Errorf("%s was removed", name)
		}
	}
}

// A pid whose process started after the file was last changed did not
// create it: the creator died and the pid went to another process.
func TestCreatorGonePIDReuse(t *testing.T) {
	state, start, ok := procStart(os.Getpid())
	if !ok || state == "Z" || start.IsZero() || start.After(time.Now()) {
		t.Fatalf("procStart(self) = %q, %v, %v", state, start, ok)
	}
	if reason, gone := creatorGone(os.Getpid(), time.Now()); gone {
		t.Errorf("this process, for a file made now: gone (%s)", reason)
	}
	if reason, gone := creatorGone(os.Getpid(), start.Add(-time.Minute)); !gone || reason != "pid reused" {
		t.Errorf("this process, for a file made a minute before it started: %q, %v; want pid reused", reason, gone)
	}
	if reason, gone := creatorGone(deadPID(t), time.Now()); !gone || !strings.Contains(reason, "gone") {
		t.Errorf("a reaped process: %q, %v", reason, gone)
	}
}
