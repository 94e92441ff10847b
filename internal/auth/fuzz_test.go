package auth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/internal/testconn"
)

// fuzzCountingConn counts the bytes read through it, to check that a
// handshake reads no further than its own messages.
type fuzzCountingConn struct {
	net.Conn
	read atomic.Int64
}

func (c *fuzzCountingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

var fuzzKey = Key{1, 2, 3}

// Ways a fuzzed peer uses its bytes.
const (
	fuzzPeerRaw      = iota // the bytes are all it sends
	fuzzPeerValid           // a correct message first, then the bytes
	fuzzPeerWrongKey        // a message made with another key first
	fuzzPeerModes
)

// fuzzProof is the client's proof for nonceS, made by h.
func fuzzProof(h *Handshaker, nonceS, nonceC []byte) []byte {
	p := append(magic[:], nonceC...)
	return append(p, h.mac("client", nonceS, nonceC, nil)...)
}

// fuzzNonce takes a 32-byte nonce from the front of b, padding with
// zeros, and returns the rest.
func fuzzNonce(b []byte) ([]byte, []byte) {
	n := make([]byte, nonceSize)
	k := copy(n, b)
	return n, b[k:]
}

func fuzzWait[T any](tb testing.TB, c <-chan T, what string) T {
	tb.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(DefaultHandshakeTimeout + 5*time.Second):
		tb.Fatalf("%s did not return", what)
		panic("unreachable")
	}
}

type fuzzResult struct {
	conn net.Conn
	err  error
	read int64 // bytes read when the handshake returned
}

// FuzzHandshakeServer runs the accepting side against a client that sends
// arbitrary bytes, alone or after a proof. Only a correct proof gets
// through, and then the bytes after it are the connection's first; any
// other client is refused with ErrProtocol (not the handshake) or ErrDenied
// (not the key), and told so when it spoke the protocol. The server never
// reads past the proof.
func FuzzHandshakeServer(f *testing.F) {
	good := fuzzProof(NewHandshaker(fuzzKey, "wire", nil), make([]byte, nonceSize), make([]byte, nonceSize))
	for _, b := range [][]byte{
		nil,
		magic[:],
		good[:proofSize-1],
		good, // a proof for another server nonce
		append(good, "first frame"...),
		append([]byte("GRA2"), good[4:]...),
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		bytes.Repeat([]byte{0xff}, 2*proofSize),
	} {
		for mode := range uint8(fuzzPeerModes) {
			f.Add(b, mode)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		mode %= fuzzPeerModes
		h := NewHandshaker(fuzzKey, "wire", nil)
		server, client := testconn.SocketPair(t)
		defer client.Close()
		counted := &fuzzCountingConn{Conn: server}
		done := make(chan fuzzResult, 1)
		go func() {
			c, err := h.Server(counted)
			done <- fuzzResult{c, err, counted.read.Load()}
		}()

		var hello [helloSize]byte
		if _, err := io.ReadFull(client, hello[:]); err != nil || [4]byte(hello[:4]) != magic {
			t.Fatalf("hello % x, %v", hello, err)
		}
		nonceC, rest := fuzzNonce(data)
		sent := data
		switch mode {
		case fuzzPeerValid:
			sent = append(fuzzProof(h, hello[4:], nonceC), rest...)
		case fuzzPeerWrongKey:
			sent = append(fuzzProof(NewHandshaker(Key{9}, "wire", nil), hello[4:], nonceC), rest...)
		}
		go func() {
			_, _ = client.Write(sent) // fails if the server gave up already
			_ = client.CloseWrite()
		}()
		r := fuzzWait(t, done, "Server")
		if r.read > proofSize {
			t.Fatalf("the server read %d bytes, more than a proof (%d)", r.read, proofSize)
		}
		var verdict [verdictSize]byte
		if mode == fuzzPeerValid {
			if r.err != nil {
				t.Fatalf("a correct proof was refused: %v", r.err)
			}
			defer r.conn.Close()
			if _, err := io.ReadFull(client, verdict[:]); err != nil || verdict[0] != verdictOK ||
				!bytes.Equal(verdict[1:], h.mac("server", hello[4:], nonceC, nil)) {
				t.Fatalf("verdict % x, %v; want OK and the server's proof", verdict, err)
			}
			after, err := io.ReadAll(r.conn)
			if err != nil || !bytes.Equal(after, rest) {
				t.Fatalf("after the handshake the connection reads %q, %v; want %q", after, err, rest)
			}
			return
		}
		if r.err == nil {
			r.conn.Close()
			t.Fatal("a client without the key passed")
		}
		wantDenied := mode == fuzzPeerWrongKey || (len(sent) >= proofSize && [4]byte(sent[:4]) == magic)
		switch {
		case len(sent) == 0:
			// A client gone without a word made no attempt to
			// authenticate: an abort, not a refusal.
			if !errors.Is(r.err, ErrAborted) {
				t.Fatalf("a client that sent nothing: %v, want ErrAborted", r.err)
			}
		case wantDenied && !errors.Is(r.err, ErrDenied):
			t.Fatalf("a proof with a wrong MAC: %v, want ErrDenied", r.err)
		case !wantDenied && !errors.Is(r.err, ErrProtocol):
			t.Fatalf("%d bytes that are no proof: %v, want ErrProtocol", len(sent), r.err)
		}
		// A refused client is told so if it spoke the protocol, and is
		// hung up on either way.
		got, err := io.ReadAll(client)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("reading after the refusal: %v", err)
		}
		if wantDenied && (len(got) != verdictSize || got[0] != verdictDenied) || !wantDenied && len(got) != 0 {
			t.Fatalf("the server sent % x after refusing (%v)", got, r.err)
		}
	})
}

