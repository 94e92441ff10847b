package wire

import (
	"encoding/binary"
	"fmt"
)

// Frame header layout (little endian, 16 bytes):
//
//	[0:4]  payload length (bytes after the header)
//	[4]    kind
//	[5]    version (frameVersion)
//	[6:8]  method
//	[8:16] request id
const (
	headerSize   = 16
	frameVersion = 1
	maxMethod    = 1<<16 - 1
)

type frameKind uint8

const (
	kindRequest  frameKind = 1 // expects a response with the same id
	kindOneWay   frameKind = 2 // no response; id is zero
	kindResponse frameKind = 3 // payload is the response message
	kindError    frameKind = 4 // payload is a protos.WireError
)

func (k frameKind) String() string {
	switch k {
	case kindRequest:
		return "request"
	case kindOneWay:
		return "oneway"
	case kindResponse:
		return "response"
	case kindError:
		return "error-response"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

type header struct {
	length uint32
	kind   frameKind
	method uint16
	id     uint64
}

func putHeader(b []byte, h header) {
	_ = b[headerSize-1]
	binary.LittleEndian.PutUint32(b[0:4], h.length)
	b[4] = byte(h.kind)
	b[5] = frameVersion
	binary.LittleEndian.PutUint16(b[6:8], h.method)
	binary.LittleEndian.PutUint64(b[8:16], h.id)
}

// parseHeader validates everything that can be checked without the
// payload, so a peer speaking some other protocol (or a corrupted stream)
// is rejected before we allocate a buffer for a bogus length.
func parseHeader(b []byte, maxFrame int) (header, error) {
	_ = b[headerSize-1]
	h := header{
		length: binary.LittleEndian.Uint32(b[0:4]),
		kind:   frameKind(b[4]),
		method: binary.LittleEndian.Uint16(b[6:8]),
		id:     binary.LittleEndian.Uint64(b[8:16]),
	}
	if v := b[5]; v != frameVersion {
		return h, fmt.Errorf("%w: unsupported version %d (want %d); header % x", ErrMalformedFrame, v, frameVersion, b[:headerSize])
	}
	if h.kind < kindRequest || h.kind > kindError {
		return h, fmt.Errorf("%w: unknown frame kind %d; header % x", ErrMalformedFrame, uint8(h.kind), b[:headerSize])
	}
	if uint64(h.length) > uint64(maxFrame) {
		return h, fmt.Errorf("%w: %s frame for method %d declares %d payload bytes, limit is %d", ErrFrameTooLarge, h.kind, h.method, h.length, maxFrame)
	}
	return h, nil
}
