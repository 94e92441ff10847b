package transfer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/testconn"
	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
)

func frameMessage(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := appendMessage(nil, m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// rawMessage frames arbitrary bytes as a message, valid protobuf or not.
func rawMessage(b []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// refMessages splits a stream into the messages readMessage must return,
// following the format in doc.go, and says how reading must end: io.EOF
// after the last whole message, io.ErrUnexpectedEOF inside one, ErrProtocol
// at a length over maxMessage or bytes that do not decode.
func refMessages[M any, PM interface {
	*M
	proto.Message
}](s []byte) ([]PM, error) {
	var msgs []PM
	for {
		switch {
		case len(s) == 0:
			return msgs, io.EOF
		case len(s) < prefixSize:
			return msgs, io.ErrUnexpectedEOF
		}
		n := uint64(binary.LittleEndian.Uint32(s))
		switch {
		case n > maxMessage:
			return msgs, ErrProtocol
		case uint64(len(s)-prefixSize) < n:
			return msgs, io.ErrUnexpectedEOF
		}
		m := PM(new(M))
		if proto.Unmarshal(s[prefixSize:prefixSize+n], m) != nil {
			return msgs, ErrProtocol
		}
		msgs = append(msgs, m)
		s = s[prefixSize+n:]
	}
}

// FuzzReadMessage reads a stream of requests, or of replies, with one
// reused buffer, and checks each message and the way reading ends against
// refMessages; the buffer never grows beyond what a checked length asked
// for, and every message decoded encodes and decodes back to itself.
func FuzzReadMessage(f *testing.F) {
	req := frameMessage(f, &protos.PullChunkRequest{ObjectId: oid(1).Bytes(), Offset: 1 << 40, Length: 2 << 20, Puller: "node"})
	rep := frameMessage(f, &protos.PullChunkReply{ObjectSize: 5, DataLength: 5, ErrorCode: protos.TransferErrorCode_TRANSFER_SPILL_LOST, ErrorMessage: "gone"})
	long := frameMessage(f, &protos.PullChunkReply{ErrorMessage: strings.Repeat("x", 1000)})
	for _, s := range [][]byte{
		nil,
		req,
		concat(req, req, req),
		concat(rep, long, rep),
		req[:2],
		req[:len(req)-1],
		rawMessage(nil),                         // an empty message is a valid one
		rawMessage([]byte{0xff}),                // undecodable
		rawMessage([]byte{0x2a, 2, 0xff, 0xfe}), // a string that is not UTF-8
		concat(rawMessage([]byte{0x18, 0x80}), req), // a truncated varint
		binary.LittleEndian.AppendUint32(nil, maxMessage),
		binary.LittleEndian.AppendUint32(nil, maxMessage+1),
		binary.LittleEndian.AppendUint32(nil, 1<<32-1),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, stream []byte, replies bool) {
		if replies {
			checkReadMessages(t, stream, func() *protos.PullChunkReply { return new(protos.PullChunkReply) })
		} else {
			checkReadMessages(t, stream, func() *protos.PullChunkRequest { return new(protos.PullChunkRequest) })
		}
	})
}

// checkReadMessages is FuzzReadMessage for one message type.
func checkReadMessages[M any, PM interface {
	*M
	proto.Message
}](t *testing.T, stream []byte, fresh func() PM) {
	want, end := refMessages[M, PM](stream)
	r := bytes.NewReader(stream)
	var buf []byte
	largest := 256 // what readMessage starts with
	for i := 0; ; i++ {
		if r.Len() >= prefixSize {
			if n := int(binary.LittleEndian.Uint32(stream[len(stream)-r.Len():])); n <= maxMessage {
				largest = max(largest, n)
			}
		}
		m := fresh()
		var err error
		buf, err = readMessage(r, buf, m)
		if cap(buf) > largest {
			t.Fatalf("message %d: read buffer grew to %d bytes; the largest length allowed so far is %d", i, cap(buf), largest)
		}
		if i == len(want) {
			if !errors.Is(err, end) {
				t.Fatalf("after %d messages readMessage returned %v, want %v", i, err, end)
			}
			if end == io.EOF && err != io.EOF {
				t.Fatalf("a clean end must be io.EOF itself (callers compare), got %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !proto.Equal(m, want[i]) {
			t.Fatalf("message %d is %v, want %v", i, m, want[i])
		}
		b, err := appendMessage(nil, m)
		if err != nil {
			t.Fatalf("message %d %v does not encode: %v", i, m, err)
		}
		back := fresh()
		if _, err := readMessage(bytes.NewReader(b), nil, back); err != nil || !proto.Equal(back, m) {
			t.Fatalf("message %d %v reads back as %v, %v", i, m, back, err)
		}
	}
}

// fuzzObjects are what the fuzzed server serves: empty, tiny, not a multiple
// of anything, and two that do not fit in its store together, so requests
// restore one from its spill file.
var fuzzObjects = []struct {
	id   protos.ObjectID
	data []byte
}{
	{oid(1), nil},
	{oid(2), []byte{42}},
	{oid(3), pattern(64<<10+7, 3)},
	{oid(4), pattern(600<<10, 4)},
	{oid(5), pattern(600<<10, 5)},
}

// FuzzServe sends arbitrary request streams to a Server over a real store
// with spilling. Each request before the stream stops making sense must be
// answered as doc.go says, data included; a stream that is not this
// protocol must make the server drop the connection; and once the
// connection is gone no pin may remain.
func FuzzServe(f *testing.F) {
	store := newStore(f, 1<<20, f.TempDir())
	for _, o := range fuzzObjects {
		put(f, store, o.id, o.data)
	}
	var served sync.Map
	srv := NewServer(store, ServerOptions{OnServe: func(id protos.ObjectID, _ string) { served.Store(id, true) }})
	f.Cleanup(func() { srv.Close() })

	request := func(id []byte, off, n uint64) []byte {
		return frameMessage(f, &protos.PullChunkRequest{ObjectId: id, Offset: off, Length: n, Puller: "p"})
	}
	valid := concat(
		request(oid(3).Bytes(), 0, 1<<10),
		request(oid(3).Bytes(), 1<<10, 1<<20),
		request(oid(4).Bytes(), 0, 1<<30),
		request(oid(5).Bytes(), 600<<10, 1),
		request(oid(1).Bytes(), 0, 1),
		request(oid(2).Bytes(), 0, 0),
		request(oid(5).Bytes(), 1000, 10),
		request(oid(4).Bytes(), 600<<10-1, 1<<64-1),
	)
	for _, s := range [][]byte{
		nil,
		valid,
		concat(valid, []byte("garbage")),
		concat(valid, binary.LittleEndian.AppendUint32(nil, maxMessage+1)),
		valid[:len(valid)-3],
		concat(request(oid(9).Bytes(), 0, 1), request(oid(3).Bytes()[:5], 0, 1), request(nil, 0, 1)), // unknown and bad ids
		concat(request(oid(3).Bytes(), 64<<10+8, 1), request(oid(3).Bytes(), 1<<63, 1)),              // past the end
		rawMessage([]byte{0xff}),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		served.Clear()
		local, peer := testconn.SocketPair(t)
		defer peer.Close()
		// What Serve does with an accepted connection.
		srv.mu.Lock()
		srv.conns[local] = struct{}{}
		srv.wg.Add(1)
		srv.mu.Unlock()
		go srv.handle(local)

		written := make(chan struct{})
		go func() {
			defer close(written)
			_, _ = peer.Write(stream) // fails once the server has had enough
		}()
		defer func() { <-written }()
		// A guard against a server that waits forever, not a guess at
		// how long anything takes.
		_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))

		reqs, end := refMessages[protos.PullChunkRequest](stream)
		var buf []byte
		started := map[protos.ObjectID]bool{}
		for i, req := range reqs {
			var reply protos.PullChunkReply
			var err error
			if buf, err = readMessage(peer, buf, &reply); err != nil {
				t.Fatalf("reply %d to %v: %v", i, req, err)
			}
			checkServed(t, peer, req, &reply)
			if reply.ErrorCode == protos.TransferErrorCode_TRANSFER_OK && req.Offset == 0 {
				started[protos.ObjectID(req.ObjectId)] = true
			}
		}
		if end != ErrProtocol {
			// The server is between requests or inside one, waiting
			// for the rest: let it see the end of the stream.
			<-written
			_ = peer.CloseWrite()
		}
		n, err := peer.Read(make([]byte, 1))
		switch {
		case n > 0:
			t.Fatalf("the server sent more than %d replies", len(reqs))
		case err != io.EOF && !errors.Is(err, syscall.ECONNRESET):
			t.Fatalf("after %d replies, reading gave %v; want the server to close the connection (stream ended with %v)", len(reqs), err, end)
		}
		waitFor(t, "the server to finish with the connection", func() bool { return srv.Stats().Conns == 0 })
		if st := store.Stats(); st.NumPinned != 0 || st.Pinned != 0 || st.NumObjects != len(fuzzObjects) {
			t.Fatalf("store after the connection went: %+v; want every object there and none pinned", st)
		}
		for _, o := range store.Objects() {
			if o.Pins != 0 {
				t.Fatalf("%s still has %d pins", o.ID, o.Pins)
			}
		}
		// OnServe runs for every object sent from its start, and only
		// for those.
		served.Range(func(k, _ any) bool {
			if !started[k.(protos.ObjectID)] {
				t.Errorf("OnServe reported %s, which was not served from offset 0", k)
			}
			delete(started, k.(protos.ObjectID))
			return true
		})
		for id := range started {
			t.Errorf("%s was served from offset 0 without OnServe", id)
		}
	})
}

// checkServed reads the data of reply, the server's answer to req, and
// checks both against the object asked for.
func checkServed(t *testing.T, c net.Conn, req *protos.PullChunkRequest, reply *protos.PullChunkReply) {
	t.Helper()
	var data []byte
	found := false
	for _, o := range fuzzObjects {
		if bytes.Equal(req.ObjectId, o.id[:]) {
			data, found = o.data, true
		}
	}
	var code protos.TransferErrorCode
	switch {
	case len(req.ObjectId) != protos.ObjectIDSize, found && req.Offset > uint64(len(data)):
		code = protos.TransferErrorCode_TRANSFER_INVALID
	case !found:
		code = protos.TransferErrorCode_TRANSFER_NOT_FOUND
	}
	if reply.ErrorCode != code || reply.Offset != req.Offset {
		t.Fatalf("request %v answered with %v; want code %v", req, reply, code)
	}
	if code != protos.TransferErrorCode_TRANSFER_OK {
		if reply.DataLength != 0 || reply.ErrorMessage == "" {
			t.Fatalf("refusal %v of %v: want no data and a reason", reply, req)
		}
		return
	}
	size := uint64(len(data))
	if err := checkReply(reply, req, size); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, reply.DataLength)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("data of %v: %v", reply, err)
	}
	if !bytes.Equal(got, data[req.Offset:req.Offset+reply.DataLength]) {
		t.Fatalf("data of %v differs from the object's", reply)
	}
}

