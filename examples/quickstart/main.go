// Quickstart: remote functions, object refs and worker processes on an
// embedded goray cluster. Run it with `make demo` or `go run ./examples/quickstart`.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/goray/goray/sdk"
)

// Remote functions are ordinary Go functions registered at package init
// under a stable name. The worker processes run this same binary, so they
// register the same functions.
var (
	Square = sdk.Register1("quickstart.Square", func(ctx context.Context, x int) (int, error) {
		return x * x, nil
	})

	Sum = sdk.Register1("quickstart.Sum", func(ctx context.Context, xs []int) (int, error) {
		total := 0
		for _, x := range xs {
			total += x
		}
		return total, nil
	})

	// SumOfSquares submits tasks from inside a task and waits for them.
	SumOfSquares = sdk.Register1("quickstart.SumOfSquares", func(ctx context.Context, n int) (int, error) {
		refs := make([]sdk.Ref[int], n)
		for i := range refs {
			refs[i] = Square.Remote(ctx, i)
		}
		squares, err := sdk.GetAll(ctx, refs)
		if err != nil {
			return 0, err
		}
		return Sum.Remote(ctx, squares).Get(ctx)
	})

	WordCount = sdk.Register1("quickstart.WordCount", func(ctx context.Context, text []byte) (int, error) {
		rc := sdk.GetRuntimeContext(ctx)
		fmt.Printf("counting %d bytes on worker pid %d\n", len(text), os.Getpid())
		_ = rc
		return len(strings.Fields(string(text))), nil
	})

	Divide = sdk.Register2("quickstart.Divide", func(ctx context.Context, a, b int) (int, error) {
		if b == 0 {
			return 0, ErrDivideByZero
		}
		return a / b, nil
	})
)

// ErrDivideByZero is registered so errors.Is recognises it after it comes
// back from a worker.
var ErrDivideByZero = errors.New("divide by zero")

func init() { sdk.RegisterError(ErrDivideByZero) }

func main() {
	ctx := context.Background()
	start := time.Now()
	// No address: start an embedded single-node cluster in this process.
	if err := sdk.Init(ctx); err != nil {
		log.Fatal(err)
	}
	defer sdk.Shutdown()

	// .Remote returns a typed ref at once; Get waits for the value.
	nine, err := Square.Remote(ctx, 3).Get(ctx)
	must(err)
	fmt.Printf("Square(3) = %d (first result %v after Init)\n", nine, time.Since(start).Round(time.Millisecond))

	// Many tasks in parallel.
	refs := make([]sdk.Ref[int], 100)
	for i := range refs {
		refs[i] = Square.Remote(ctx, i)
	}
	squares, err := sdk.GetAll(ctx, refs)
	must(err)
	fmt.Printf("100 squares, the last is %d\n", squares[99])

	// A ref passed as an argument is resolved before the task runs.
	total, err := Sum.RemoteArgs(ctx, sdk.Val([]int{1, 2, 3})).Get(ctx)
	must(err)
	fmt.Printf("Sum([1 2 3]) = %d\n", total)

	// Tasks can submit tasks.
	s, err := SumOfSquares.Remote(ctx, 10).Get(ctx)
	must(err)
	fmt.Printf("SumOfSquares(10) = %d\n", s)

	// Large values live in the node's shared-memory object store and are
	// read there by workers without copying.
	text := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog ", 50_000))
	textRef, err := sdk.Put(ctx, text)
	must(err)
	words, err := WordCount.RemoteArgs(ctx, textRef).Get(ctx)
	must(err)
	fmt.Printf("WordCount(%d KiB in shared memory) = %d\n", len(text)>>10, words)

	// Errors come back with the function's name and the original error.
	_, err = Divide.Remote(ctx, 1, 0).Get(ctx)
	fmt.Printf("Divide(1, 0) failed: %v (errors.Is ErrDivideByZero: %v)\n", err, errors.Is(err, ErrDivideByZero))

	// Wait for the first of several results.
	slow := []sdk.ObjectRef{Square.Remote(ctx, 7).Untyped(), Square.Remote(ctx, 8).Untyped()}
	ready, _, err := sdk.Wait(ctx, slow, 1, sdk.Timeout(10*time.Second))
	must(err)
	fmt.Printf("Wait: %d of 2 ready\n", len(ready))
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
