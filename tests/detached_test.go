package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// detachedDriverEnv makes TestDetachedDriverHelper act as a driver of
// TestDetachedActorOutlivesDriver: "create" or "find".
const detachedDriverEnv = "GORAY_DETACHED_TEST_DRIVER"

// detachedKeeperPIDEnv tells the "find" driver the pid the "create"
// driver saw for the detached actor.
const detachedKeeperPIDEnv = "GORAY_DETACHED_TEST_KEEPER_PID"

// detachedDriverMarker starts the line a driver prints with its results.
const detachedDriverMarker = "DETACHED-DRIVER-OK"

// TestDetachedDriverHelper is not a test on its own:
// TestDetachedActorOutlivesDriver runs the test binary again with only this
// test selected, as a driver program joining its `goray start` cluster.
func TestDetachedDriverHelper(t *testing.T) {
	mode := os.Getenv(detachedDriverEnv)
	if mode == "" {
		t.Skip("runs only as a driver process started by TestDetachedActorOutlivesDriver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sdk.Init(ctx); err != nil {
		t.Fatalf("Init with %s=%s: %v", sdk.EnvAddress, os.Getenv(sdk.EnvAddress), err)
	}
	defer sdk.Shutdown()
	switch mode {
	case "create":
		keeper, err := CounterActor.Options(sdk.Name("keeper"), sdk.Namespace("ns"), sdk.Detached(), sdk.MaxRestarts(1)).Remote(ctx, 5)
		if err != nil {
			t.Fatalf("create detached actor: %v", err)
		}
		if n, err := CounterInc.Remote(ctx, keeper, 1).Get(ctx); err != nil || n != 6 {
			t.Fatalf("keeper Inc(1) = %v, %v; want 6", n, err)
		}
		keeperPID, err := CounterPid.Remote(ctx, keeper).Get(ctx)
		if err != nil {
			t.Fatalf("keeper Pid: %v", err)
		}
		temp, err := CounterActor.Options(sdk.Name("temp"), sdk.Namespace("ns")).Remote(ctx, 0)
		if err != nil {
			t.Fatalf("create non-detached actor: %v", err)
		}
		tempPID, err := CounterPid.Remote(ctx, temp).Get(ctx)
		if err != nil {
			t.Fatalf("temp Pid: %v", err)
		}
		// A task, so the job has a task worker: only the raylet's handling
		// of the driver's exit kills it.
		info, err := Context.Remote(ctx).Get(ctx)
		if err != nil {
			t.Fatalf("Context task: %v", err)
		}
		fmt.Printf("%s keeper_pid=%d temp_pid=%d task_pid=%s\n", detachedDriverMarker, keeperPID, tempPID, info["pid"])
	case "find":
		oldPID, err := strconv.Atoi(os.Getenv(detachedKeeperPIDEnv))
		if err != nil {
			t.Fatalf("%s: %v", detachedKeeperPIDEnv, err)
		}
		keeper, err := sdk.GetActor[Counter](ctx, "keeper", "ns")
		if err != nil {
			t.Fatalf("GetActor(keeper) after its driver left: %v", err)
		}
		if pid, err := CounterPid.Remote(ctx, keeper).Get(ctx); err != nil || pid != oldPID {
			t.Fatalf("keeper runs in pid %v (%v); want %d, the process driver 1 saw", pid, err, oldPID)
		}
		if n, err := CounterGet.Remote(ctx, keeper).Get(ctx); err != nil || n != 6 {
			t.Fatalf("keeper Get = %v, %v; want 6 (driver 1's state)", n, err)
		}
		if n, err := CounterInc.Remote(ctx, keeper, 1).Get(ctx); err != nil || n != 7 {
			t.Fatalf("keeper Inc(1) = %v, %v; want 7", n, err)
		}
		// The non-detached actor died with its job (the GCS hears of the
		// job's end asynchronously).
		checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			if _, err := sdk.GetActor[Counter](ctx, "temp", "ns"); err == nil {
				return fmt.Errorf("GetActor(temp) still finds the non-detached actor of a finished job")
			}
			return nil
		})

		// The keeper's process dies: it restarts (MaxRestarts 1) in a new
		// process of driver 1's job, with its constructor's state.
		if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
			t.Fatalf("kill keeper pid %d: %v", oldPID, err)
		}
		var newPID int
		checkFor(t, time.Minute, 50*time.Millisecond, func() error {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			defer ccancel()
			pid, err := CounterPid.Remote(cctx, keeper).Get(cctx)
			if err != nil {
				return fmt.Errorf("keeper Pid after the kill: %w", err)
			}
			if pid == oldPID {
				return fmt.Errorf("keeper still reports the killed pid %d", pid)
			}
			newPID = pid
			return nil
		})
		if n, err := CounterGet.Remote(ctx, keeper).Get(ctx); err != nil || n != 5 {
			t.Fatalf("restarted keeper Get = %v, %v; want 5 (fresh state)", n, err)
		}
		if restarted, err := CounterRestarted.Remote(ctx, keeper).Get(ctx); err != nil || !restarted {
			t.Fatalf("restarted keeper: WasRestarted %v, %v; want true", restarted, err)
		}
		fmt.Printf("%s keeper_pid=%d\n", detachedDriverMarker, newPID)
	default:
		t.Fatalf("%s=%q: want create or find", detachedDriverEnv, mode)
	}
}

