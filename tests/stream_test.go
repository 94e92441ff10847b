package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

var (
	// Count yields 0..N-1, sleeping Delay before each item, and fails at
	// item FailAt when it is set.
	Count = sdk.RegisterStream1("tests.Count", func(ctx context.Context, spec CountSpec, yield func(int) error) error {
		for i := 0; i < spec.N; i++ {
			if spec.FailAt > 0 && i == spec.FailAt {
				return fmt.Errorf("stopped at %d: %w", i, ErrTeapot)
			}
			if spec.Delay > 0 {
				time.Sleep(spec.Delay)
			}
			if err := yield(i); err != nil {
				return err
			}
		}
		return nil
	})

	// BigChunks yields large values, which travel through the store.
	BigChunks = sdk.RegisterStream1("tests.BigChunks", func(ctx context.Context, n int, yield func([]byte) error) error {
		for i := 0; i < n; i++ {
			b := make([]byte, 256<<10)
			b[0] = byte(i)
			if err := yield(b); err != nil {
				return err
			}
		}
		return nil
	})

	CounterCountUp = sdk.NewStreamMethod1(CounterActor, "CountUp", func(c *Counter, ctx context.Context, n int, yield func(int) error) error {
		for i := 0; i < n; i++ {
			c.n++
			if err := yield(c.n); err != nil {
				return err
			}
		}
		return nil
	})
)

type CountSpec struct {
	N      int
	FailAt int
	Delay  time.Duration
}

func TestStreamingGenerators(t *testing.T) {
	ctx := startCluster(t)
	// Items arrive in order; the stream ends with io.EOF.
	s := Count.Remote(ctx, CountSpec{N: 100})
	i := 0
	for v, err := range s.All(ctx) {
		if err != nil || v != i {
			t.Fatalf("item %d = %v, %v", i, v, err)
		}
		i++
	}
	if i != 100 {
		t.Fatalf("got %d items, want 100", i)
	}
	if _, err := s.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after the end: %v", err)
	}

	// Consumed while the generator still runs.
	slow := Count.Remote(ctx, CountSpec{N: 5, Delay: 300 * time.Millisecond})
	start := time.Now()
	ref, err := slow.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ref.Get(ctx); err != nil || v != 0 {
		t.Fatalf("first item %v, %v", v, err)
	}
	if time.Since(start) > 1200*time.Millisecond {
		t.Fatalf("first item took %v: not streamed", time.Since(start))
	}

	// An error mid-stream arrives after the items before it, then EOF.
	bad := Count.Remote(ctx, CountSpec{N: 10, FailAt: 3})
	var got []int
	for {
		r, err := bad.Next(ctx)
		if errors.Is(err, io.EOF) {
			t.Fatal("stream ended without the generator's error")
		}
		if err != nil {
			if !errors.Is(err, ErrTeapot) || len(got) != 3 {
				t.Fatalf("error %v after %v", err, got)
			}
			break
		}
		v, _ := r.Get(ctx)
		got = append(got, v)
	}
	if _, err := bad.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after the error: %v", err)
	}

	// Cancelling stops the producer.
	long := Count.Remote(ctx, CountSpec{N: 1 << 30, Delay: time.Millisecond})
	if _, err := long.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if err := long.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for {
		_, err := long.Next(ctx)
		if errors.Is(err, sdk.ErrTaskCancelled) {
			break
		}
		if errors.Is(err, io.EOF) {
			t.Fatal("cancelled stream ended without ErrTaskCancelled")
		}
		select {
		case <-deadline:
			t.Fatal("the producer did not stop")
		default:
		}
	}

	// Large items live in the store and are freed when their refs go.
	big := BigChunks.Remote(ctx, 8)
	n := 0
	for b, err := range big.All(ctx) {
		if err != nil || len(b) != 256<<10 || b[0] != byte(n) {
			t.Fatalf("chunk %d: len %d, %v", n, len(b), err)
		}
		n++
	}
	if n != 8 {
		t.Fatalf("%d chunks", n)
	}
	big = nil
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		runtime.GC()
		if c := storeObjects(ctx, t); c != 0 {
			return errorf("store holds %d objects", c)
		}
		return nil
	})

	// Actor methods stream too, with the actor's state.
	c, err := CounterActor.Remote(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := 11
	for v, err := range CounterCountUp.Remote(ctx, c, 5).All(ctx) {
		if err != nil || v != want {
			t.Fatalf("actor stream item = %v, %v; want %d", v, err, want)
		}
		want++
	}
	if v, err := CounterGet.Remote(ctx, c).Get(ctx); err != nil || v != 15 {
		t.Fatalf("after the stream Get = %v, %v", v, err)
	}
}

func TestCancelActorStream(t *testing.T) {
	ctx := startCluster(t)
	c, err := CounterActor.Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := CounterCountUp.Remote(ctx, c, 1<<30)
	if _, err := s.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := s.Next(ctx)
		if errors.Is(err, sdk.ErrTaskCancelled) {
			break
		}
		if err != nil {
			t.Fatalf("cancelled actor stream ended with %v", err)
		}
	}
	// The actor lives on.
	if _, err := CounterGet.Remote(ctx, c).Get(ctx); err != nil {
		t.Fatal(err)
	}
}
