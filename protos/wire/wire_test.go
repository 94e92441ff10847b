package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
)

// transports returns a fresh endpoint per socket type; unix paths live in a
// short temp dir because sun_path is limited to 108 bytes.
func transports(t testing.TB) []struct{ name, ep string } {
	dir, err := os.MkdirTemp("", "wire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return []struct{ name, ep string }{
		{"unix", "unix:" + filepath.Join(dir, "s.sock")},
		{"tcp", "tcp:127.0.0.1:0"},
	}
}

func TestMain(m *testing.M) {
	// Connection-loss events are logged at debug level; keep test output
	// to warnings and errors.
	zlog.Logger = zerolog.New(os.Stderr).Level(zerolog.WarnLevel)
	os.Exit(m.Run())
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func startServer(t testing.TB, ep string, h Handler, opts ...Option) *Server {
	t.Helper()
	l, err := Listen(ep)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(l, h, opts...)
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v after Close, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return s
}

func dial(t testing.TB, ep string, h Handler, opts ...Option) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), ep, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo answers PUSH_TASK (and anything else) by returning the ObjectData it
// was sent.
func echo() Handler {
	return HandlerFunc(func(c *Conn, req *Request) {
		var in protos.ObjectData
		if err := proto.Unmarshal(req.Payload, &in); err != nil {
			c.ReplyError(req, err)
			return
		}
		c.Reply(req, &in)
	})
}

func waitDone(t testing.TB, c *Conn) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("conn not closed")
	}
}

func TestCallResponse(t *testing.T) {
	for _, tr := range transports(t) {
		t.Run(tr.name, func(t *testing.T) {
			s := startServer(t, tr.ep, echo(), WithLogger(testLogger(t)))
			if !strings.HasPrefix(s.Addr(), tr.name+":") {
				t.Fatalf("Addr() = %q", s.Addr())
			}
			c := dial(t, s.Addr(), nil)
			if c.RemoteEndpoint() != s.Addr() {
				t.Errorf("RemoteEndpoint = %q, want %q", c.RemoteEndpoint(), s.Addr())
			}
			for i := range 100 {
				var out protos.ObjectData
				in := &protos.ObjectData{Data: []byte(fmt.Sprint("hello ", i)), Size: uint64(i)}
				if err := c.Call(context.Background(), protos.Method_PUSH_TASK, in, &out); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(in, &out) {
					t.Fatalf("got %v want %v", &out, in)
				}
			}
			// Empty messages (zero-length payloads) and nil responses.
			if err := c.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{}, nil); err != nil {
				t.Fatal(err)
			}
			if c.Err() != nil {
				t.Fatalf("Err() = %v on open conn", c.Err())
			}
		})
	}
}

