package core

import (
	"fmt"
	"runtime/debug"
)

// protect runs user code (a task, constructor or method), turning a panic
// into an error that carries the panic's stack, so a panic fails the call
// and never the worker.
func protect(fn func() (any, error)) (v any, err error, stack string) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
			stack = string(debug.Stack())
		}
	}()
	v, err = fn()
	return v, err, ""
}
