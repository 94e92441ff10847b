package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/goray/goray/sdk"
)

// The driver of the runtime env test: a process of its own, started from
// a copy of this test binary that the test deletes once the job started,
// so that no node can start the job's workers from the driver's path.
// TestMain runs it when envRuntimeEnvDriver is set.

const envRuntimeEnvDriver = "GORAY_TESTS_RUNTIME_ENV_DRIVER"

// rtProbe is what a task or actor saw of its process.
type rtProbe struct {
	Node    string
	Job     string // $RTENV_JOB
	Task    string // $RTENV_TASK
	Exe     string
	Dir     string
	Data    string // data.txt in the working directory, if any
	GitSeen bool   // .git/HEAD in the working directory
}

func probeHere(ctx context.Context) (rtProbe, error) {
	exe, _ := os.Executable()
	dir, _ := os.Getwd()
	p := rtProbe{Node: sdk.GetRuntimeContext(ctx).NodeID.String(), Job: os.Getenv("RTENV_JOB"), Task: os.Getenv("RTENV_TASK"), Exe: exe, Dir: dir}
	if b, err := os.ReadFile("data.txt"); err == nil {
		p.Data = string(b)
	}
	_, err := os.Stat(".git/HEAD")
	p.GitSeen = err == nil
	return p, nil
}

// probeNested runs a probe as a task of its own, from inside a task: it
// inherits the runtime env of the worker it is submitted from.
func probeNested(ctx context.Context) (rtProbe, error) {
	return rtProbeTask.Options(sdk.Scheduling(sdk.NodeAffinity(sdk.GetRuntimeContext(ctx).NodeID, false))).Remote(ctx).Get(ctx)
}

type RTProbe struct{}

func (RTProbe) Where(ctx context.Context) (rtProbe, error) { return probeHere(ctx) }

var (
	rtProbeTask   = sdk.Register0("tests.rtenv.Probe", probeHere)
	rtProbeNested = sdk.Register0("tests.rtenv.ProbeNested", probeNested)
	rtProbeActor  = sdk.RegisterActor0("tests.rtenv.ProbeActor", func(ctx context.Context) (*RTProbe, error) { return &RTProbe{}, nil })
	rtProbeWhere  = sdk.NewMethod0(rtProbeActor, "Where", (*RTProbe).Where)
)

// rtReport is the driver's report to the test, one JSON line.
type rtReport struct {
	// FirstRemoteMs is from the start of Init to the first task's result
	// on another node than the driver's: the binary's upload, its fetch
	// and the worker's start.
	FirstRemoteMs float64
	Plain         []rtProbe // per node: a task with the job's env
	WithEnv       []rtProbe // per node: a task with its own EnvVars
	WithDir       []rtProbe // per node: a task with a WorkingDir
	Actors        []rtProbe // per node: an actor
	ActorsWithEnv []rtProbe // per node: an actor with its own EnvVars
	Nested        []rtProbe // per node: a task submitted by a task with EnvVars and Files
	Spread        []rtProbe // actors and tasks spread over the cluster, the other platform's node too
	Mismatch      string    // the error of a task on the node of another platform
	MismatchIsEnv bool      // errors.Is(err, sdk.ErrRuntimeEnvSetup)
}

func runtimeEnvDriver() int {
	if err := driveRuntimeEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		return 1
	}
	return 0
}