func TestConcurrentCalls(t *testing.T) {
	for _, tr := range transports(t) {
		t.Run(tr.name, func(t *testing.T) {
			s := startServer(t, tr.ep, echo())
			c := dial(t, s.Addr(), nil)
			var wg sync.WaitGroup
			for g := range 32 {
				wg.Go(func() {
					for i := range 200 {
						want := fmt.Sprintf("g%d-i%d", g, i)
						var out protos.ObjectData
						if err := c.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{Data: []byte(want)}, &out); err != nil {
							t.Error(err)
							return
						}
						if string(out.Data) != want {
							t.Errorf("got %q want %q", out.Data, want)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestGoPipelined(t *testing.T) {
	for _, tr := range transports(t) {
		t.Run(tr.name, func(t *testing.T) {
			s := startServer(t, tr.ep, echo())
			c := dial(t, s.Addr(), nil)
			const n = 5000
			var calls [n]atomic.Int32
			var wg sync.WaitGroup
			wg.Add(n)
			for i := range n {
				err := c.Go(protos.Method_PUSH_TASK, &protos.ObjectData{Size: uint64(i)}, func(p []byte, err error) {
					defer wg.Done()
					var out protos.ObjectData
					if err == nil {
						err = proto.Unmarshal(p, &out)
					}
					if err != nil || out.Size != uint64(i) {
						t.Errorf("call %d: got %v, %v", i, &out, err)
					}
					calls[i].Add(1)
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			wg.Wait()
			for i := range calls {
				if v := calls[i].Load(); v != 1 {
					t.Fatalf("call %d completed %d times", i, v)
				}
			}
		})
	}
}

func TestNotify(t *testing.T) {
	got := make(chan *Request, 100)
	s := startServer(t, transports(t)[0].ep, HandlerFunc(func(c *Conn, req *Request) {
		var m protos.ExitRequest
		if err := proto.Unmarshal(req.Payload, &m); err != nil {
			t.Error(err)
		}
		if c.Reply(req, &m) != nil {
			t.Error("Reply to one-way returned an error")
		}
		got <- &Request{Method: req.Method, ID: req.ID, OneWay: req.OneWay, Payload: []byte(m.Reason)}
	}))
	c := dial(t, s.Addr(), nil)
	for i := range 100 {
		if err := c.Notify(protos.Method_EXIT, &protos.ExitRequest{Reason: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		r := <-got
		if !r.OneWay || r.ID != 0 || r.Method != protos.Method_EXIT || string(r.Payload) != fmt.Sprint(i) {
			t.Fatalf("notification %d: %+v", i, r)
		}
	}
	// Nothing was sent back for the one-way messages, so a call still
	// gets exactly its own response.
	var out protos.ExitRequest
	if err := c.Call(context.Background(), protos.Method_EXIT, &protos.ExitRequest{Reason: "x"}, &out); err != nil || out.Reason != "x" {
		t.Fatalf("call after notifications: %v %v", &out, err)
	}
	if r := <-got; r.OneWay || r.ID == 0 {
		t.Fatalf("request seen as %+v", r)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 5 {
		l, err := Listen("tcp:127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := NewServer(l, echo())
		served := make(chan error, 1)
		go func() { served <- s.Serve() }()
		for range 3 {
			c, err := Dial(context.Background(), s.Addr(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Call(context.Background(), protos.Method_PUSH_TASK, nil, nil); err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		c, err := Dial(context.Background(), s.Addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		<-served
		waitDone(t, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestLongPollReply(t *testing.T) {
	parked := make(chan *Request, 1)
	mux := NewMux()
	mux.HandleFunc(protos.Method_GET_OBJECT, func(c *Conn, req *Request) {
		parked <- req // answer later, from another goroutine
	})
	mux.Handle(protos.Method_PUSH_TASK, echo())
	s := startServer(t, transports(t)[0].ep, mux)
	var server atomic.Pointer[Conn]
	s.OnConnOpen(func(c *Conn) { server.Store(c) })
	c := dial(t, s.Addr(), nil)

	res := make(chan error, 1)
	var out protos.GetObjectReply
	go func() {
		res <- c.Call(context.Background(), protos.Method_GET_OBJECT, &protos.GetObjectRequest{ObjectId: []byte("o1")}, &out)
	}()
	req := <-parked
	// The conn keeps serving while the long poll is parked.
	if err := c.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{Size: 7}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		t.Fatalf("long poll returned early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	go func() {
		sc := server.Load()
		if err := sc.Reply(req, &protos.GetObjectReply{Data: &protos.ObjectData{Data: []byte("value")}}); err != nil {
			t.Error(err)
		}
	}()
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if string(out.GetData().GetData()) != "value" {
		t.Fatalf("got %v", &out)
	}
}

func TestErrorReply(t *testing.T) {
	mux := NewMux()
	mux.HandleFunc(protos.Method_GET_OBJECT, func(c *Conn, req *Request) {
		c.ReplyError(req, NewError("not_found", "object %s is gone", "o1"))
	})
	mux.HandleFunc(protos.Method_CANCEL_TASK, func(c *Conn, req *Request) {
		c.ReplyError(req, fmt.Errorf("cancel: %w", &RemoteError{Code: "busy", Message: "inner"}))
	})
	mux.HandleFunc(protos.Method_KILL_WORKER, func(c *Conn, req *Request) {
		c.ReplyError(req, errors.New("plain failure"))
	})
	mux.HandleFunc(protos.Method_EXIT, func(c *Conn, req *Request) {
		panic("boom")
	})
	s := startServer(t, transports(t)[0].ep, mux, WithLogger(zerolog.Nop()))
	c := dial(t, s.Addr(), nil)
	ctx := context.Background()

	check := func(m protos.Method, code, msg string) {
		t.Helper()
		err := c.Call(ctx, m, &protos.ExitRequest{}, &protos.ExitRequest{})
		var re *RemoteError
		if !errors.As(err, &re) {
			t.Fatalf("%s: got %v (%T), want *RemoteError", m, err, err)
		}
		if re.Code != code || !strings.Contains(re.Message, msg) || re.Method != m {
			t.Fatalf("%s: got %+v, want code %q message containing %q", m, re, code, msg)
		}
		if !strings.Contains(err.Error(), msg) {
			t.Fatalf("Error() = %q", err.Error())
		}
	}
	check(protos.Method_GET_OBJECT, "not_found", "object o1 is gone")
	check(protos.Method_CANCEL_TASK, "busy", "cancel: ")
	check(protos.Method_KILL_WORKER, "", "plain failure")
	check(protos.Method_REGISTER_WORKER, CodeUnimplemented, "REGISTER_WORKER")
	check(protos.Method_EXIT, CodeInternal, "boom") // panic answered, conn survives
	check(protos.Method_GET_OBJECT, "not_found", "gone")

	// Go reports the same error through its callback.
	errc := make(chan error, 1)
	if err := c.Go(protos.Method_GET_OBJECT, nil, func(p []byte, err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	var re *RemoteError
	if err := <-errc; !errors.As(err, &re) || re.Code != "not_found" {
		t.Fatalf("Go callback got %v", err)
	}
}

func TestBidirectional(t *testing.T) {
	// The server answers each request only after calling back into the
	// client (as a raylet asking a worker something mid-request would),
	// using Go so the reader goroutine is never blocked.
	s := startServer(t, transports(t)[0].ep, HandlerFunc(func(c *Conn, req *Request) {
		err := c.Go(protos.Method_GET_NODE_INFO, &protos.ExitRequest{Reason: "who are you"}, func(p []byte, err error) {
			var who protos.ExitRequest
			if err == nil {
				err = proto.Unmarshal(p, &who)
			}
			if err != nil {
				c.ReplyError(req, err)
				return
			}
			c.Reply(req, &protos.ExitRequest{Reason: "hello " + who.Reason})
		})
		if err != nil {
			c.ReplyError(req, err)
		}
	}))
	c := dial(t, s.Addr(), HandlerFunc(func(c *Conn, req *Request) {
		c.Reply(req, &protos.ExitRequest{Reason: "client"})
	}))
	var out protos.ExitRequest
	if err := c.Call(context.Background(), protos.Method_REGISTER_CLIENT, &protos.ExitRequest{}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Reason != "hello client" {
		t.Fatalf("got %q", out.Reason)
	}
}

func TestNilHandlerAnswersUnimplemented(t *testing.T) {
	s := startServer(t, transports(t)[0].ep, HandlerFunc(func(c *Conn, req *Request) {
		c.Go(protos.Method_EXIT, nil, func(p []byte, err error) {
			c.ReplyError(req, err)
		})
	}))
	c := dial(t, s.Addr(), nil)
	err := c.Call(context.Background(), protos.Method_REGISTER_CLIENT, nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != CodeUnimplemented {
		t.Fatalf("got %v", err)
	}
}

func TestCallContextCancel(t *testing.T) {
	parked := make(chan *Request, 1)
	mux := NewMux()
	mux.HandleFunc(protos.Method_GET_OBJECT, func(c *Conn, req *Request) { parked <- req })
	mux.Handle(protos.Method_PUSH_TASK, echo())
	s := startServer(t, transports(t)[0].ep, mux)
	var server atomic.Pointer[Conn]
	s.OnConnOpen(func(c *Conn) { server.Store(c) })
	c := dial(t, s.Addr(), nil)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Call(ctx, protos.Method_GET_OBJECT, nil, &protos.GetObjectReply{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	// The late reply is dropped and the conn keeps working.
	req := <-parked
	if err := server.Load().Reply(req, &protos.GetObjectReply{}); err != nil {
		t.Fatal(err)
	}
	var out protos.ObjectData
	if err := c.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{Size: 3}, &out); err != nil || out.Size != 3 {
		t.Fatalf("after cancel: %v %v", &out, err)
	}
	// An already-cancelled context sends nothing.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := c.Call(cctx, protos.Method_PUSH_TASK, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestPeerCloseFailsPendingCalls(t *testing.T) {
	for _, tr := range transports(t) {
		t.Run(tr.name, func(t *testing.T) {
			var received atomic.Int32
			s := startServer(t, tr.ep, HandlerFunc(func(c *Conn, req *Request) {
				// Never reply; close the conn once all calls arrived.
				if received.Add(1) == 11 {
					go c.Close()
				}
			}))
			c := dial(t, s.Addr(), nil)
			errs := make(chan error, 11)
			for range 10 {
				go func() { errs <- c.Call(context.Background(), protos.Method_PUSH_TASK, nil, nil) }()
			}
			for received.Load() < 10 {
				time.Sleep(time.Millisecond)
			}
			if err := c.Go(protos.Method_PUSH_TASK, nil, func(p []byte, err error) { errs <- err }); err != nil {
				t.Fatal(err)
			}
			for range 11 {
				err := <-errs
				if !errors.Is(err, ErrClosed) || !errors.Is(err, io.EOF) {
					t.Fatalf("pending call got %v, want ErrClosed wrapping EOF", err)
				}
			}
			waitDone(t, c)
			if err := c.Err(); !errors.Is(err, ErrClosed) {
				t.Fatalf("Err() = %v", err)
			}
			if err := c.Call(context.Background(), protos.Method_PUSH_TASK, nil, nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("call on closed conn: %v", err)
			}
			if err := c.Notify(protos.Method_PUSH_TASK, nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("notify on closed conn: %v", err)
			}
		})
	}
}

func TestLocalCloseFailsPendingCalls(t *testing.T) {
	s := startServer(t, transports(t)[0].ep, HandlerFunc(func(c *Conn, req *Request) {}))
	c := dial(t, s.Addr(), nil)
	errs := make(chan error, 1)
	go func() { errs <- c.Call(context.Background(), protos.Method_PUSH_TASK, nil, nil) }()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	c.Close() // idempotent
	if err := <-errs; !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v", err)
	}
	if err := c.Err(); err != ErrClosed {
		t.Fatalf("Err() = %v, want ErrClosed", err)
	}
}

func TestCloseFlushesQueuedFrames(t *testing.T) {
	var got atomic.Int32
	s := startServer(t, transports(t)[0].ep, HandlerFunc(func(c *Conn, req *Request) { got.Add(1) }))
	c := dial(t, s.Addr(), nil)
	const n = 2000
	for range n {
		if err := c.Notify(protos.Method_NOTIFY_BLOCKED, &protos.ExitRequest{Reason: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if g := got.Load(); g != n {
		t.Fatalf("server saw %d of %d notifications queued before Close", g, n)
	}
}

// syncBuffer collects log output written from connection goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func rawHeader(length uint32, kind, version byte, method uint16, id uint64) []byte {
	b := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(b, length)
	b[4], b[5] = kind, version
	binary.LittleEndian.PutUint16(b[6:], method)
	binary.LittleEndian.PutUint64(b[8:], id)
	return b
}

func TestMalformedFrameClosesConn(t *testing.T) {
	cases := []struct {
		name   string
		frame  []byte
		target error
		text   string
	}{
		{"unknown kind", rawHeader(0, 9, 1, 1, 1), ErrMalformedFrame, "unknown frame kind 9"},
		{"bad version", rawHeader(0, 1, 7, 1, 1), ErrMalformedFrame, "unsupported version 7"},
		{"not our protocol", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrMalformedFrame, "malformed frame"},
		{"too large", rawHeader(1<<20, 1, 1, 1, 1), ErrFrameTooLarge, "declares 1048576 payload bytes, limit is 65536"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			s := startServer(t, transports(t)[0].ep, echo(), WithLogger(zerolog.New(logs)), WithMaxFrameSize(64<<10))
			closed := make(chan error, 1)
			s.OnConnClose(func(c *Conn, err error) { closed <- err })
			_, addr, _ := ParseEndpoint(s.Addr())
			raw, err := net.Dial("unix", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			if _, err := raw.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-closed:
				if !errors.Is(err, tc.target) || !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), tc.text) {
					t.Fatalf("close reason %q, want %v containing %q", err, tc.target, tc.text)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("server did not close the conn")
			}
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := raw.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("raw read after bad frame: %v, want EOF", err)
			}
			if !strings.Contains(logs.String(), tc.text) {
				t.Fatalf("log %q does not mention %q", logs.String(), tc.text)
			}
			// The server itself is unaffected.
			c := dial(t, s.Addr(), nil)
			if err := c.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{}, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMalformedFrameFailsPendingCallsOnDialer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		io.ReadFull(nc, make([]byte, headerSize)) // the request header
		nc.Write(rawHeader(0, 0, 1, 1, 1))
		io.Copy(io.Discard, nc)
	}()
	c := dial(t, "tcp:"+l.Addr().String(), nil, WithLogger(zerolog.Nop()))
	err = c.Call(context.Background(), protos.Method_PUSH_TASK, nil, nil)
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrMalformedFrame) || !strings.Contains(err.Error(), "unknown frame kind 0") {
		t.Fatalf("got %v", err)
	}
	waitDone(t, c)
}

func TestTruncatedFrame(t *testing.T) {
	s := startServer(t, transports(t)[0].ep, echo())
	closed := make(chan error, 1)
	s.OnConnClose(func(c *Conn, err error) { closed <- err })
	_, addr, _ := ParseEndpoint(s.Addr())
	raw, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Write(rawHeader(100, 1, 1, 1, 1))
	raw.Write([]byte("short"))
	raw.Close()
	if err := <-closed; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v", err)
	}
}

func TestLargePayload(t *testing.T) {
	s := startServer(t, transports(t)[0].ep, echo())
	c := dial(t, s.Addr(), nil)
	// Filled by doubling copies: a byte loop over 100 MB is slow under -race.
	data := make([]byte, 100<<20)
	for i := range 4096 {
		data[i] = byte(i*7 + i>>8)
	}
	for n := 4096; n < len(data); n *= 2 {
		copy(data[n:], data[:n])
	}
	data[len(data)-1] = 0xAB // catch a truncated tail
	var out protos.ObjectData
	if err := c.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{Data: data}, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Data, data) {
		t.Fatal("100 MB payload corrupted in transit")
	}
	// Small calls still work after the buffers were resized.
	if err := c.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{Size: 1}, &out); err != nil || out.Size != 1 {
		t.Fatal(err)
	}
}

func TestMidSizePayloads(t *testing.T) {
	// Around the read-buffer boundary: payloads that just fit, just
	// do not, and the scratch-buffer range.
	s := startServer(t, transports(t)[0].ep, echo())
	c := dial(t, s.Addr(), nil)
	for _, n := range []int{64<<10 - 40, 64<<10 - 16, 64 << 10, 200 << 10, 2 << 20} {
		data := bytes.Repeat([]byte{byte(n)}, n)
		var out protos.ObjectData
		if err := c.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{Data: data}, &out); err != nil {
			t.Fatal(n, err)
		}
		if !bytes.Equal(out.Data, data) {
			t.Fatalf("%d bytes corrupted", n)
		}
	}
}

func TestSendTooLarge(t *testing.T) {
	s := startServer(t, transports(t)[0].ep, echo())
	c := dial(t, s.Addr(), nil, WithMaxFrameSize(1<<20))
	err := c.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{Data: make([]byte, 2<<20)}, nil)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v", err)
	}
	if err := c.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{}, nil); err != nil {
		t.Fatalf("conn unusable after rejected send: %v", err)
	}
	if err := c.Notify(protos.Method(70000), nil); !errors.Is(err, ErrBadMethod) {
		t.Fatalf("got %v", err)
	}

	// A reply that is too large turns into an error reply.
	s2 := startServer(t, transports(t)[0].ep, echo(), WithMaxFrameSize(1<<20))
	c2 := dial(t, s2.Addr(), nil)
	err = c2.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{Data: make([]byte, 1<<20-100)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s3 := startServer(t, "tcp:127.0.0.1:0", HandlerFunc(func(c *Conn, req *Request) {
		c.Reply(req, &protos.ObjectData{Data: make([]byte, 2<<20)})
	}), WithMaxFrameSize(1<<20))
	c3 := dial(t, s3.Addr(), nil)
	var re *RemoteError
	if err := c3.Call(context.Background(), protos.Method_PUSH_TASK, nil, nil); !errors.As(err, &re) || !strings.Contains(re.Message, "too large") {
		t.Fatalf("got %v", err)
	}
}

func TestServerCloseClosesConns(t *testing.T) {
	for _, tr := range transports(t) {
		t.Run(tr.name, func(t *testing.T) {
			l, err := Listen(tr.ep)
			if err != nil {
				t.Fatal(err)
			}
			s := NewServer(l, echo())
			served := make(chan error, 1)
			go func() { served <- s.Serve() }()
			var conns []*Conn
			for range 3 {
				conns = append(conns, dial(t, s.Addr(), nil))
			}
			for _, c := range conns {
				if err := c.Call(context.Background(), protos.Method_PUSH_TASK, nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			if n := s.NumConns(); n != 3 {
				t.Fatalf("NumConns = %d", n)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			for _, c := range conns {
				waitDone(t, c)
				if !errors.Is(c.Err(), ErrClosed) {
					t.Fatalf("Err() = %v", c.Err())
				}
			}
			if err := <-served; err != nil {
				t.Fatalf("Serve = %v", err)
			}
			if _, err := Dial(context.Background(), s.Addr(), nil); err == nil {
				t.Fatal("dial succeeded after server Close")
			}
		})
	}
}

func TestOnConnClose(t *testing.T) {
	s := startServer(t, transports(t)[0].ep, echo())
	type ev struct {
		v   any
		err error
	}
	events := make(chan ev, 1)
	var n atomic.Int32
	s.OnConnOpen(func(c *Conn) { c.SetValue(fmt.Sprint("worker-", n.Add(1))) })
	s.OnConnClose(func(c *Conn, err error) { events <- ev{c.Value(), err} })
	c := dial(t, s.Addr(), nil)
	if err := c.Call(context.Background(), protos.Method_PUSH_TASK, nil, nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case e := <-events:
		if e.v != "worker-1" {
			t.Fatalf("Value = %v", e.v)
		}
		if !errors.Is(e.err, ErrClosed) || !errors.Is(e.err, io.EOF) {
			t.Fatalf("close reason %v", e.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnConnClose did not fire")
	}
	if n := s.NumConns(); n != 0 {
		t.Fatalf("NumConns = %d after close", n)
	}
}

func TestListen(t *testing.T) {
	dir, err := os.MkdirTemp("", "wire")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "s.sock")

	// A socket file left behind by a dead process is replaced.
	l, err := Listen("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("expected stale socket file: %v", err)
	}
	l, err = Listen("unix:" + path)
	if err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	defer l.Close()

	// A live one is not stolen.
	if _, err := Listen("unix:" + path); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Listen over live socket: %v", err)
	}
	// Nor is a regular file removed.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := Listen("unix:" + file); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}

	for _, ep := range []string{"", "unix:", "/tmp/x.sock", "udp:1.2.3.4:5", "tcp"} {
		if _, err := Listen(ep); !errors.Is(err, ErrBadEndpoint) {
			t.Errorf("Listen(%q) = %v, want ErrBadEndpoint", ep, err)
		}
		if _, err := Dial(context.Background(), ep, nil); !errors.Is(err, ErrBadEndpoint) {
			t.Errorf("Dial(%q) = %v, want ErrBadEndpoint", ep, err)
		}
	}
}

func TestNewConnOverPipe(t *testing.T) {
	a, b := net.Pipe()
	ca := NewConn(a, nil)
	cb := NewConn(b, echo())
	defer ca.Close()
	defer cb.Close()
	var out protos.ObjectData
	if err := ca.Call(context.Background(), protos.Method_PUSH_TASK, &protos.ObjectData{Size: 42}, &out); err != nil || out.Size != 42 {
		t.Fatalf("%v %v", &out, err)
	}
}

// TestFlush: Flush returns once the frames queued before it are written to
// the socket. net.Pipe has no buffer, so nothing counts as written before
// the peer reads it.
func TestFlush(t *testing.T) {
	a, b := net.Pipe()
	c := NewConn(a, nil)
	defer c.Close()
	defer b.Close()
	if err := c.Flush(context.Background()); err != nil {
		t.Fatalf("Flush with nothing queued: %v", err)
	}
	msg := &protos.ExitRequest{Reason: "flush me"}
	const n = 50
	for range n {
		if err := c.Notify(protos.Method_NOTIFY_BLOCKED, msg); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush(context.Background()) }()
	cancelled, cancel := context.WithCancel(context.Background())
	abandoned := make(chan error, 1)
	go func() { abandoned <- c.Flush(cancelled) }()
	cancel()
	if err := <-abandoned; !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush with its context cancelled before the peer read: %v", err)
	}
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) before the peer read anything", err)
	default:
	}
	if _, err := io.ReadFull(b, make([]byte, n*(headerSize+proto.Size(msg)))); err != nil {
		t.Fatal(err)
	}
	if err := <-flushed; err != nil {
		t.Fatalf("Flush after the peer read every frame: %v", err)
	}
}

// TestFlushClosedConn: a conn that closes with frames unwritten ends Flush
// with its error.
func TestFlushClosedConn(t *testing.T) {
	a, b := net.Pipe()
	c := NewConn(a, nil)
	defer c.Close()
	if err := c.Notify(protos.Method_NOTIFY_BLOCKED, &protos.ExitRequest{Reason: "never read"}); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush(context.Background()) }()
	b.Close()
	if err := <-flushed; !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush on a conn whose peer went away: %v", err)
	}
}

// TestServerFlush: the server flushes every accepted conn.
func TestServerFlush(t *testing.T) {
	accepted := make(chan *Conn, 1)
	s := startServer(t, transports(t)[0].ep, HandlerFunc(func(c *Conn, req *Request) {
		select {
		case accepted <- c:
		default:
		}
	}))
	c := dial(t, s.Addr(), HandlerFunc(func(*Conn, *Request) {}))
	if err := c.Notify(protos.Method_NOTIFY_BLOCKED, nil); err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	for range 1000 {
		if err := sc.Notify(protos.Method_NOTIFY_BLOCKED, &protos.ExitRequest{Reason: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	sc.wmu.Lock()
	queued := sc.queued
	sc.wmu.Unlock()
	if written := sc.written.Load(); written != queued {
		t.Fatalf("after Server.Flush the conn wrote %d of the %d bytes queued", written, queued)
	}
}

// TestWriteFailureKeepsUnreadFrames: a peer that answers, sends more and
// closes makes this side's next write fail while its frames are still
// unread here; they are delivered all the same, the reply included, and
// the conn ends at EOF.
func TestWriteFailureKeepsUnreadFrames(t *testing.T) {
	l, err := Listen(transports(t)[0].ep)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := l.Accept()
		if err == nil {
			accepted <- nc
		}
	}()
	gate := make(chan struct{})
	var got atomic.Int32
	c := dial(t, endpointOf(l.Addr()), HandlerFunc(func(*Conn, *Request) {
		if got.Add(1) == 1 {
			<-gate // hold the reader until the write has failed
		}
	}))
	const n = 100
	handled := make(chan struct{})
	p := NewConn(<-accepted, HandlerFunc(func(pc *Conn, req *Request) {
		for range n {
			_ = pc.Notify(protos.Method_NOTIFY_BLOCKED, &protos.ExitRequest{Reason: "sent before closing"})
		}
		_ = pc.Reply(req, &protos.ObjectData{Size: 7})
		close(handled)
	}))
	replied := make(chan error, 1)
	if err := c.Go(protos.Method_PUSH_TASK, &protos.ObjectData{}, func(payload []byte, err error) {
		var out protos.ObjectData
		if err == nil && (proto.Unmarshal(payload, &out) != nil || out.Size != 7) {
			err = fmt.Errorf("reply %x", payload)
		}
		replied <- err
	}); err != nil {
		t.Fatal(err)
	}
	<-handled
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("writes to a closed peer did not fail")
		}
		_ = c.Notify(protos.Method_NOTIFY_BLOCKED, nil)
		time.Sleep(time.Millisecond)
	}
	close(gate)
	waitDone(t, c)
	if g := got.Load(); g != n {
		t.Fatalf("%d of the %d frames the peer sent before closing were delivered", g, n)
	}
	if err := <-replied; err != nil {
		t.Fatalf("the reply the peer sent before closing: %v", err)
	}
}
