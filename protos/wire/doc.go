// Package wire is goray's lean inter-process transport: protobuf messages
// framed over stream sockets (unix domain sockets within a node, TCP across
// nodes) with request/response multiplexing, one-way notifications,
// pipelining and write coalescing. It carries the hot paths: task pushes
// from an owner to a leased worker, and requests to the raylet.
//
// # Endpoints
//
// Addresses are written "unix:/path/to.sock" or "tcp:host:port". Listen
// removes a stale unix socket file (one nobody accepts on) before binding.
//
// # Authentication
//
// The package frames; it does not decide who may connect. goray's servers
// hand NewServer a listener that accepts only authenticated connections
// (internal/auth.Listener: a challenge-response handshake on the cluster's
// key, and mutual TLS over TCP when configured), and Dial runs the dialling
// side of that handshake when given WithAuthenticator. Until then no frame
// is read, so everything below applies only to authenticated peers.
//
// # Frame format
//
// Every message is a 16-byte header followed by a protobuf payload:
//
//	offset size  field
//	0      4     payload length in bytes, little endian (header excluded)
//	4      1     kind: 1 request, 2 one-way, 3 response, 4 error response
//	5      1     version, currently 1
//	6      2     method (protos.Method), little endian
//	8      8     request id, little endian (0 for one-way)
//
// A response or error response echoes the id (and method) of its request.
// The payload of an error response is a protos.WireError. Ids are chosen
// by the side that sends the request, so both ends may issue requests on
// the same connection without coordinating. A header with an unknown kind
// or version, or a length above the configured maximum (default 512 MiB),
// cannot be skipped safely, so the connection is closed with an error
// wrapping ErrMalformedFrame or ErrFrameTooLarge and the problem is logged.
//
// # Threading model
//
// Each Conn runs two goroutines.
//
// The flusher is the only writer of the socket. Call, Go, Notify and Reply
// marshal their message (proto.MarshalOptions.MarshalAppend) directly into
// a shared write buffer under a mutex and wake the flusher if the buffer
// was empty. The flusher swaps that buffer with a spare and writes it with
// one syscall, so appenders never wait on the socket, and everything that
// accumulated while a write was in progress goes out in the next single
// write. There are no timers: an idle conn pays one goroutine wake-up per
// message, a busy one coalesces automatically.
//
// The reader is the only reader of the socket. It reads through a 64 KiB
// bufio.Reader and hands frames that fit to the handler or to the waiting
// call straight out of that buffer; larger frames are read into a buffer of
// their own, which grows as the payload arrives (from 2 MiB, doubling), so
// a header that declares more than its sender sends costs what was sent. Requests are served inline on the reader goroutine, one at
// a time in arrival order, so a Handler must not block (and must never Call
// on its own connection); slow work moves to another goroutine that answers
// later with Conn.Reply, which is safe from any goroutine. Responses complete
// pending calls on the reader goroutine: Call's response is unmarshaled there
// and the blocked caller woken through a pooled channel; Go's callback runs
// there directly with the payload still in the read buffer.
//
// When a conn closes — Close, the peer going away, a write error or a bad
// frame — every pending call completes with an error wrapping ErrClosed (and
// the cause), Done is closed, and the server's OnConnClose hook runs. A local
// Close first lets the flusher write what was already queued.
//
// Nothing bounds the write buffer: callers bound memory by bounding their
// own in-flight work (as the owner's lease-based task pushing does).
package wire