// FuzzErrorReply sends arbitrary refusals, as the server builds them from
// its errors, and decodes them as the puller does: every refusal must
// encode (else the server drops the connection instead of saying why),
// keep its code, and keep as much of its text as fits.
func FuzzErrorReply(f *testing.F) {
	f.Add(int32(protos.TransferErrorCode_TRANSFER_NOT_FOUND), "objstore: acquire 00ab: objstore: object not found")
	f.Add(int32(protos.TransferErrorCode_TRANSFER_SPILL_LOST), "open /spill/\xff\xfe/spill-1.bin: no such file or directory")
	f.Add(int32(protos.TransferErrorCode_TRANSFER_SPILL_CORRUPT), strings.Repeat("é", maxErrorMessage))
	f.Add(int32(protos.TransferErrorCode_TRANSFER_STORE_FULL), strings.Repeat("x", maxErrorMessage-1)+"€")
	f.Add(int32(protos.TransferErrorCode_TRANSFER_UNAVAILABLE), "")
	f.Add(int32(protos.TransferErrorCode_TRANSFER_INTERNAL), "x")
	f.Add(int32(99), "a code from a newer version")
	f.Add(int32(-1), "\x00")
	f.Fuzz(func(t *testing.T, code int32, text string) {
		var reply protos.PullChunkReply
		errorReply(&reply, 7, protos.TransferErrorCode(code), errors.New(text))
		b, err := appendMessage(nil, &reply)
		if err != nil {
			t.Fatalf("refusal with text %.100q (%d bytes) does not encode: %v", text, len(text), err)
		}
		var got protos.PullChunkReply
		if _, err := readMessage(bytes.NewReader(b), nil, &got); err != nil {
			t.Fatalf("refusal %x does not decode: %v", b, err)
		}
		if got.Offset != 7 || int32(got.ErrorCode) != code || got.DataLength != 0 {
			t.Fatalf("refusal decoded as %v", &got)
		}
		msg := got.ErrorMessage
		clean := strings.ToValidUTF8(text, "\uFFFD")
		switch {
		case len(msg) > maxErrorMessage:
			t.Fatalf("text of %d bytes, over %d", len(msg), maxErrorMessage)
		case !strings.HasPrefix(clean, msg):
			t.Fatalf("text %q is not a prefix of %q", msg, clean)
		case len(clean)-len(msg) >= utf8.UTFMax && len(msg) < maxErrorMessage-utf8.UTFMax:
			t.Fatalf("text cut to %d bytes; %d would fit", len(msg), maxErrorMessage)
		}

		var id protos.ObjectID
		rerr := remoteError("10.0.0.1:1", id, &got)
		if !errors.Is(rerr, ErrRemote) || !strings.Contains(rerr.Error(), msg) {
			t.Fatalf("remote error %v: want ErrRemote and the text", rerr)
		}
		if s := codeSentinel(got.ErrorCode); s != nil && !errors.Is(rerr, s) {
			t.Fatalf("remote error %v with code %v does not match %v", rerr, got.ErrorCode, s)
		}
		for _, s := range []error{objstore.ErrObjectNotFound, objstore.ErrSpillLost, objstore.ErrSpillCorrupt, objstore.ErrStoreFull, ErrServerClosed} {
			if errors.Is(rerr, s) && codeSentinel(got.ErrorCode) != s {
				t.Fatalf("remote error with code %v matches %v", got.ErrorCode, s)
			}
		}
	})
}