func driveRuntimeEnv() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes := strings.Split(os.Getenv("RTENV_NODES"), ",")
	start := time.Now()
	parts := []sdk.RuntimeEnvPart{sdk.EnvVars{"RTENV_JOB": "job"}}
	build := os.Getenv("RTENV_OTHER_BUILD")
	if build != "" {
		parts = append(parts, sdk.Binaries(build))
	}
	if err := sdk.Init(ctx, sdk.Address(os.Getenv("RTENV_ADDRESS")), sdk.AuthTokenFile(os.Getenv("RTENV_TOKEN_FILE")), sdk.LogToDriver(false),
		sdk.RuntimeEnv(parts...)); err != nil {
		return err
	}
	defer sdk.Shutdown()
	var rep rtReport
	on := func(hex string) sdk.Option {
		id, err := sdk.ParseNodeID(hex)
		if err != nil {
			panic(err)
		}
		return sdk.Scheduling(sdk.NodeAffinity(id, false))
	}
	if build != "" {
		// Only the node of the other platform, which runs that build.
		_, err := rtProbeTask.Options(on(os.Getenv("RTENV_OTHER_NODE"))).Remote(ctx).Get(ctx)
		if err == nil {
			return errors.New("a task ran the other platform's build")
		}
		rep.Mismatch, rep.MismatchIsEnv = err.Error(), errors.Is(err, sdk.ErrRuntimeEnvSetup)
		return json.NewEncoder(os.Stdout).Encode(rep)
	}
	// The first task on a node that never had the binary.
	first, err := rtProbeTask.Options(on(nodes[len(nodes)-1])).Remote(ctx).Get(ctx)
	if err != nil {
		return fmt.Errorf("first remote task: %w", err)
	}
	rep.FirstRemoteMs = float64(time.Since(start).Microseconds()) / 1000
	_ = first
	fmt.Println("STARTED")
	// The test deletes this binary now, and says when.
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	withEnv := sdk.RuntimeEnv(sdk.EnvVars{"RTENV_TASK": "task"})
	withDir := sdk.RuntimeEnv(sdk.WorkingDir(os.Getenv("RTENV_DATA_DIR")))
	nested := sdk.RuntimeEnv(sdk.EnvVars{"RTENV_TASK": "parent"}, sdk.Files(os.Getenv("RTENV_EXTRA_FILE")))
	for _, n := range nodes {
		// The task with a variable first: a worker it leaves idle must
		// not serve the plain task after it.
		for _, c := range []struct {
			out  *[]rtProbe
			fn   *sdk.Func0[rtProbe]
			opts []sdk.TaskOption
		}{
			{&rep.WithEnv, rtProbeTask, []sdk.TaskOption{on(n), withEnv}},
			{&rep.Plain, rtProbeTask, []sdk.TaskOption{on(n)}},
			{&rep.WithDir, rtProbeTask, []sdk.TaskOption{on(n), withDir}},
			{&rep.Nested, rtProbeNested, []sdk.TaskOption{on(n), nested}},
		} {
			p, err := c.fn.Options(c.opts...).Remote(ctx).Get(ctx)
			if err != nil {
				return fmt.Errorf("task on node %s: %w", n[:8], err)
			}
			*c.out = append(*c.out, p)
		}
		for _, c := range []struct {
			out  *[]rtProbe
			opts []sdk.ActorOption
		}{
			{&rep.Actors, []sdk.ActorOption{on(n)}},
			{&rep.ActorsWithEnv, []sdk.ActorOption{on(n), sdk.RuntimeEnv(sdk.EnvVars{"RTENV_TASK": "actor"})}},
		} {
			a, err := rtProbeActor.Options(c.opts...).Remote(ctx)
			if err != nil {
				return fmt.Errorf("actor on node %s: %w", n[:8], err)
			}
			p, err := rtProbeWhere.Remote(ctx, a).Get(ctx)
			if err != nil {
				return fmt.Errorf("actor on node %s: %w", n[:8], err)
			}
			*c.out = append(*c.out, p)
			_ = sdk.Kill(ctx, a, true)
		}
	}
	// Spread over all four nodes: the GCS and the raylets keep the job's
	// actors and tasks off the node it has no build for.
	spread := sdk.Scheduling(sdk.Spread())
	for range 4 {
		a, err := rtProbeActor.Options(spread).Remote(ctx)
		if err != nil {
			return fmt.Errorf("spread actor: %w", err)
		}
		p, err := rtProbeWhere.Remote(ctx, a).Get(ctx)
		if err != nil {
			return fmt.Errorf("spread actor: %w", err)
		}
		rep.Spread = append(rep.Spread, p)
		defer sdk.Kill(ctx, a, true)
	}
	refs := make([]sdk.Ref[rtProbe], 8)
	for i := range refs {
		refs[i] = rtProbeTask.Options(spread).Remote(ctx)
	}
	ps, err := sdk.GetAll(ctx, refs)
	if err != nil {
		return fmt.Errorf("spread tasks: %w", err)
	}
	rep.Spread = append(rep.Spread, ps...)
	if other := os.Getenv("RTENV_OTHER_NODE"); other != "" {
		_, err := rtProbeTask.Options(on(other)).Remote(ctx).Get(ctx)
		if err == nil {
			return errors.New("a task ran on the node of another platform")
		}
		rep.Mismatch, rep.MismatchIsEnv = err.Error(), errors.Is(err, sdk.ErrRuntimeEnvSetup)
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}
