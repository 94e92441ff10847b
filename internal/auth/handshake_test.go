package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func testToken(t testing.TB) Token {
	t.Helper()
	tok, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pair runs a handshake over a TCP loopback connection: server side with
// hs, client side with hc. It returns both sides' results.
func pair(t *testing.T, hs, hc *Handshaker) (server, client net.Conn, serr, cerr error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := l.Accept()
		if err != nil {
			serr = err
			return
		}
		server, serr = hs.Server(nc)
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, cerr = hc.Client(ctx, nc)
	<-done
	t.Cleanup(func() {
		for _, c := range []net.Conn{server, client} {
			if c != nil {
				c.Close()
			}
		}
	})
	return server, client, serr, cerr
}

func TestHandshake(t *testing.T) {
	tok := testToken(t)
	key := tok.WireKey()
	other := testToken(t).WireKey()
	for _, tc := range []struct {
		name      string
		hs, hc    *Handshaker
		wantError error
	}{
		{"same key", NewHandshaker(key, LabelWire, nil), NewHandshaker(key, LabelWire, nil), nil},
		{"wrong key", NewHandshaker(key, LabelWire, nil), NewHandshaker(other, LabelWire, nil), ErrDenied},
		{"another protocol's proof", NewHandshaker(key, LabelWire, nil), NewHandshaker(key, LabelTransfer, nil), ErrDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client, serr, cerr := pair(t, tc.hs, tc.hc)
			if tc.wantError == nil {
				if serr != nil || cerr != nil {
					t.Fatalf("server %v, client %v", serr, cerr)
				}
				// The connection carries data both ways afterwards.
				go func() { _, _ = client.Write([]byte("ping")) }()
				buf := make([]byte, 4)
				if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ping" {
					t.Fatalf("after handshake: %q %v", buf, err)
				}
				return
			}
			if !errors.Is(serr, tc.wantError) || !errors.Is(cerr, tc.wantError) {
				t.Fatalf("server %v, client %v; want both %v", serr, cerr, tc.wantError)
			}
		})
	}
}

// A peer that speaks something else (here: a wire frame header declaring
// 511 MiB) is refused after reading the fixed-size proof, and nothing is
// allocated for what it declared.
func TestHandshakeRefusesGarbage(t *testing.T) {
	hs := NewHandshaker(testToken(t).WireKey(), LabelWire, nil)
	a, b := net.Pipe()
	defer b.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := hs.Server(a)
		errc <- err
	}()
	hello := make([]byte, helloSize)
	if _, err := io.ReadFull(b, hello); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, proofSize)
	frame[0], frame[1], frame[2], frame[3] = 0xff, 0xff, 0xff, 0x1f // 511 MiB, little endian
	frame[4], frame[5] = 1, 1
	go func() { _, _ = b.Write(frame) }()
	if err := <-errc; !errors.Is(err, ErrProtocol) {
		t.Fatalf("server: %v, want ErrProtocol", err)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	hs := NewHandshaker(testToken(t).WireKey(), LabelWire, nil).WithTimeout(100 * time.Millisecond)
	a, b := net.Pipe()
	defer b.Close()
	go func() { _, _ = io.Copy(io.Discard, b) }() // reads the hello, sends nothing
	_, err := hs.Server(a)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("server: %v, want a deadline error", err)
	}
}

// A client whose context ends while it waits for the server gives up.
func TestHandshakeClientContext(t *testing.T) {
	hc := NewHandshaker(testToken(t).WireKey(), LabelWire, nil)
	a, b := net.Pipe()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := hc.Client(ctx, a); err == nil {
		t.Fatal("client handshake with a silent server succeeded")
	}
}

func TestHandshakeNilPassesThrough(t *testing.T) {
	var h *Handshaker
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c, err := h.Server(a); c != a || err != nil {
		t.Fatalf("nil Server = %v, %v", c, err)
	}
	if c, err := h.Client(context.Background(), b); c != b || err != nil {
		t.Fatalf("nil Client = %v, %v", c, err)
	}
}

func TestHandshakeTLS(t *testing.T) {
	dir := t.TempDir()
	gen, err := GenerateCert(dir, "node", []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	tl, err := gen.Files.Load()
	if err != nil {
		t.Fatal(err)
	}
	key := testToken(t).WireKey()
	server, client, serr, cerr := pair(t, NewHandshaker(key, LabelWire, tl), NewHandshaker(key, LabelWire, tl))
	if serr != nil || cerr != nil {
		t.Fatalf("server %v, client %v", serr, cerr)
	}
	if _, ok := server.(*tls.Conn); !ok {
		t.Fatalf("server side is a %T, want *tls.Conn", server)
	}
	go func() { _, _ = client.Write([]byte("tls!")) }()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "tls!" {
		t.Fatalf("after TLS handshake: %q %v", buf, err)
	}

	// A certificate from another CA is refused, whoever presents it.
	otherDir := t.TempDir()
	otherGen, err := GenerateCert(otherDir, "node", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := otherGen.Files.Load()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, serr, cerr := pair(t, NewHandshaker(key, LabelWire, tl), NewHandshaker(key, LabelWire, other)); serr == nil || cerr == nil {
		t.Fatalf("foreign CA: server %v, client %v; want both to fail", serr, cerr)
	}
	// A client without TLS does not get past the TLS server.
	quick := 300 * time.Millisecond // each side waits for the other to speak first
	if _, _, serr, cerr := pair(t, NewHandshaker(key, LabelWire, tl).WithTimeout(quick), NewHandshaker(key, LabelWire, nil).WithTimeout(quick)); serr == nil || cerr == nil {
		t.Fatalf("plain client to TLS server: server %v, client %v; want both to fail", serr, cerr)
	}
	// TLS does not replace the key: a member's certificate with another
	// cluster's key is refused.
	if _, _, serr, cerr := pair(t, NewHandshaker(key, LabelWire, tl), NewHandshaker(testToken(t).WireKey(), LabelWire, tl)); !errors.Is(serr, ErrDenied) || !errors.Is(cerr, ErrDenied) {
		t.Fatalf("TLS with a wrong key: server %v, client %v; want ErrDenied", serr, cerr)
	}
}
