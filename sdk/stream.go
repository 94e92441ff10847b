package sdk

import (
	"context"
	"errors"
	"io"
	"iter"

	"github.com/goray/goray/internal/core"
)

// Streaming generators: a task or actor method that yields values returns
// a Stream whose items can be consumed while it still runs (Ray's
// num_returns="streaming").
//
//	var Count = sdk.RegisterStream1("example.Count", func(ctx context.Context, n int, yield func(int) error) error {
//		for i := 0; i < n; i++ {
//			if err := yield(i); err != nil {
//				return err // the caller cancelled
//			}
//		}
//		return nil
//	})
//
//	s := Count.Remote(ctx, 3)
//	for v, err := range s.All(ctx) { ... } // 0, 1, 2
//
// An error returned by the generator reaches the consumer after the items
// yielded before it, and ends the stream. Cancelling the stream stops the
// producer: its next yield returns an error. Each item is an object of its
// own, freed when its ref is dropped. Streaming calls are not retried.

// Stream is the caller's end of a streaming call.
type Stream[T any] struct {
	s   *core.Stream
	err error
}

func failedStream[T any](err error) *Stream[T] { return &Stream[T]{err: err} }

// Next returns a ref to the next item, waiting for it. At the end of the
// stream it returns io.EOF; if the generator failed, its error comes once
// after the items it yielded, then io.EOF.
func (s *Stream[T]) Next(ctx context.Context) (Ref[T], error) {
	if s.err != nil {
		return Ref[T]{}, s.err
	}
	r, err := s.s.Next(ctx)
	if err != nil {
		return Ref[T]{}, publicError(err)
	}
	return Ref[T]{ObjectRef{r}}, nil
}

// All iterates over the stream's values (Get of each item), ending after
// the last item or at the first error.
func (s *Stream[T]) All(ctx context.Context) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			ref, err := s.Next(ctx)
			if errors.Is(err, io.EOF) {
				return
			}
			var v T
			if err == nil {
				v, err = ref.Get(ctx)
			}
			if !yield(v, err) || err != nil {
				return
			}
		}
	}
}

// Cancel stops the producer (see Cancel); the stream then ends with
// ErrTaskCancelled after the items already yielded.
func (s *Stream[T]) Cancel(ctx context.Context, opts ...CancelOption) error {
	if s.err != nil {
		return s.err
	}
	var o cancelOptions
	for _, f := range opts {
		f(&o)
	}
	return s.s.Cancel(o.force, !o.noRecursive)
}

func submitStream[T any](ctx context.Context, f funcBase, args ...core.Arg) *Stream[T] {
	w := core.Current()
	if w == nil {
		return failedStream[T](ErrNotInitialized)
	}
	s, err := w.SubmitStream(ctx, f.name, args, f.opts)
	if err != nil {
		return failedStream[T](err)
	}
	return &Stream[T]{s: s}
}
