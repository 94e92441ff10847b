package wire

import (
	"errors"
	"fmt"

	"github.com/goray/goray/protos"
)

// Sentinel errors. Errors returned by this package wrap one of these, so
// callers classify failures with errors.Is rather than string matching.
var (
	// ErrClosed reports that the connection (or server) is closed. Every
	// call pending when a connection dies completes with an error wrapping
	// ErrClosed; if the peer vanished the io error is wrapped as well.
	ErrClosed = errors.New("wire: connection closed")
	// ErrFrameTooLarge reports a frame whose payload exceeds the
	// configured maximum, on either the sending or the receiving side.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrMalformedFrame reports a frame header the reader cannot trust
	// (unknown kind, bad version, ...). The connection is closed because
	// the byte stream can no longer be resynchronised.
	ErrMalformedFrame = errors.New("wire: malformed frame")
	// ErrBadEndpoint reports an endpoint string that is not
	// "unix:/path" or "tcp:host:port".
	ErrBadEndpoint = errors.New("wire: bad endpoint")
	// ErrBadMethod reports a method id that does not fit the frame header.
	ErrBadMethod = errors.New("wire: method id out of range")
)

// Well-known RemoteError codes produced by this package. Applications may
// use any other code strings.
const (
	// CodeUnimplemented: no handler for the method on the peer.
	CodeUnimplemented = "unimplemented"
	// CodeInternal: the peer's handler panicked.
	CodeInternal = "internal"
)

// RemoteError is the error a Call (or a Go callback) returns when the peer
// answered with ReplyError. Handlers may also pass a *RemoteError to
// ReplyError to choose the code the caller sees.
type RemoteError struct {
	// Method is the method of the failed call (zero on the handler side).
	Method  protos.Method
	Code    string
	Message string
}

// NewError returns a *RemoteError for handlers that want to send a code.
func NewError(code, format string, args ...any) *RemoteError {
	return &RemoteError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *RemoteError) Error() string {
	s := "wire: remote error"
	if e.Method != 0 {
		s += " from " + e.Method.String()
	}
	if e.Code != "" {
		s += " [" + e.Code + "]"
	}
	return s + ": " + e.Message
}

// closedError builds the error a connection dies with: always wrapping
// ErrClosed so callers need only one errors.Is check, and the cause so the
// reason (EOF, reset, malformed frame) stays visible.
func closedError(cause error) error {
	if cause == nil || errors.Is(cause, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, cause)
}
