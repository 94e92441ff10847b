package wire

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
)

// benchRequest is a task push of roughly the size the owner sends for a
// small task (~100 bytes on the wire).
func benchRequest() *protos.PushTaskRequest {
	return &protos.PushTaskRequest{
		Spec: &protos.TaskSpec{
			TaskId:   []byte("0123456789abcdef01234567"),
			JobId:    []byte{0, 0, 0, 1},
			Function: "examples.square",
			Args: []*protos.TaskArg{{Value: &protos.ObjectData{
				Encoding: protos.Encoding_ENCODING_RAW,
				Data:     []byte("0123456789abcdef"),
			}}},
			Name: "square",
		},
		LeaseId: []byte("lease-0123456789"),
	}
}

// benchHandler does what a worker's push handler minimally does: decode the
// task and answer with a small result.
func benchHandler() Handler {
	reply := &protos.PushTaskReply{Result: &protos.ObjectData{
		Encoding: protos.Encoding_ENCODING_RAW,
		Data:     []byte("0123456789abcdef"),
	}}
	return HandlerFunc(func(c *Conn, req *Request) {
		var in protos.PushTaskRequest
		if err := proto.Unmarshal(req.Payload, &in); err != nil {
			c.ReplyError(req, err)
			return
		}
		c.Reply(req, reply)
	})
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

func BenchmarkCallSync(b *testing.B) {
	for _, tr := range transports(b) {
		b.Run(tr.name, func(b *testing.B) {
			s := startServer(b, tr.ep, benchHandler())
			c := dial(b, s.Addr(), nil)
			req := benchRequest()
			b.ReportMetric(float64(proto.Size(req)+headerSize), "req_bytes")
			var resp protos.PushTaskReply
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := c.Call(ctx, protos.Method_PUSH_TASK, req, &resp); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b)
		})
	}
}

func BenchmarkCallPipelined(b *testing.B) {
	const window = 1000
	for _, tr := range transports(b) {
		b.Run(tr.name, func(b *testing.B) {
			s := startServer(b, tr.ep, benchHandler())
			c := dial(b, s.Addr(), nil)
			req := benchRequest()
			tokens := make(chan struct{}, window)
			var failed sync.Once
			done := func(p []byte, err error) {
				var resp protos.PushTaskReply
				if err == nil {
					err = proto.Unmarshal(p, &resp)
				}
				if err != nil {
					failed.Do(func() { b.Error(err) })
				}
				<-tokens
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				tokens <- struct{}{}
				if err := c.Go(protos.Method_PUSH_TASK, req, done); err != nil {
					b.Fatal(err)
				}
			}
			for range window {
				tokens <- struct{}{}
			}
			b.StopTimer()
			reportRate(b)
		})
	}
}

// BenchmarkCallParallel issues synchronous calls from many goroutines on
// one conn, the shape of many tasks pushed concurrently to one worker.
func BenchmarkCallParallel(b *testing.B) {
	for _, tr := range transports(b) {
		b.Run(tr.name, func(b *testing.B) {
			s := startServer(b, tr.ep, benchHandler())
			c := dial(b, s.Addr(), nil)
			b.SetParallelism(64)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req := benchRequest()
				var resp protos.PushTaskReply
				for pb.Next() {
					if err := c.Call(context.Background(), protos.Method_PUSH_TASK, req, &resp); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRate(b)
		})
	}
}

// BenchmarkRawPingPong is the floor: 16 bytes each way over a bare socket
// of the same type, no framing, no protobuf, no extra goroutines.
func BenchmarkRawPingPong(b *testing.B) {
	for _, tr := range transports(b) {
		b.Run(tr.name, func(b *testing.B) {
			network, addr, err := ParseEndpoint(tr.ep)
			if err != nil {
				b.Fatal(err)
			}
			l, err := net.Listen(network, addr)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			go func() {
				nc, err := l.Accept()
				if err != nil {
					return
				}
				defer nc.Close()
				buf := make([]byte, 16)
				for {
					if _, err := io.ReadFull(nc, buf); err != nil {
						return
					}
					if _, err := nc.Write(buf); err != nil {
						return
					}
				}
			}()
			nc, err := net.Dial(network, l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			buf := make([]byte, 16)
			b.ResetTimer()
			for range b.N {
				if _, err := nc.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(nc, buf); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b)
		})
	}
}