// TestDetachedActorOutlivesDriver checks Ray's detached actors on a `goray
// start` cluster: one outlives the driver that created it (its process and
// state kept), a later driver finds it by name, and after its process dies
// it restarts although its driver is gone; a non-detached actor of the
// same driver dies with its job. goray stop leaves nothing behind.
func TestDetachedActorOutlivesDriver(t *testing.T) {
	bin := buildGoray(t)
	tmp := t.TempDir() // TMPDIR of every subprocess: its own current_cluster file
	session := t.TempDir()
	env := cliEnv(tmp)

	var (
		daemonPID int
		segment   string
		stopped   bool
		drivers   []*detachedDriver
	)
	t.Cleanup(func() {
		for _, d := range drivers {
			d.kill()
		}
		reapCluster(t, bin, env, session, stopped, daemonPID, segment)
	})

	out, err := runGoray(bin, env, "start", "--head", "--num-cpus", "2", "--port", "0",
		"--session-dir", session, "--object-store-memory", "256MiB")
	if err != nil {
		t.Fatalf("goray start: %v\n%s", err, out)
	}
	addr := field(out, "Address:")
	daemonPID, _ = strconv.Atoi(field(out, "Daemon pid:"))
	if !strings.HasPrefix(addr, "nats://") || daemonPID <= 0 {
		t.Fatalf("goray start printed no address or daemon pid:\n%s", out)
	}
	segment = storePath(daemonPID, clusterNode(t, addr, session).ID)
	if _, err := os.Stat(segment); err != nil {
		t.Fatalf("the node's object store segment: %v", err)
	}
	onlyWorkers := func(want ...int) func() error {
		return func() error {
			got := workerPIDs(session)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				return fmt.Errorf("worker processes %v; want %v", got, want)
			}
			return nil
		}
	}

	// Driver 1 creates the detached keeper and the non-detached temp, then
	// exits.
	d1 := startDetachedDriver(t, env, addr, "create")
	drivers = append(drivers, d1)
	r1 := d1.result(t)
	if err := d1.wait(time.Minute); err != nil {
		t.Fatalf("driver 1: %v\n%s", err, d1.out.String())
	}
	keeperPID, tempPID, taskPID := r1["keeper_pid"], r1["temp_pid"], r1["task_pid"]
	if keeperPID <= 0 || tempPID <= 0 || keeperPID == tempPID || taskPID <= 0 || taskPID == keeperPID || taskPID == tempPID {
		t.Fatalf("driver 1 result %v; want the pids of two actors and of a task worker", r1)
	}
	// The job's task workers and temp's worker end with it; the keeper's
	// lives on (the raylet stops the task worker when it sees the driver
	// leave, so the keeper outlived that).
	checkFor(t, 30*time.Second, 20*time.Millisecond, onlyWorkers(keeperPID))

	// Driver 2 finds the keeper, sees temp gone, kills the keeper's
	// process and sees it restarted.
	d2 := startDetachedDriver(t, env, addr, "find", detachedKeeperPIDEnv+"="+strconv.Itoa(keeperPID))
	drivers = append(drivers, d2)
	r2 := d2.result(t)
	if err := d2.wait(time.Minute); err != nil {
		t.Fatalf("driver 2: %v\n%s", err, d2.out.String())
	}
	restartedPID := r2["keeper_pid"]
	if restartedPID <= 0 || restartedPID == keeperPID {
		t.Fatalf("driver 2 result %v; want the restarted keeper's new pid", r2)
	}
	// The restarted keeper outlives driver 2 as well; driver 2's workers
	// end with it.
	checkFor(t, 30*time.Second, 20*time.Millisecond, onlyWorkers(restartedPID))

	out, err = runGoray(bin, env, "stop")
	stopped = err == nil
	if err != nil {
		t.Fatalf("goray stop: %v\n%s", err, out)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if processAlive(daemonPID) {
			return fmt.Errorf("daemon %d still alive after goray stop", daemonPID)
		}
		if pids := workerPIDs(session); len(pids) > 0 {
			return fmt.Errorf("worker processes left behind: %v", pids)
		}
		if _, err := os.Stat(segment); err == nil {
			return fmt.Errorf("shm segment %s left behind", segment)
		}
		return nil
	})
}

// detachedDriver is the test binary re-run as TestDetachedDriverHelper.
type detachedDriver struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func startDetachedDriver(t *testing.T, env []string, addr, mode string, extraEnv ...string) *detachedDriver {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestDetachedDriverHelper$", "-test.v", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(append(append([]string{}, env...), sdk.EnvAddress+"="+addr, detachedDriverEnv+"="+mode), extraEnv...)
	d := &detachedDriver{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start driver: %v", err)
	}
	go func() { d.done <- cmd.Wait() }()
	return d
}

// result waits for the driver's result line and returns its key=value
// integers.
func (d *detachedDriver) result(t *testing.T) map[string]int {
	t.Helper()
	var r map[string]int
	checkFor(t, 2*time.Minute, 20*time.Millisecond, func() error {
		for _, line := range strings.Split(d.out.String(), "\n") {
			if rest, ok := strings.CutPrefix(line, detachedDriverMarker+" "); ok {
				r = map[string]int{}
				for _, f := range strings.Fields(rest) {
					k, v, _ := strings.Cut(f, "=")
					r[k], _ = strconv.Atoi(v)
				}
				return nil
			}
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("driver exited (%v) without a result:\n%s", err, d.out.String())
		default:
		}
		return fmt.Errorf("no %s line from the driver yet", detachedDriverMarker)
	})
	return r
}

// wait waits up to timeout for the driver to exit and returns how it
// exited, or an error if it still runs.
func (d *detachedDriver) wait(timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-timer.C:
		return fmt.Errorf("driver still running after %v", timeout)
	}
}

// kill ends the driver if it still runs and waits for it.
func (d *detachedDriver) kill() {
	select {
	case err := <-d.done:
		d.done <- err
		return
	default:
	}
	_ = d.cmd.Process.Kill()
	_ = d.wait(30 * time.Second)
}
