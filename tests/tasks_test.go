package tests

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

func TestRemoteCallsReturnTypedResults(t *testing.T) {
	ctx := startCluster(t)
	sum, err := Add.Remote(ctx, 1, 2).Get(ctx)
	if err != nil || sum != 3 {
		t.Fatalf("Add(1,2) = %v, %v; want 3", sum, err)
	}
	p, err := SumPoints.Remote(ctx, []Point{{1, 2}, {3, 4}}).Get(ctx)
	if err != nil || p != (Point{4, 6}) {
		t.Fatalf("SumPoints = %+v, %v", p, err)
	}
	refs := make([]sdk.Ref[int], 200)
	for i := range refs {
		refs[i] = Add.Remote(ctx, i, i)
	}
	vals, err := sdk.GetAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if v != 2*i {
			t.Fatalf("result %d = %d, want %d", i, v, 2*i)
		}
	}
	// Untyped dynamic call by name.
	s, err := sdk.Get(ctx, sdk.AsRef[string](sdk.Call(ctx, "tests.Upper", []any{"abc"})))
	if err != nil || s != "ABC" {
		t.Fatalf("Call(tests.Upper) = %q, %v", s, err)
	}
}

func TestRefArguments(t *testing.T) {
	ctx := startCluster(t)
	// A top-level ref is resolved before the call.
	a := Add.Remote(ctx, 1, 2)
	b := Add.RemoteArgs(ctx, a, sdk.Val(10))
	if v, err := b.Get(ctx); err != nil || v != 13 {
		t.Fatalf("Add(ref(3), 10) = %v, %v", v, err)
	}
	// A put ref is resolved too.
	p, err := sdk.Put(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := Add.RemoteArgs(ctx, p, p).Get(ctx); err != nil || v != 10 {
		t.Fatalf("Add(put 5, put 5) = %v, %v", v, err)
	}
	// A ref nested in a value arrives as a ref.
	h := Holder{Name: "x", Ref: Add.Remote(ctx, 20, 22)}
	if s, err := ReadHolder.Remote(ctx, h).Get(ctx); err != nil || s != "x=42" {
		t.Fatalf("ReadHolder = %q, %v", s, err)
	}
}

func TestNestedChainsOnOneCPU(t *testing.T) {
	ctx := startCluster(t, sdk.NodeCPUs(1))
	n := 1000
	if v := os.Getenv("GORAY_TEST_CHAINS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	refs := make([]sdk.Ref[int], n)
	for i := range refs {
		refs[i] = ChainF.Remote(ctx, i)
	}
	vals, err := sdk.GetAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if v != i+3 {
			t.Fatalf("chain %d = %d, want %d", i, v, i+3)
		}
	}
}

func TestTaskErrors(t *testing.T) {
	ctx := startCluster(t)
	_, err := Fail.Remote(ctx, "sentinel").Get(ctx)
	var te *sdk.TaskError
	if !errors.As(err, &te) || te.Function != "tests.Fail" || te.PID == 0 {
		t.Fatalf("want *TaskError from tests.Fail with a pid, got %#v", err)
	}
	if !errors.Is(err, ErrTeapot) {
		t.Fatalf("errors.Is(err, ErrTeapot) = false for %v", err)
	}
	if !strings.Contains(err.Error(), "brewing: i'm a teapot") {
		t.Fatalf("message lost: %v", err)
	}

	_, err = Fail.Remote(ctx, "type").Get(ctx)
	var qe *QuotaError
	if !errors.As(err, &qe) || qe.Limit != 10 || qe.Used != 11 {
		t.Fatalf("errors.As QuotaError: %v (%#v)", err, qe)
	}

	_, err = Fail.Remote(ctx, "panic").Get(ctx)
	if !errors.As(err, &te) || !strings.Contains(te.Message, "panic") || !strings.Contains(te.Stack, "goroutine") {
		t.Fatalf("panic: want message and stack, got %v / stack %q", err, te.Stack)
	}

	// A nested task's error is wrapped by its caller, and still matches.
	_, err = Outer.Remote(ctx, "sentinel").Get(ctx)
	if !errors.As(err, &te) || te.Function != "tests.Outer" {
		t.Fatalf("outer error: %v", err)
	}
	var inner *sdk.TaskError
	if !errors.As(te.Unwrap(), &inner) || inner.Function != "tests.Fail" {
		t.Fatalf("inner task error missing in chain of %v", err)
	}
	if !errors.Is(err, ErrTeapot) || !strings.Contains(err.Error(), "outer:") {
		t.Fatalf("nested chain lost: %v", err)
	}

	// GetAll fails as soon as one fails, not after the slow one.
	slow := Sleep.Remote(ctx, time.Minute)
	fast := Fail.Remote(ctx, "plain")
	start := time.Now()
	_, err = sdk.GetAll(ctx, []sdk.Ref[int]{sdk.AsRef[int](slow), fast})
	if err == nil || !strings.Contains(err.Error(), "plain failure") {
		t.Fatalf("GetAll: %v", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatalf("GetAll waited for the slow task")
	}
	_ = sdk.Cancel(ctx, slow, sdk.Force())
}

func TestUnknownFunctionAndBadArgument(t *testing.T) {
	ctx := startCluster(t)
	_, err := sdk.Get(ctx, sdk.AsRef[int](sdk.Call(ctx, "tests.NoSuchFunction", nil)))
	if !errors.Is(err, sdk.ErrUnknownFunction) || !strings.Contains(err.Error(), "tests.NoSuchFunction") {
		t.Fatalf("unknown function: %v", err)
	}
	// Add takes ints: a string argument does not decode.
	_, err = sdk.Get(ctx, sdk.AsRef[int](sdk.Call(ctx, "tests.Add", []any{"one", 2})))
	if !errors.Is(err, sdk.ErrArgument) || !strings.Contains(err.Error(), "tests.Add argument 0 (int)") {
		t.Fatalf("bad argument: %v", err)
	}
	_, err = sdk.Get(ctx, sdk.AsRef[int](sdk.Call(ctx, "tests.Add", []any{1})))
	if !errors.Is(err, sdk.ErrArgument) || !strings.Contains(err.Error(), "takes 2 arguments") {
		t.Fatalf("wrong arity: %v", err)
	}
	// Decoding the result into the wrong type is an argument error too.
	_, err = sdk.Get(ctx, sdk.AsRef[[]string](Add.Remote(ctx, 1, 1)))
	if !errors.Is(err, sdk.ErrArgument) {
		t.Fatalf("wrong result type: %v", err)
	}
}

func TestRetries(t *testing.T) {
	ctx := startCluster(t)
	// Worker death is retried (default MaxRetries 3).
	if v, err := CrashUntil.Remote(ctx, 2).Get(ctx); err != nil || v != 2 {
		t.Fatalf("CrashUntil(2) = %v, %v; want success on attempt 2", v, err)
	}
	_, err := CrashUntil.Options(sdk.MaxRetries(1)).Remote(ctx, 5).Get(ctx)
	if !errors.Is(err, sdk.ErrWorkerCrashed) {
		t.Fatalf("want ErrWorkerCrashed, got %v", err)
	}
	// Application errors are retried only when asked.
	if _, err := FlakyUntil.Remote(ctx, 1).Get(ctx); !errors.Is(err, ErrTeapot) {
		t.Fatalf("without RetryExceptions: %v", err)
	}
	if v, err := FlakyUntil.Options(sdk.RetryExceptions(ErrTeapot)).Remote(ctx, 2).Get(ctx); err != nil || v != 2 {
		t.Fatalf("RetryExceptions(ErrTeapot) = %v, %v", v, err)
	}
	if _, err := FlakyUntil.Options(sdk.RetryExceptions(os.ErrNotExist)).Remote(ctx, 1).Get(ctx); !errors.Is(err, ErrTeapot) {
		t.Fatalf("RetryExceptions of another error retried: %v", err)
	}
}

func TestRuntimeContext(t *testing.T) {
	ctx := startCluster(t)
	m, err := Context.Options(sdk.NumCPUs(0.5)).Remote(ctx).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rc := sdk.GetRuntimeContext(ctx)
	if m["job"] != rc.JobID.String() || m["node"] != rc.NodeID.String() {
		t.Fatalf("job/node differ: task %v, driver %+v", m, rc)
	}
	if m["worker"] == rc.WorkerID.String() || m["task"] == "" || m["cpu"] != "0.5" || m["fn"] != "tests.Context" {
		t.Fatalf("task context wrong: %v", m)
	}
	if m["pid"] == itoa(os.Getpid()) {
		t.Fatal("task ran in the driver process")
	}
}

func TestGetTimeoutAndInfeasible(t *testing.T) {
	ctx := startCluster(t)
	ref := Add.Options(sdk.NumGPUs(1)).Remote(ctx, 1, 1)
	_, err := ref.Get(ctx, sdk.Timeout(200*time.Millisecond))
	if !errors.Is(err, sdk.ErrGetTimeout) {
		t.Fatalf("want ErrGetTimeout, got %v", err)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		st, err := sdk.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			for _, d := range n.Infeasible {
				if d.Shape["GPU"] == 1 {
					return nil
				}
			}
		}
		return errorf("infeasible GPU demand not reported")
	})
}

func TestNodeWithoutCPUs(t *testing.T) {
	ctx := startCluster(t, sdk.NodeCPUs(0))
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cpu := st.Nodes[0].Total["CPU"]; cpu != 0 {
		t.Fatalf("node has %v CPUs, want 0", cpu)
	}
	// A task that needs no CPU runs; one that needs a CPU cannot.
	if v, err := Add.Options(sdk.NumCPUs(0)).Remote(ctx, 1, 2).Get(ctx); err != nil || v != 3 {
		t.Fatalf("zero-CPU task: %v, %v", v, err)
	}
	if _, err := Add.Remote(ctx, 1, 2).Get(ctx, sdk.Timeout(100*time.Millisecond)); !errors.Is(err, sdk.ErrGetTimeout) {
		t.Fatalf("CPU task on a CPU-less node: %v", err)
	}
}
