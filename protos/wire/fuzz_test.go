package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/testconn"
	"github.com/goray/goray/protos"
)

// fuzzMaxFrame is small enough that a fuzzed length often exceeds it, and
// large enough (with the minimum read buffer) that all three ways of reading
// a payload are reachable: straight from the bufio buffer, into the scratch
// buffer, and readGrowing above maxRetainedReadBuf.
const (
	fuzzMaxFrame = 3 << 20
	fuzzReadBuf  = 4 << 10
)

// waitGoroutines fails unless the goroutine count drops back to base: every
// goroutine a conn starts must end once it is Done.
func waitGoroutines(tb testing.TB, base int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			tb.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

// refFrame is a frame as the format in doc.go defines it.
type refFrame struct {
	length  uint32
	kind    frameKind
	method  uint16
	id      uint64
	payload []byte
}

// refParse splits a byte stream into frames following doc.go, not the
// reader's code, and returns how a reader of the whole stream must end:
// io.EOF after the last whole frame, io.ErrUnexpectedEOF inside one, or the
// sentinel of the first header that cannot be trusted.
func refParse(s []byte, maxFrame int) ([]refFrame, error) {
	var frames []refFrame
	for {
		switch {
		case len(s) == 0:
			return frames, io.EOF
		case len(s) < headerSize:
			return frames, io.ErrUnexpectedEOF
		}
		f := refFrame{
			length: binary.LittleEndian.Uint32(s[0:4]),
			kind:   frameKind(s[4]),
			method: binary.LittleEndian.Uint16(s[6:8]),
			id:     binary.LittleEndian.Uint64(s[8:16]),
		}
		switch {
		case s[5] != frameVersion, f.kind < kindRequest, f.kind > kindError:
			return frames, ErrMalformedFrame
		case uint64(f.length) > uint64(maxFrame):
			return frames, ErrFrameTooLarge
		case uint64(len(s)-headerSize) < uint64(f.length):
			return frames, io.ErrUnexpectedEOF
		}
		f.payload = s[headerSize : headerSize+int(f.length)]
		frames = append(frames, f)
		s = s[headerSize+int(f.length):]
	}
}

func frame(kind frameKind, m protos.Method, id uint64, payload []byte) []byte {
	b := make([]byte, headerSize, headerSize+len(payload))
	putHeader(b, header{length: uint32(len(payload)), kind: kind, method: uint16(m), id: id})
	return append(b, payload...)
}

func marshal(tb testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// addStreamSeeds adds valid streams and each kind of broken one.
func addStreamSeeds(f *testing.F) {
	obj := marshal(f, &protos.ObjectData{Size: 42, Data: []byte("payload")})
	werr := marshal(f, &protos.WireError{Code: "c", Message: "m"})
	req := frame(kindRequest, protos.Method_PUSH_TASK, 7, obj)
	for _, s := range [][]byte{
		nil,
		req,
		bytes.Join([][]byte{
			req,
			frame(kindOneWay, protos.Method_EXIT, 0, nil),
			frame(kindResponse, protos.Method_PUSH_TASK, 1, obj),
			frame(kindError, protos.Method_PUSH_TASK, 2, werr),
			frame(kindError, protos.Method_PUSH_TASK, 3, []byte{0xff}), // undecodable error
			frame(kindResponse, protos.Method_PUSH_TASK, 99, nil),      // nobody waits for 99
			frame(kindRequest, maxMethod, 1<<63, nil),
		}, nil),
		frame(kindRequest, protos.Method_PUSH_TASK, 1, make([]byte, fuzzReadBuf)), // just past the bufio buffer
		frame(kindResponse, protos.Method_PUSH_TASK, 1, bytes.Repeat([]byte{1}, 5000)),
		req[:headerSize-1],                                      // truncated header
		req[:headerSize+3],                                      // truncated payload
		append(req, rawHeader(0, 9, 1, 1, 1)...),                // unknown kind after a good frame
		rawHeader(0, 0, 1, 1, 1),                                // kind 0
		rawHeader(0, 1, 2, 1, 1),                                // future version
		rawHeader(fuzzMaxFrame+1, 1, 1, 1, 1),                   // over the limit
		rawHeader(1<<32-1, 1, 1, 1, 1),                          // largest length there is
		append(rawHeader(2<<20, 1, 1, 1, 1), "a few bytes"...),  // readGrowing, cut short
		append(rawHeader(64<<10, 3, 1, 1, 1), "a few bytes"...), // scratch, cut short
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	} {
		f.Add(s)
	}
}

// FuzzConnRead feeds arbitrary byte streams to a Conn's reader. Whatever
// arrives, the conn must end (Done) without panicking or leaking a
// goroutine, with the reason the stream dictates; every request frame
// before the end must reach the handler, in order and intact; and every
// call pending on the conn must complete exactly once, with its response
// if the stream carried one.
func FuzzConnRead(f *testing.F) {
	addStreamSeeds(f)
	f.Fuzz(func(t *testing.T, stream []byte) {
		base := runtime.NumGoroutine()
		local, peer := testconn.SocketPair(t)
		defer peer.Close()

		var got []refFrame // written by the reader goroutine until Done
		h := HandlerFunc(func(c *Conn, req *Request) {
			kind := kindRequest
			if req.OneWay {
				kind = kindOneWay
			}
			got = append(got, refFrame{kind: kind, method: uint16(req.Method), id: req.ID, payload: bytes.Clone(req.Payload)})
			// Answer as a real handler would, so that the flusher
			// writes while the reader reads.
			var in protos.ObjectData
			if err := proto.Unmarshal(req.Payload, &in); err != nil {
				_ = c.ReplyError(req, err)
				return
			}
			_ = c.Reply(req, &in)
		})
		c := NewConn(local, h, WithLogger(zerolog.Nop()), WithMaxFrameSize(fuzzMaxFrame), WithReadBufferSize(fuzzReadBuf))

		// Calls with ids 1 to 3, which the stream may answer.
		type result struct {
			calls   int
			payload []byte
			err     error
		}
		var results [3]result
		for i := range results {
			err := c.Go(protos.Method_PUSH_TASK, nil, func(payload []byte, err error) {
				r := &results[i]
				r.calls++
				r.payload, r.err = bytes.Clone(payload), err
			})
			if err != nil {
				t.Fatal(err)
			}
		}

		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, peer)
		}()
		written := make(chan struct{})
		go func() {
			defer close(written)
			// Fails once the conn has given up on the stream.
			_, _ = peer.Write(stream)
			_ = peer.CloseWrite()
		}()
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("conn still open 10 s after its peer finished sending")
		}
		<-c.flushed
		<-drained
		<-written
		peer.Close()
		waitGoroutines(t, base)

		frames, end := refParse(stream, fuzzMaxFrame)
		if err := c.Err(); !errors.Is(err, ErrClosed) || !errors.Is(err, end) {
			t.Fatalf("conn closed with %v, want an error wrapping ErrClosed and %v", err, end)
		}
		var want []refFrame
		answers := map[uint64]refFrame{}
		for _, fr := range frames {
			switch fr.kind {
			case kindRequest, kindOneWay:
				want = append(want, refFrame{kind: fr.kind, method: fr.method, id: fr.id, payload: fr.payload})
			case kindResponse, kindError:
				if _, ok := answers[fr.id]; !ok {
					answers[fr.id] = fr
				}
			}
		}
		if len(got) != len(want) {
			t.Fatalf("handler saw %d requests, the stream has %d", len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.kind != w.kind || g.method != w.method || g.id != w.id || !bytes.Equal(g.payload, w.payload) {
				t.Fatalf("request %d: handler saw %s method %d id %d payload %x, stream has %s method %d id %d payload %x",
					i, g.kind, g.method, g.id, g.payload, w.kind, w.method, w.id, w.payload)
			}
		}
		for i, r := range results {
			id := uint64(i + 1)
			if r.calls != 1 {
				t.Fatalf("call %d completed %d times", id, r.calls)
			}
			a, answered := answers[id]
			switch {
			case !answered:
				if !errors.Is(r.err, ErrClosed) {
					t.Fatalf("unanswered call %d completed with %v, want ErrClosed", id, r.err)
				}
			case a.kind == kindResponse:
				if r.err != nil || !bytes.Equal(r.payload, a.payload) {
					t.Fatalf("call %d completed with %x, %v; the response was %x", id, r.payload, r.err, a.payload)
				}
			default:
				var re *RemoteError
				if !errors.As(r.err, &re) || r.payload != nil {
					t.Fatalf("call %d answered with an error frame completed with %x, %v; want a *RemoteError", id, r.payload, r.err)
				}
				var we protos.WireError
				if proto.Unmarshal(a.payload, &we) == nil && (re.Code != we.Code || re.Message != we.Message) {
					t.Fatalf("call %d: remote error %q %q, the frame says %q %q", id, re.Code, re.Message, we.Code, we.Message)
				}
			}
		}
	})
}

