package tests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// End-to-end tests of the sdk's API as rebuilt over internal/core: typed
// refs in Wait and Cancel, refs as actor constructor arguments, streams and
// functions of every arity, actor name checks, the session directory check,
// and options shared by tasks and actors.

var (
	// Describe6 takes six arguments of six types.
	Describe6 = sdk.Register6("tests.Describe6", func(ctx context.Context, a int, b string, c float64, d bool, e []int, f map[string]int) (string, error) {
		keys := make([]string, 0, len(f))
		for k := range f {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, fmt.Sprintf("%s=%d", k, f[k]))
		}
		return fmt.Sprintf("%d|%s|%g|%t|%v|%s", a, b, c, d, e, strings.Join(kv, ",")), nil
	})

	// Countdown yields 5, 4, 3, 2, 1.
	Countdown = sdk.RegisterStream0("tests.Countdown", func(ctx context.Context, yield func(int) error) error {
		for i := 5; i > 0; i-- {
			if err := yield(i); err != nil {
				return err
			}
		}
		return nil
	})

	// Repeat yields s n times, numbered.
	Repeat = sdk.RegisterStream2("tests.Repeat", func(ctx context.Context, s string, n int, yield func(string) error) error {
		if n < 0 {
			return fmt.Errorf("repeat %d times: %w", n, ErrTeapot)
		}
		for i := 0; i < n; i++ {
			if err := yield(fmt.Sprintf("%s#%d", s, i)); err != nil {
				return err
			}
		}
		return nil
	})

	// CounterStep adds by to the counter n times, yielding each new value.
	CounterStep = sdk.NewStreamMethod2(CounterActor, "Step", func(c *Counter, ctx context.Context, n, by int, yield func(int) error) error {
		for i := 0; i < n; i++ {
			c.n += by
			if err := yield(c.n); err != nil {
				return err
			}
		}
		return nil
	})
)

// Catalog is an actor built from a name and a large byte slice, both of
// which may come as refs.
type Catalog struct {
	name string
	data []byte
}

var (
	CatalogActor = sdk.RegisterActor2("tests.Catalog", func(ctx context.Context, name string, data []byte) (*Catalog, error) {
		return &Catalog{name: name, data: data}, nil
	})
	// CatalogDescribe says the name, the length and the byte sum of the data.
	CatalogDescribe = sdk.NewMethod0(CatalogActor, "Describe", func(c *Catalog, ctx context.Context) (string, error) {
		s := 0
		for _, b := range c.data {
			s += int(b)
		}
		return fmt.Sprintf("%s:%d:%d", c.name, len(c.data), s), nil
	})
)

