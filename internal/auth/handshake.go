package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// The handshake every goray connection (wire and object transfer, TCP and
// unix) runs before its first frame. It proves to each side that the other
// holds the wire key, without sending the key:
//
//	server -> client  hello    magic(4) nonceS(32)
//	client -> server  proof    magic(4) nonceC(32) HMAC(k, label|"client"|nonceS|nonceC|binding)
//	server -> client  verdict  status(1) HMAC(k, label|"server"|nonceS|nonceC|binding)
//
// Every message has a fixed size, so a peer without the key can make the
// server read at most 68 bytes and allocate nothing; a wrong magic or MAC
// closes the connection. label names the protocol ("wire", "transfer"), so
// a proof made for one is worthless for the other. Over TLS, binding is
// keying material exported from the TLS session, which ties the proof to
// this TLS connection: a proof relayed through a man in the middle does not
// verify on the other side. Without TLS there is no binding; an attacker
// who can rewrite traffic could relay a handshake, which is why networks
// that are not trusted want TLS (docs/security.md).

const (
	nonceSize   = 32
	macSize     = sha256.Size
	helloSize   = 4 + nonceSize
	proofSize   = 4 + nonceSize + macSize
	verdictSize = 1 + macSize

	verdictOK     = 0
	verdictDenied = 1

	// DefaultHandshakeTimeout bounds a whole handshake (TLS included).
	DefaultHandshakeTimeout = 10 * time.Second

	bindingLabel = "goray handshake binding"
)

var magic = [4]byte{'G', 'R', 'A', '1'}

// Key is a wire key: what a process proves it belongs to the cluster with.
// It is derived from the cluster token (Token.WireKey); workers get the key,
// never the token.
type Key [32]byte

// WireKey is the key of wire and object transfer handshakes.
func (t Token) WireKey() Key { return Key(t.derive("wire")) }

// Handshaker authenticates connections of one protocol: Client on the
// dialling side, Server (or a Listener) on the accepting side. A nil
// *Handshaker authenticates nothing: every method passes connections
// through, which is what `--auth none` gets.
type Handshaker struct {
	key     Key
	label   string
	tls     *TLS
	timeout time.Duration
}

// NewHandshaker returns a handshaker for the protocol named label, with
// mutual TLS on TCP connections when t is not nil.
func NewHandshaker(key Key, label string, t *TLS) *Handshaker {
	return &Handshaker{key: key, label: label, tls: t, timeout: DefaultHandshakeTimeout}
}

// WithTimeout returns a copy of h whose handshakes must finish within d.
func (h *Handshaker) WithTimeout(d time.Duration) *Handshaker {
	if h == nil {
		return nil
	}
	c := *h
	c.timeout = d
	return &c
}

// TLS reports whether TCP connections are wrapped in mutual TLS.
func (h *Handshaker) TLS() bool { return h != nil && h.tls != nil }

// Client runs the dialling side of the handshake on nc and returns the
// connection to use: nc itself, or nc wrapped in TLS. On failure nc is
// closed. ctx bounds the handshake along with the handshaker's timeout.
func (h *Handshaker) Client(ctx context.Context, nc net.Conn) (net.Conn, error) {
	if h == nil {
		return nc, nil
	}
	out, err := h.client(ctx, nc)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("%s handshake with %s: %w", h.label, nc.RemoteAddr(), err)
	}
	return out, nil
}

func (h *Handshaker) client(ctx context.Context, nc net.Conn) (net.Conn, error) {
	deadline := time.Now().Add(h.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn := nc
	if h.tls != nil && isTCP(nc) {
		tc := tls.Client(nc, h.tls.clientConfig(nc.RemoteAddr()))
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, tlsError(err)
		}
		conn = tc
	}
	var hello [helloSize]byte
	if _, err := io.ReadFull(conn, hello[:]); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w: the server sent no hello in time (does it run without authentication, --auth none?): %w", ErrProtocol, err)
		}
		return nil, fmt.Errorf("%w: reading the server's hello: %w", ErrProtocol, readErr(err))
	}
	if [4]byte(hello[:4]) != magic {
		return nil, fmt.Errorf("%w: the server's hello starts % x", ErrProtocol, hello[:4])
	}
	nonceS := hello[4:]
	binding, err := exportBinding(conn)
	if err != nil {
		return nil, err
	}
	var proof [proofSize]byte
	copy(proof[:4], magic[:])
	nonceC := proof[4 : 4+nonceSize]
	if _, err := io.ReadFull(rand.Reader, nonceC); err != nil {
		return nil, err
	}
	copy(proof[4+nonceSize:], h.mac("client", nonceS, nonceC, binding))
	if _, err := conn.Write(proof[:]); err != nil {
		return nil, fmt.Errorf("%w: sending our proof: %w", ErrAborted, err)
	}
	var verdict [verdictSize]byte
	if _, err := io.ReadFull(conn, verdict[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: the server closed the connection after our proof (wrong cluster token?)", ErrDenied)
		}
		return nil, fmt.Errorf("%w: reading the server's verdict: %w", ErrAborted, err)
	}
	if verdict[0] != verdictOK {
		return nil, fmt.Errorf("%w: the server refused our proof (wrong cluster token?)", ErrDenied)
	}
	if !hmac.Equal(verdict[1:], h.mac("server", nonceS, nonceC, binding)) {
		return nil, fmt.Errorf("%w: the server does not hold the cluster's key", ErrDenied)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return conn, nil
}

