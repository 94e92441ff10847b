package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// ParseEndpoint splits "unix:/path" or "tcp:host:port" into the network
// and address net.Dial expects.
func ParseEndpoint(endpoint string) (network, addr string, err error) {
	network, addr, ok := strings.Cut(endpoint, ":")
	if !ok || addr == "" {
		return "", "", fmt.Errorf("%w: %q (want unix:/path or tcp:host:port)", ErrBadEndpoint, endpoint)
	}
	switch network {
	case "unix", "tcp", "tcp4", "tcp6":
		return network, addr, nil
	}
	return "", "", fmt.Errorf("%w: %q: unknown network %q", ErrBadEndpoint, endpoint, network)
}

// endpointOf formats an address back into endpoint syntax.
func endpointOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	network := a.Network()
	if strings.HasPrefix(network, "tcp") {
		network = "tcp"
	}
	return network + ":" + a.String()
}

// Listen opens a listener on endpoint. For unix endpoints a socket file left
// behind by a dead process is removed first, so restarts do not fail with
// "address already in use"; a socket that still has a live server, or a
// path that is not a socket, is left alone and reported as an error.
func Listen(endpoint string) (net.Listener, error) {
	network, addr, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if network == "unix" && !strings.HasPrefix(addr, "@") {
		if err := removeStaleSocket(addr); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("wire: listen %s: %w", endpoint, err)
	}
	return l, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wire: listen unix:%s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("wire: listen unix:%s: path exists and is not a socket", path)
	}
	probe, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err == nil {
		probe.Close()
		return fmt.Errorf("wire: listen unix:%s: %w (a server is accepting on it)", path, syscall.EADDRINUSE)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("wire: listen unix:%s: removing stale socket: %w", path, err)
	}
	return nil
}

// Dial connects to endpoint and starts the connection's reader and flusher.
// h serves requests the peer sends on this connection; it may be nil, in
// which case peer requests are answered with CodeUnimplemented.
func Dial(ctx context.Context, endpoint string, h Handler, opts ...Option) (*Conn, error) {
	network, addr, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("wire: dial %s: %w", endpoint, err)
	}
	o := buildOptions(opts)
	if o.auth != nil {
		if nc, err = o.auth.Client(ctx, nc); err != nil {
			return nil, fmt.Errorf("wire: dial %s: %w", endpoint, err)
		}
	}
	return newConn(nc, h, endpoint, &o), nil
}

// tuneSocket applies per-socket settings. Unix sockets get larger kernel
// buffers because the default (~200 KiB) caps how much a single coalesced
// write can hand off, and large payloads otherwise ping-pong in small
// chunks between the two processes. TCP buffers are left to the kernel's
// autotuning, which setting SO_RCVBUF would disable.
func tuneSocket(nc net.Conn, o *options) {
	// An authenticated (or TLS) conn wraps the socket.
	for {
		w, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		nc = w.NetConn()
	}
	switch c := nc.(type) {
	case *net.TCPConn:
		_ = c.SetNoDelay(true)
	case *net.UnixConn:
		if o.sockBuf > 0 {
			_ = c.SetReadBuffer(o.sockBuf)
			_ = c.SetWriteBuffer(o.sockBuf)
		}
	}
}
