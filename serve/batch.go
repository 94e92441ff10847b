package serve

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Batcher gathers single calls into batches, as Ray Serve's @serve.batch:
// a replica's method calls Do with one item; the Batcher calls fn once
// for up to maxSize items, when that many wait or timeout has passed
// since the first of them, and hands each caller its result. A replica
// needs MaxOngoingRequests of at least maxSize for batches to fill.
//
//	type Model struct{ batch *serve.Batcher[[]float32, float32] }
//
//	func (m *Model) Score(ctx context.Context, x []float32) (float32, error) {
//		return m.batch.Do(ctx, x)
//	}
//
//	// in the constructor:
//	m.batch = serve.NewBatcher(32, 5*time.Millisecond, m.scoreBatch)
type Batcher[A, R any] struct {
	maxSize int
	timeout time.Duration
	fn      func(context.Context, []A) ([]R, error)

	mu      sync.Mutex
	pending []batchItem[A, R]
	timer   *time.Timer
}

type batchItem[A, R any] struct {
	ctx  context.Context
	arg  A
	done chan batchResult[R]
}

type batchResult[R any] struct {
	v   R
	err error
}

// NewBatcher returns a Batcher calling fn with batches of up to maxSize
// items, waiting at most timeout for a batch to fill.
func NewBatcher[A, R any](maxSize int, timeout time.Duration, fn func(context.Context, []A) ([]R, error)) *Batcher[A, R] {
	if maxSize < 1 {
		maxSize = 1
	}
	return &Batcher[A, R]{maxSize: maxSize, timeout: timeout, fn: fn}
}

// Do adds arg to the next batch and returns its result.
func (b *Batcher[A, R]) Do(ctx context.Context, arg A) (R, error) {
	it := batchItem[A, R]{ctx: ctx, arg: arg, done: make(chan batchResult[R], 1)}
	b.mu.Lock()
	b.pending = append(b.pending, it)
	switch {
	case len(b.pending) >= b.maxSize:
		b.flushLocked()
	case len(b.pending) == 1:
		b.timer = time.AfterFunc(b.timeout, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.pending) > 0 {
				b.flushLocked()
			}
		})
	}
	b.mu.Unlock()
	select {
	case r := <-it.done:
		return r.v, r.err
	case <-ctx.Done():
		var zero R
		return zero, ctx.Err()
	}
}

// flushLocked runs the waiting items as one batch, in a goroutine of
// its own so that new items gather meanwhile.
func (b *Batcher[A, R]) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	items := b.pending
	b.pending = nil
	go func() {
		args := make([]A, len(items))
		for i, it := range items {
			args[i] = it.arg
		}
		// The batch runs as long as its first caller waits.
		out, err := b.fn(items[0].ctx, args)
		if err == nil && len(out) != len(items) {
			err = fmt.Errorf("serve: a batch function returned %d results for %d items", len(out), len(items))
		}
		for i, it := range items {
			r := batchResult[R]{err: err}
			if err == nil {
				r.v = out[i]
			}
			it.done <- r
		}
	}()
}