// FuzzParseHeader checks parseHeader against doc.go: a header is accepted
// exactly when its version and kind are known and its length is within the
// limit, rejections wrap the matching sentinel, and an accepted header
// encodes back to the same bytes.
func FuzzParseHeader(f *testing.F) {
	f.Add(rawHeader(0, 1, 1, 1, 1), uint32(DefaultMaxFrameSize))
	f.Add(rawHeader(100, 4, 1, maxMethod, 1<<64-1), uint32(100))
	f.Add(rawHeader(101, 3, 1, 0, 0), uint32(100))
	f.Add(rawHeader(1<<32-1, 2, 1, 0, 0), uint32(1<<32-1))
	f.Add(rawHeader(0, 5, 1, 0, 0), uint32(10))
	f.Add(rawHeader(0, 1, 0, 0, 0), uint32(10))
	f.Add(rawHeader(1<<31, 0, 255, 0, 0), uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, maxFrame uint32) {
		if len(b) < headerSize {
			return // the reader never parses less than a whole header
		}
		h, err := parseHeader(b, int(maxFrame))
		length := binary.LittleEndian.Uint32(b)
		var want error
		switch {
		case b[5] != frameVersion || b[4] < byte(kindRequest) || b[4] > byte(kindError):
			want = ErrMalformedFrame
		case length > maxFrame:
			want = ErrFrameTooLarge
		}
		if want != nil {
			if !errors.Is(err, want) {
				t.Fatalf("parseHeader(% x, %d) = %v, want %v", b[:headerSize], maxFrame, err, want)
			}
			return
		}
		if err != nil {
			t.Fatalf("parseHeader(% x, %d) = %v, want success", b[:headerSize], maxFrame, err)
		}
		var back [headerSize]byte
		putHeader(back[:], h)
		if !bytes.Equal(back[:], b[:headerSize]) {
			t.Fatalf("header % x parsed as %+v, which encodes as % x", b[:headerSize], h, back)
		}
	})
}