// FuzzPull makes a Puller pull from a server that answers every request
// on every connection with the same arbitrary bytes. The pull must either
// seal exactly the object those bytes describe or fail, leaving nothing in
// the store, with an error that says which side was at fault.
func FuzzPull(f *testing.F) {
	const chunk = 1 << 10
	dst := newStore(f, 64<<10, "")
	var (
		mu      sync.Mutex
		current []byte
	)
	addr := fuzzServer(f, func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return current
	})

	ok := func(size, off, n uint64) []byte {
		return frameMessage(f, &protos.PullChunkReply{ObjectSize: size, Offset: off, DataLength: n})
	}
	for _, s := range [][]byte{
		nil,
		ok(0, 0, 0),
		concat(ok(10, 0, 10), []byte("0123456789")),
		concat(ok(10, 0, 10), []byte("01234")),             // data cut short
		concat(ok(3*chunk, 0, chunk), make([]byte, chunk)), // other streams get chunk 0's reply
		concat(ok(1<<40, 0, chunk), make([]byte, chunk)),   // larger than the store
		concat(ok(1<<40, 0, chunk), make([]byte, 10)),      // and cut short
		ok(1<<40, 0, chunk),                                // and no data at all
		concat(ok(10, 0, 9), []byte("012345678")),          // short reply
		concat(ok(10, 1, 10), []byte("0123456789")),        // wrong offset
		concat(ok(1<<64-1, 0, chunk), make([]byte, chunk)), // the largest size
		frameMessage(f, &protos.PullChunkReply{ErrorCode: protos.TransferErrorCode_TRANSFER_NOT_FOUND, ErrorMessage: "no"}),
		frameMessage(f, &protos.PullChunkReply{ErrorCode: 99, ErrorMessage: "newer"}),
		rawMessage([]byte{0xff}),
		binary.LittleEndian.AppendUint32(nil, maxMessage+1),
		[]byte("HTTP/1.1 400 Bad Request\r\n\r\n"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		mu.Lock()
		current = stream
		mu.Unlock()
		p := NewPuller(dst, PullerOptions{ChunkSize: chunk, Streams: 2, ChunkTimeout: 10 * time.Second, SocketBuffer: -1})
		defer p.Close()
		id := oid(1)
		err := p.Pull(context.Background(), id, addr, owner)
		want, wantErr := refPull(stream, chunk)
		if wantErr == nil {
			if err != nil {
				t.Fatalf("Pull: %v; the stream describes a %d-byte object", err, len(want))
			}
			check(t, dst, id, want)
			if err := dst.Delete(id); err != nil {
				t.Fatal(err)
			}
			checkEmpty(t, dst)
			return
		}
		if err == nil {
			t.Fatalf("Pull succeeded; want an error like %v", wantErr)
		}
		if wantErr != errAny && !errors.Is(err, wantErr) {
			t.Fatalf("Pull: %v; want an error wrapping %v", err, wantErr)
		}
		checkEmpty(t, dst)
	})
}

