package transfer

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"google.golang.org/protobuf/proto"
)

// Every message is a 4-byte little-endian length and the protobuf
// encoding; a reply's object bytes follow its message unframed, so they can
// go from one store's shared memory to the other's without a copy in user
// space.
const (
	prefixSize = 4
	// maxMessage bounds a message's length so that a peer speaking some
	// other protocol is caught before a bogus length is allocated. Real
	// messages are tens of bytes plus an error text.
	maxMessage = 64 << 10
	// maxErrorMessage is where the server cuts error texts.
	maxErrorMessage = 4 << 10
)

// appendMessage appends m, framed, to buf[:0].
func appendMessage(buf []byte, m proto.Message) ([]byte, error) {
	buf = append(buf[:0], 0, 0, 0, 0)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return buf, fmt.Errorf("transfer: marshal %T: %w", m, err)
	}
	if len(buf)-prefixSize > maxMessage {
		return buf, fmt.Errorf("transfer: %T of %d bytes exceeds %d: %w", m, len(buf)-prefixSize, maxMessage, ErrProtocol)
	}
	binary.LittleEndian.PutUint32(buf, uint32(len(buf)-prefixSize))
	return buf, nil
}

// readMessage reads one framed message into m, using buf as scratch space,
// and returns buf (grown if needed) for reuse. io.EOF means the peer
// closed the connection cleanly between messages.
func readMessage(r io.Reader, buf []byte, m proto.Message) ([]byte, error) {
	buf = buf[:cap(buf)]
	if len(buf) < prefixSize {
		buf = make([]byte, 256)
	}
	if _, err := io.ReadFull(r, buf[:prefixSize]); err != nil {
		return buf, err
	}
	n := int(binary.LittleEndian.Uint32(buf))
	if n > maxMessage {
		return buf, fmt.Errorf("transfer: message of %d bytes exceeds %d (prefix % x): %w", n, maxMessage, buf[:prefixSize], ErrProtocol)
	}
	if n > len(buf) {
		buf = make([]byte, n)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	if err := proto.Unmarshal(buf[:n], m); err != nil {
		return buf, fmt.Errorf("transfer: unmarshal %T: %v: %w", m, err, ErrProtocol)
	}
	return buf, nil
}

// tuneConn sets the socket buffers of a transfer connection. Zero leaves
// the kernel's autotuning alone.
func tuneConn(c net.Conn, sockBuf int) {
	tc, ok := socket(c).(*net.TCPConn)
	if !ok || sockBuf <= 0 {
		return
	}
	// Errors only mean the kernel kept its own sizes, which still works.
	_ = tc.SetReadBuffer(sockBuf)
	_ = tc.SetWriteBuffer(sockBuf)
}

// socket is the socket under an authenticated (or TLS) connection.
func socket(c net.Conn) net.Conn {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = w.NetConn()
	}
}

// plain is the socket under an authenticated connection without TLS, so
// that replies go out with one writev; a TLS connection is written through
// TLS.
func plain(c net.Conn) net.Conn {
	if p, ok := c.(interface{ Plain() net.Conn }); ok {
		if raw := p.Plain(); raw != nil {
			return raw
		}
	}
	return c
}