// Server runs the accepting side of the handshake on nc, within the
// handshaker's timeout, and returns the connection to use. On failure nc
// is closed; a peer that sent a wrong proof is told so first.
func (h *Handshaker) Server(nc net.Conn) (net.Conn, error) {
	if h == nil {
		return nc, nil
	}
	out, err := h.server(nc)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("%s handshake from %s: %w", h.label, nc.RemoteAddr(), err)
	}
	return out, nil
}

func (h *Handshaker) server(nc net.Conn) (net.Conn, error) {
	if err := nc.SetDeadline(time.Now().Add(h.timeout)); err != nil {
		return nil, err
	}
	conn := nc
	if h.tls != nil && isTCP(nc) {
		tc := tls.Server(nc, h.tls.serverConfig())
		if err := tc.Handshake(); err != nil {
			return nil, tlsError(err)
		}
		conn = tc
	}
	var hello [helloSize]byte
	copy(hello[:4], magic[:])
	nonceS := hello[4:]
	if _, err := io.ReadFull(rand.Reader, nonceS); err != nil {
		return nil, err
	}
	if _, err := conn.Write(hello[:]); err != nil {
		return nil, fmt.Errorf("%w: sending our hello: %w", ErrAborted, err)
	}
	var proof [proofSize]byte
	if n, err := io.ReadFull(conn, proof[:]); err != nil {
		if n == 0 {
			// Gone before saying anything: a probe, or a client that
			// gave up; not an attempt to authenticate.
			return nil, fmt.Errorf("%w: the client left before sending its proof: %w", ErrAborted, err)
		}
		return nil, fmt.Errorf("%w: reading the client's proof: %w", ErrProtocol, readErr(err))
	}
	if [4]byte(proof[:4]) != magic {
		return nil, fmt.Errorf("%w: the client's proof starts % x", ErrProtocol, proof[:4])
	}
	binding, err := exportBinding(conn)
	if err != nil {
		return nil, err
	}
	nonceC := proof[4 : 4+nonceSize]
	var verdict [verdictSize]byte
	if !hmac.Equal(proof[4+nonceSize:], h.mac("client", nonceS, nonceC, binding)) {
		verdict[0] = verdictDenied
		_, _ = conn.Write(verdict[:])
		return nil, fmt.Errorf("%w: the client does not hold the cluster's key", ErrDenied)
	}
	copy(verdict[1:], h.mac("server", nonceS, nonceC, binding))
	if _, err := conn.Write(verdict[:]); err != nil {
		return nil, fmt.Errorf("%w: sending our verdict: %w", ErrAborted, err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return conn, nil
}

func (h *Handshaker) mac(side string, nonceS, nonceC, binding []byte) []byte {
	m := hmac.New(sha256.New, h.key[:])
	m.Write([]byte(h.label))
	m.Write([]byte{0})
	m.Write([]byte(side))
	m.Write(nonceS)
	m.Write(nonceC)
	m.Write(binding)
	return m.Sum(nil)
}

// exportBinding is the TLS session's exported keying material, or nothing
// for a connection without TLS.
func exportBinding(c net.Conn) ([]byte, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	cs := tc.ConnectionState()
	b, err := cs.ExportKeyingMaterial(bindingLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("TLS channel binding: %w", err)
	}
	return b, nil
}

// tlsError classifies a failed TLS handshake: a certificate the other side
// does not trust is a refusal, bytes that are not TLS a protocol error,
// and a connection that broke an abort.
func tlsError(err error) error {
	var (
		verr  *tls.CertificateVerificationError
		alert tls.AlertError
		ua    x509.UnknownAuthorityError
		he    x509.HostnameError
		ci    x509.CertificateInvalidError
		rh    tls.RecordHeaderError
		ne    net.Error
	)
	switch {
	case errors.As(err, &verr), errors.As(err, &alert), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci),
		strings.Contains(err.Error(), "certificate"):
		return fmt.Errorf("%w: TLS: %w", ErrDenied, err)
	case errors.As(err, &rh):
		return fmt.Errorf("%w: TLS: %w", ErrProtocol, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne):
		return fmt.Errorf("%w: TLS: %w", ErrAborted, err)
	}
	return fmt.Errorf("%w: TLS: %w", ErrProtocol, err)
}

func isTCP(c net.Conn) bool {
	_, ok := c.(*net.TCPConn)
	return ok
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
