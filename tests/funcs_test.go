package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/goray/goray/sdk"
)

// Functions the tests call remotely, registered at init in driver and
// workers alike.

var ErrTeapot = errors.New("i'm a teapot")

type QuotaError struct {
	Limit int
	Used  int
}

func (e *QuotaError) Error() string { return fmt.Sprintf("quota exceeded: %d of %d", e.Used, e.Limit) }

func init() {
	sdk.RegisterError(ErrTeapot)
	sdk.RegisterErrorType[*QuotaError]()
}

type Point struct {
	X, Y int
}

type Holder struct {
	Name string
	Ref  sdk.Ref[int]
}

var (
	Add = sdk.Register2("tests.Add", func(ctx context.Context, a, b int) (int, error) { return a + b, nil })

	Echo = sdk.Register1("tests.Echo", func(ctx context.Context, s string) (string, error) {
		fmt.Println("echo:", s)
		fmt.Fprintln(os.Stderr, "echo-err:", s)
		return s, nil
	})

	SumPoints = sdk.Register1("tests.SumPoints", func(ctx context.Context, ps []Point) (Point, error) {
		var out Point
		for _, p := range ps {
			out.X += p.X
			out.Y += p.Y
		}
		return out, nil
	})

	// ReadHolder gets a ref nested in its argument: it arrives unresolved.
	ReadHolder = sdk.Register1("tests.ReadHolder", func(ctx context.Context, h Holder) (string, error) {
		v, err := h.Ref.Get(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s=%d", h.Name, v), nil
	})

	// KVRead reads a key of namespace kvtest.
	KVRead = sdk.Register1("tests.KVRead", func(ctx context.Context, key string) (string, error) {
		v, _, err := sdk.KVGet(ctx, "kvtest", key)
		return string(v), err
	})
	Fail = sdk.Register1("tests.Fail", func(ctx context.Context, how string) (int, error) {
		switch how {
		case "sentinel":
			return 0, fmt.Errorf("brewing: %w", ErrTeapot)
		case "type":
			return 0, &QuotaError{Limit: 10, Used: 11}
		case "panic":
			var m map[string]int
			m["boom"] = 1
		case "plain":
			return 0, errors.New("plain failure")
		}
		return 1, nil
	})

	// Outer calls Fail remotely and wraps its error.
	Outer = sdk.Register1("tests.Outer", func(ctx context.Context, how string) (int, error) {
		v, err := Fail.Remote(ctx, how).Get(ctx)
		if err != nil {
			return 0, fmt.Errorf("outer: %w", err)
		}
		return v, nil
	})

	Sleep = sdk.Register1("tests.Sleep", func(ctx context.Context, d time.Duration) (string, error) {
		select {
		case <-time.After(d):
			return "slept", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	})

	// SleepIgnoringCancel sleeps without watching its context.
	SleepIgnoringCancel = sdk.Register1("tests.SleepIgnoringCancel", func(ctx context.Context, d time.Duration) (string, error) {
		time.Sleep(d)
		return "slept", nil
	})

	// CrashUntil exits the worker process on attempts below n.
	CrashUntil = sdk.Register1("tests.CrashUntil", func(ctx context.Context, n int) (int, error) {
		rc := sdk.GetRuntimeContext(ctx)
		if rc.Attempt < n {
			os.Exit(3)
		}
		return rc.Attempt, nil
	})

	// FlakyUntil fails with ErrTeapot on attempts below n.
	FlakyUntil = sdk.Register1("tests.FlakyUntil", func(ctx context.Context, n int) (int, error) {
		rc := sdk.GetRuntimeContext(ctx)
		if rc.Attempt < n {
			return 0, ErrTeapot
		}
		return rc.Attempt, nil
	})

	ChainH = sdk.Register1("tests.ChainH", func(ctx context.Context, x int) (int, error) { return x + 1, nil })
	ChainG = sdk.Register1("tests.ChainG", func(ctx context.Context, x int) (int, error) {
		v, err := ChainH.Remote(ctx, x).Get(ctx)
		return v + 1, err
	})
	ChainF = sdk.Register1("tests.ChainF", func(ctx context.Context, x int) (int, error) {
		v, err := ChainG.Remote(ctx, x).Get(ctx)
		return v + 1, err
	})

	Context = sdk.Register0("tests.Context", func(ctx context.Context) (map[string]string, error) {
		rc := sdk.GetRuntimeContext(ctx)
		return map[string]string{
			"job":    rc.JobID.String(),
			"task":   rc.TaskID.String(),
			"node":   rc.NodeID.String(),
			"worker": rc.WorkerID.String(),
			"cpu":    fmt.Sprint(rc.Resources["CPU"]),
			"fn":     rc.Function,
			"pid":    fmt.Sprint(os.Getpid()),
		}, nil
	})

	MakeBytes = sdk.Register2("tests.MakeBytes", func(ctx context.Context, n int, fill byte) ([]byte, error) {
		b := make([]byte, n)
		for i := range b {
			b[i] = fill + byte(i%7)
		}
		return b, nil
	})

	SumBytes = sdk.Register1("tests.SumBytes", func(ctx context.Context, b []byte) (int, error) {
		s := 0
		for _, x := range b {
			s += int(x)
		}
		return s, nil
	})

	// SpawnSleepers starts n Sleep children and waits for them.
	SpawnSleepers = sdk.Register2("tests.SpawnSleepers", func(ctx context.Context, n int, d time.Duration) (int, error) {
		refs := make([]sdk.Ref[string], n)
		for i := range refs {
			refs[i] = Sleep.Options(sdk.NumCPUs(0.5)).Remote(ctx, d)
		}
		_, err := sdk.GetAll(ctx, refs)
		return n, err
	})

	Upper = sdk.Register1("tests.Upper", func(ctx context.Context, s string) (string, error) { return strings.ToUpper(s), nil })
)

// driverOnly is registered in driver processes when GORAY_TEST_DRIVER_ONLY
// is set, so that driver and workers register different functions: the
// way a worker binary that differs from its driver's looks.
func init() {
	if os.Getenv("GORAY_TEST_DRIVER_ONLY") == "1" && !sdk.IsWorker() {
		sdk.Register0("tests.DriverOnly", func(ctx context.Context) (int, error) { return 1, nil })
	}
}

var Pid = sdk.Register1("tests.Pid", func(ctx context.Context, d time.Duration) (int, error) {
	time.Sleep(d)
	return os.Getpid(), nil
})

// Scale takes and returns a protobuf message (encoded as protobuf): it
// multiplies the message's numbers by k.
var Scale = sdk.Register2("tests.Scale", func(ctx context.Context, r *structpb.Struct, k float64) (*structpb.Struct, error) {
	out := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for name, v := range r.GetFields() {
		if n, ok := v.GetKind().(*structpb.Value_NumberValue); ok {
			v = structpb.NewNumberValue(n.NumberValue * k)
		}
		out.Fields[name] = v
	}
	return out, nil
})