// TestDeclaredLengthNotAllocated sends headers declaring nearly the maximum
// frame and then a little of the payload: the reader must allocate in
// proportion to what arrived (readGrowing doubles from 2 MiB), not the 511
// MiB declared.
func TestDeclaredLengthNotAllocated(t *testing.T) {
	const declared = 511 << 20
	for _, tc := range []struct {
		sent, limit int
	}{
		{sent: 100, limit: 8 << 20},
		{sent: 5 << 20, limit: 32 << 20},
	} {
		t.Run(fmt.Sprint(tc.sent), func(t *testing.T) {
			local, peer := testconn.SocketPair(t)
			defer peer.Close()
			payload := make([]byte, tc.sent)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			c := NewConn(local, HandlerFunc(func(*Conn, *Request) { t.Error("a truncated frame reached the handler") }),
				WithLogger(zerolog.Nop()))
			go func() {
				_, _ = peer.Write(rawHeader(declared, 1, 1, 1, 1))
				_, _ = peer.Write(payload)
				_ = peer.CloseWrite()
			}()
			waitDone(t, c)
			runtime.ReadMemStats(&after)
			if err := c.Err(); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("conn closed with %v, want io.ErrUnexpectedEOF", err)
			}
			n := after.TotalAlloc - before.TotalAlloc
			t.Logf("allocated %d bytes", n)
			if n > uint64(tc.limit) {
				t.Fatalf("a frame declaring %d bytes with %d sent allocated %d bytes, want at most %d", declared, tc.sent, n, tc.limit)
			}
		})
	}
}