// FuzzHandshakeClient runs the dialling side against a server that sends
// arbitrary bytes, alone or after a hello, or after a hello and a correct
// verdict. Only the last gets through, with the bytes after the verdict as
// the connection's first; otherwise the client fails with ErrProtocol or
// ErrDenied. The client never reads past the verdict.
func FuzzHandshakeClient(f *testing.F) {
	for _, b := range [][]byte{
		nil,
		magic[:],
		append(magic[:], make([]byte, nonceSize)...),
		append(append(magic[:], make([]byte, nonceSize)...), verdictOK),
		append(append(magic[:], make([]byte, nonceSize)...), make([]byte, verdictSize+10)...),
		append(append(magic[:], make([]byte, nonceSize)...), verdictDenied),
		make([]byte, nonceSize+verdictSize),
		[]byte("SSH-2.0-OpenSSH_9.6\r\n"),
	} {
		for mode := range uint8(fuzzPeerModes) {
			f.Add(b, mode)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		mode %= fuzzPeerModes
		h := NewHandshaker(fuzzKey, "wire", nil)
		client, server := testconn.SocketPair(t)
		defer server.Close()
		counted := &fuzzCountingConn{Conn: client}
		done := make(chan fuzzResult, 1)
		go func() {
			c, err := h.Client(context.Background(), counted)
			done <- fuzzResult{c, err, counted.read.Load()}
		}()

		var rest []byte
		if mode == fuzzPeerRaw {
			go func() {
				_, _ = server.Write(data)
				_ = server.CloseWrite()
			}()
		} else {
			var nonceS []byte
			nonceS, rest = fuzzNonce(data)
			if _, err := server.Write(append(magic[:], nonceS...)); err != nil {
				t.Fatal(err)
			}
			var proof [proofSize]byte
			if _, err := io.ReadFull(server, proof[:]); err != nil {
				t.Fatalf("reading the client's proof: %v", err)
			}
			nonceC := proof[4 : 4+nonceSize]
			if [4]byte(proof[:4]) != magic || !bytes.Equal(proof[4+nonceSize:], h.mac("client", nonceS, nonceC, nil)) {
				t.Fatalf("the client's proof % x does not verify", proof)
			}
			signer := h
			if mode == fuzzPeerWrongKey {
				signer = NewHandshaker(Key{9}, "wire", nil)
			}
			verdict := append([]byte{verdictOK}, signer.mac("server", nonceS, nonceC, nil)...)
			go func() {
				_, _ = server.Write(append(verdict, rest...))
				_ = server.CloseWrite()
			}()
		}
		r := fuzzWait(t, done, "Client")
		if r.read > helloSize+verdictSize {
			t.Fatalf("the client read %d bytes, more than a hello and a verdict (%d)", r.read, helloSize+verdictSize)
		}
		if mode == fuzzPeerValid {
			if r.err != nil {
				t.Fatalf("a correct server was refused: %v", r.err)
			}
			defer r.conn.Close()
			after, err := io.ReadAll(r.conn)
			if err != nil || !bytes.Equal(after, rest) {
				t.Fatalf("after the handshake the connection reads %q, %v; want %q", after, err, rest)
			}
			return
		}
		if r.err == nil {
			r.conn.Close()
			t.Fatal("a server without the key passed")
		}
		wantProtocol := mode == fuzzPeerRaw && (len(data) < helloSize || [4]byte(data[:4]) != magic)
		switch {
		case wantProtocol && !errors.Is(r.err, ErrProtocol):
			t.Fatalf("%d bytes that are no hello: %v, want ErrProtocol", len(data), r.err)
		case !wantProtocol && !errors.Is(r.err, ErrDenied):
			t.Fatalf("a hello and no correct verdict: %v, want ErrDenied", r.err)
		}
	})
}