// TestTypedRefsInWaitAndCancel: typed refs go to Wait, Cancel, GetView and
// AsRef as they are, and Wait gives typed refs back.
func TestTypedRefsInWaitAndCancel(t *testing.T) {
	ctx := startCluster(t, sdk.NodeCPUs(4))
	slow := Sleep.Remote(ctx, time.Minute)
	fast := Sleep.Remote(ctx, 0)
	refs := []sdk.Ref[string]{slow, fast}
	ready, notReady, err := sdk.Wait(ctx, refs, 1, sdk.Timeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(ready) != 1 || ready[0].ID() != fast.ID() || len(notReady) != 1 || notReady[0].ID() != slow.ID() {
		t.Fatalf("Wait = %v / %v; want [fast] / [slow]", ready, notReady)
	}
	// What Wait returns is typed: its values read without a conversion.
	var got string
	if got, err = ready[0].Get(ctx); err != nil || got != "slept" {
		t.Fatalf("Get of the ready ref = %q, %v", got, err)
	}
	// Cancel takes the typed ref Wait returned.
	if err := sdk.Cancel(ctx, notReady[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Get(ctx, sdk.Timeout(20*time.Second)); !errors.Is(err, sdk.ErrTaskCancelled) {
		t.Fatalf("Get of the cancelled task: %v; want ErrTaskCancelled", err)
	}
	// A cancelled task is ready (failed) for Wait.
	ready, notReady, err = sdk.Wait(ctx, []sdk.Ref[string]{slow}, 1, sdk.Timeout(20*time.Second))
	if err != nil || len(ready) != 1 || len(notReady) != 0 {
		t.Fatalf("Wait of the cancelled ref = %v / %v, %v", ready, notReady, err)
	}
	// Typed refs: duplicates are refused, Force kills, a nil ref is an
	// argument error.
	if _, _, err := sdk.Wait(ctx, []sdk.Ref[string]{fast, fast}, 1); !errors.Is(err, sdk.ErrDuplicateRef) {
		t.Fatalf("Wait of a typed ref twice: %v; want ErrDuplicateRef", err)
	}
	stubborn := SleepIgnoringCancel.Remote(ctx, time.Minute)
	waitRunning(t, ctx, 1)
	if err := sdk.Cancel(ctx, stubborn, sdk.Force()); err != nil {
		t.Fatal(err)
	}
	if _, err := stubborn.Get(ctx, sdk.Timeout(20*time.Second)); !errors.Is(err, sdk.ErrTaskCancelled) {
		t.Fatalf("force-cancelled typed ref: %v", err)
	}
	if err := sdk.Cancel(ctx, sdk.Ref[int]{}); !errors.Is(err, sdk.ErrArgument) {
		t.Fatalf("Cancel of a nil typed ref: %v; want ErrArgument", err)
	}
	// Mixed types wait together as ObjectRefs.
	n := Add.Remote(ctx, 1, 2)
	mixed := []sdk.ObjectRef{fast.ObjectRef, n.ObjectRef}
	if ready, _, err := sdk.Wait(ctx, mixed, 2, sdk.Timeout(30*time.Second)); err != nil || len(ready) != 2 {
		t.Fatalf("Wait of ObjectRefs = %v, %v", ready, err)
	}
	if v, err := sdk.AsRef[int](n).Get(ctx); err != nil || v != 3 {
		t.Fatalf("AsRef of a typed ref = %v, %v", v, err)
	}
	// GetView of a typed ref, in shared memory.
	big := MakeBytes.Remote(ctx, 1<<20, 1)
	view, err := sdk.GetView(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	defer view.Release()
	if b := view.Bytes(); len(b) != 1<<20 || b[10] != 1+byte(10%7) || view.Encoding() != "raw" {
		t.Fatalf("view: %d bytes, encoding %q; want 1 MiB raw", len(b), view.Encoding())
	}
}

// TestActorConstructorRefArgs: RemoteArgs gives an actor's constructor the
// values of refs (a put, a task's result, one still pending, one in shared
// memory); a failed one fails the creation with its error.
func TestActorConstructorRefArgs(t *testing.T) {
	ctx := startCluster(t)
	put, err := sdk.Put(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		arg  sdk.Arg[int]
		want int
	}{
		{"put", put, 100},
		{"task result", Add.Remote(ctx, 20, 22), 42},
		{"value", sdk.Val(7), 7},
	} {
		c, err := CounterActor.RemoteArgs(ctx, tc.arg)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if v, err := CounterInc.Remote(ctx, c, 1).Get(ctx); err != nil || v != tc.want+1 {
			t.Errorf("%s: Inc(1) = %v, %v; want %d", tc.name, v, err, tc.want+1)
		}
	}

	// A ref still pending: the actor is created once the value is ready.
	pending := Pid.Remote(ctx, 500*time.Millisecond)
	c, err := CounterActor.RemoteArgs(ctx, pending)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := pending.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := CounterGet.Remote(ctx, c).Get(ctx); err != nil || v != pid {
		t.Fatalf("counter started from a pending ref = %v, %v; want %d", v, err, pid)
	}

	// Two arguments, a value and a 4 MiB object in shared memory.
	data := pattern(4<<20, 3)
	want := 0
	for _, b := range data {
		want += int(b)
	}
	blob, err := sdk.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := CatalogActor.RemoteArgs(ctx, sdk.Val("books"), blob)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := CatalogDescribe.Remote(ctx, cat).Get(ctx); err != nil || got != fmt.Sprintf("books:%d:%d", 4<<20, want) {
		t.Fatalf("Describe = %q, %v; want books, 4 MiB, sum %d", got, err, want)
	}
	// Both as refs, one a task's result.
	name := Upper.Remote(ctx, "maps")
	cat2, err := CatalogActor.RemoteArgs(ctx, name, MakeBytes.Remote(ctx, 1000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := CatalogDescribe.Remote(ctx, cat2).Get(ctx); err != nil || !strings.HasPrefix(got, "MAPS:1000:") {
		t.Fatalf("Describe = %q, %v; want MAPS and 1000 bytes", got, err)
	}

	// A failed argument: the actor is never created; RemoteArgs returns
	// the argument's error (refs are resolved before the GCS hears of
	// the actor).
	bad, err := CounterActor.RemoteArgs(ctx, Fail.Remote(ctx, "sentinel"))
	if !errors.Is(err, ErrTeapot) || !bad.IsNil() {
		t.Fatalf("actor whose constructor argument failed: %v, %v; want no actor and the argument's error", bad, err)
	}
	var te *sdk.TaskError
	if !errors.As(err, &te) || te.Function != "tests.Fail" {
		t.Fatalf("the error of a failed constructor argument: %v; want the TaskError of tests.Fail", err)
	}
}

// TestStreamArities: generators of no and two arguments, and a generator
// method of two.
func TestStreamArities(t *testing.T) {
	ctx := startCluster(t)
	var got []int
	for v, err := range Countdown.Remote(ctx).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if !slices.Equal(got, []int{5, 4, 3, 2, 1}) {
		t.Fatalf("Countdown = %v", got)
	}

	var words []string
	for v, err := range Repeat.Remote(ctx, "ho", 3).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		words = append(words, v)
	}
	if !slices.Equal(words, []string{"ho#0", "ho#1", "ho#2"}) {
		t.Fatalf("Repeat(ho, 3) = %v", words)
	}
	// Arguments as refs.
	n, err := sdk.Put(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	s := Repeat.RemoteArgs(ctx, Upper.Remote(ctx, "hey"), n)
	words = nil
	for {
		r, err := s.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		w, err := r.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		words = append(words, w)
	}
	if !slices.Equal(words, []string{"HEY#0", "HEY#1"}) {
		t.Fatalf("Repeat(ref HEY, ref 2) = %v", words)
	}
	// The generator's error comes after its items (none here).
	var errs []error
	for _, err := range Repeat.Remote(ctx, "x", -1).All(ctx) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrTeapot) {
		t.Fatalf("Repeat(x, -1) ended with %v; want ErrTeapot", errs)
	}

	// The method streams the actor's state, calls in order.
	c, err := CounterActor.Remote(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for v, err := range CounterStep.Remote(ctx, c, 3, 5).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if !slices.Equal(got, []int{15, 20, 25}) {
		t.Fatalf("Step(3, 5) = %v", got)
	}
	by, err := sdk.Put(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for v, err := range CounterStep.RemoteArgs(ctx, c, sdk.Val(2), by).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if !slices.Equal(got, []int{24, 23}) {
		t.Fatalf("Step(2, ref -1) = %v", got)
	}
	if v, err := CounterGet.Remote(ctx, c).Get(ctx); err != nil || v != 23 {
		t.Fatalf("Get after the streams = %v, %v; want 23", v, err)
	}
}

// TestRegister6: a function of six arguments, called with values and with
// refs among them.
func TestRegister6(t *testing.T) {
	ctx := startCluster(t)
	const want = "7|seven|7.5|true|[1 2 3]|a=1,b=2"
	got, err := Describe6.Remote(ctx, 7, "seven", 7.5, true, []int{1, 2, 3}, map[string]int{"b": 2, "a": 1}).Get(ctx)
	if err != nil || got != want {
		t.Fatalf("Describe6 = %q, %v; want %q", got, err, want)
	}
	seven := Add.Remote(ctx, 3, 4)
	list, err := sdk.Put(ctx, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	got, err = Describe6.RemoteArgs(ctx, seven, sdk.Val("seven"), sdk.Val(7.5), sdk.Val(true), list, sdk.Val(map[string]int{"a": 1, "b": 2})).Get(ctx)
	if err != nil || got != want {
		t.Fatalf("Describe6 with refs = %q, %v; want %q", got, err, want)
	}
	// A failed argument fails the call with its error.
	_, err = Describe6.RemoteArgs(ctx, Fail.Remote(ctx, "type"), sdk.Val(""), sdk.Val(0.0), sdk.Val(false), sdk.Val([]int(nil)), sdk.Val(map[string]int(nil))).Get(ctx)
	var qe *QuotaError
	if !errors.As(err, &qe) || qe.Used != 11 {
		t.Fatalf("Describe6 of a failed argument: %v; want the argument's QuotaError", err)
	}
}

// TestActorNameChecks: an empty actor name, and a detached actor without a
// name, are argument errors and give no handle.
func TestActorNameChecks(t *testing.T) {
	ctx := startCluster(t)
	for _, tc := range []struct {
		name string
		opts []sdk.ActorOption
	}{
		{"empty name", []sdk.ActorOption{sdk.Name("")}},
		{"empty name, detached", []sdk.ActorOption{sdk.Name(""), sdk.Detached()}},
		{"detached without a name", []sdk.ActorOption{sdk.Detached()}},
		{"detached in a namespace without a name", []sdk.ActorOption{sdk.Detached(), sdk.Namespace("ns"), sdk.MaxRestarts(1)}},
	} {
		a, err := CounterActor.Options(tc.opts...).Remote(ctx, 0)
		if !errors.Is(err, sdk.ErrArgument) {
			t.Errorf("%s: %v, %v; want an error wrapping ErrArgument", tc.name, a, err)
		}
		if !a.IsNil() {
			t.Errorf("%s: got a handle %v with the error", tc.name, a)
		}
	}
	// A task's name may be empty: it is the function's then.
	if v, err := Add.Options(sdk.Name("")).Remote(ctx, 1, 2).Get(ctx); err != nil || v != 3 {
		t.Fatalf("task with an empty name: %v, %v", v, err)
	}
	// Named, detached: fine.
	kept, err := CounterActor.Options(sdk.Name("kept"), sdk.Detached()).Remote(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	found, err := sdk.GetActor[Counter](ctx, "kept", "")
	if err != nil || found.ID() != kept.ID() {
		t.Fatalf("GetActor(kept) = %v, %v; want %v", found, err, kept)
	}
	if err := sdk.Kill(ctx, kept, true); err != nil {
		t.Fatal(err)
	}
}

// TestSessionDirTooLong: Init refuses a session directory too long for
// its unix sockets before starting anything, and works after.
func TestSessionDirTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("s", 100))
	if len(dir) <= 100 {
		t.Fatalf("%s is not longer than 100 bytes", dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	portsBefore := listenPorts(t)
	err := sdk.Init(ctx, sdk.SessionDir(dir), sdk.ObjectStoreMemory(64<<20))
	if err == nil {
		sdk.Shutdown()
		t.Fatalf("Init with a %d-byte session dir succeeded", len(dir))
	}
	if !errors.Is(err, sdk.ErrSessionDirTooLong) || !strings.Contains(err.Error(), "107") {
		t.Fatalf("Init with a %d-byte session dir: %v; want ErrSessionDirTooLong naming the limit", len(dir), err)
	}
	// Nothing started: no session directory, segment, worker or
	// listener, and no session.
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the session dir exists after the refusal: %v", err)
	}
	if segs, _ := filepath.Glob(fmt.Sprintf("/dev/shm/goray-%d-*", os.Getpid())); len(segs) > 0 {
		t.Errorf("shm segments after the refusal: %v", segs)
	}
	if pids := workerPIDs(dir); len(pids) > 0 {
		t.Errorf("worker processes after the refusal: %v", pids)
	}
	for _, p := range listenPorts(t) {
		if !slices.Contains(portsBefore, p) {
			t.Errorf("this process listens on port %d after the refusal", p)
		}
	}
	if _, err := sdk.ClusterStatus(ctx); !errors.Is(err, sdk.ErrNotInitialized) {
		t.Errorf("ClusterStatus after the refusal: %v; want ErrNotInitialized", err)
	}
	// The refusal left no half-made session: Init with a good dir works.
	ctx = startCluster(t)
	if v, err := Add.Remote(ctx, 1, 2).Get(ctx); err != nil || v != 3 {
		t.Fatalf("after the refusal: Add = %v, %v", v, err)
	}
}

// TestOptionsForTasksAndActors: the same NumCPUs, Resources and Name
// values configure a task and an actor.
func TestOptionsForTasksAndActors(t *testing.T) {
	var out lockedBuffer
	ctx := startCluster(t, sdk.NodeCPUs(4), sdk.NodeResources(map[string]float64{"widget": 2}), sdk.LogWriter(&out))
	cpus := sdk.NumCPUs(1.5)
	widget := sdk.Resources(map[string]float64{"widget": 1})
	name := sdk.Name("shared")
	// One list for both kinds.
	both := []sdk.Option{cpus, widget, name}
	var taskOpts []sdk.TaskOption
	var actorOpts []sdk.ActorOption
	for _, o := range both {
		taskOpts = append(taskOpts, o)
		actorOpts = append(actorOpts, o)
	}

	// The task is granted what the options ask, and its output is
	// labelled with its name.
	res, err := Assigned.Options(taskOpts...).Remote(ctx).Get(ctx)
	if err != nil || res["CPU"] != 1.5 || res["widget"] != 1 {
		t.Fatalf("task resources %v, %v; want CPU 1.5 and widget 1", res, err)
	}
	if _, err := Echo.Options(cpus, widget, name).Remote(ctx, "named task").Get(ctx); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "(shared pid=") && strings.Contains(l, "echo: named task") {
				return nil
			}
		}
		return errorf("no output line of the named task:\n%s", out.String())
	})

	// The actor holds them for its life and is found by the name.
	a, err := CounterActor.Options(actorOpts...).Remote(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := CounterGet.Remote(ctx, a).Get(ctx); err != nil || v != 7 {
		t.Fatalf("Get = %v, %v", v, err)
	}
	found, err := sdk.GetActor[Counter](ctx, "shared", "")
	if err != nil || found.ID() != a.ID() {
		t.Fatalf("GetActor(shared) = %v, %v; want %v", found, err, a)
	}
	available := func() map[string]float64 {
		st, err := sdk.ClusterStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Nodes[0].Available
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if av := available(); av["CPU"] != 2.5 || av["widget"] != 1 {
			return errorf("available %v with the actor alive; want CPU 2.5 and widget 1", av)
		}
		return nil
	})
	// Its name is taken: a second actor of that name is refused, a task of
	// that name is not.
	if _, err := CounterActor.Options(name).Remote(ctx, 0); err == nil {
		t.Error("a second actor named shared was created")
	}
	if v, err := Add.Options(name).Remote(ctx, 2, 2).Get(ctx); err != nil || v != 4 {
		t.Errorf("task named shared beside the actor: %v, %v", v, err)
	}
	if err := sdk.Kill(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if av := available(); av["CPU"] != 4 || av["widget"] != 2 {
			return errorf("available %v after the actor died; want CPU 4 and widget 2", av)
		}
		return nil
	})
}

// listenPorts lists the TCP ports this process listens on.
func listenPorts(t *testing.T) []int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile("/proc/self/net/" + table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// sl local rem st ... inode(9); 0A is LISTEN.
			if len(fs) < 10 || fs[3] != "0A" || !inodes[fs[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil {
				ports = append(ports, int(p))
			}
		}
	}
	return ports
}
