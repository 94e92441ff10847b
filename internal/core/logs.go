package core

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/goray/goray/protos"
)

// logPrinter prints batches of worker output as Ray does,
// "(Function pid=N) line": stdout lines to stdout, stderr lines to stderr,
// or all to w when it is set.
func logPrinter(w io.Writer) nats.MsgHandler {
	var mu sync.Mutex
	out, errw := bufio.NewWriter(os.Stdout), bufio.NewWriter(os.Stderr)
	if w != nil {
		out = bufio.NewWriter(w)
		errw = out
	}
	return func(m *nats.Msg) {
		var b protos.LogBatch
		if err := unmarshalProto(m.Data, &b); err != nil {
			return
		}
		name := b.GetFunction()
		if name == "" {
			name = "worker"
		}
		mu.Lock()
		defer mu.Unlock()
		dst := out
		if b.GetStderr() {
			dst = errw
		}
		for _, l := range b.GetLines() {
			fmt.Fprintf(dst, "(%s pid=%d) %s\n", name, b.GetPid(), l)
		}
		_ = dst.Flush()
	}
}