// refPull is what a pull of at most chunk bytes per request must make of a
// server that answers with stream: the object, or the sentinel its error
// must wrap.
func refPull(stream []byte, chunk uint64) ([]byte, error) {
	replies, end := refMessages[protos.PullChunkReply](stream)
	if len(replies) == 0 {
		if end == io.EOF {
			end = io.ErrUnexpectedEOF // the server hung up on a request
		}
		return nil, end
	}
	r := replies[0]
	if r.ErrorCode != protos.TransferErrorCode_TRANSFER_OK {
		return nil, ErrRemote
	}
	size := r.ObjectSize
	if checkReply(r, &protos.PullChunkRequest{Length: chunk}, size) != nil {
		return nil, ErrProtocol
	}
	data := stream[len(frameOf(r)):]
	if size > 64<<10 {
		// Chunk 0's data is drained before the pull fails.
		if uint64(len(data)) < r.DataLength {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, objstore.ErrStoreFull
	}
	if size > chunk {
		// Stream 1 asks for chunk 1 and is answered about chunk 0,
		// unless a failure of stream 0 cuts it short first.
		return nil, errAny
	}
	if uint64(len(data)) < size {
		return nil, io.ErrUnexpectedEOF
	}
	return data[:size], nil
}

// errAny stands for a failure whose cause depends on which stream fails
// first.
var errAny = errors.New("any error")

func frameOf(m *protos.PullChunkReply) []byte {
	b, _ := appendMessage(nil, m)
	return b
}

// fuzzServer accepts connections and answers each with stream(), whatever
// it is sent, then waits for the puller to hang up.
func fuzzServer(tb testing.TB, stream func() []byte) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	tb.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				_, _ = c.Write(stream())
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	return l.Addr().String()
}
