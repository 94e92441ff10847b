package gcs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/goray/goray/protos"
)

// Sentinel errors. Errors returned by this package wrap one of them, so
// callers test with errors.Is; a GcsError arriving in a reply is mapped back
// to the sentinel named by its code.
var (
	// ErrNotFound: the node, job, function table or key does not exist.
	ErrNotFound = errors.New("gcs: not found")
	// ErrInvalid: the request was malformed (undecodable protobuf, bad id,
	// missing field).
	ErrInvalid = errors.New("gcs: invalid request")
	// ErrUnavailable: the GCS or its storage could not answer (no GCS on
	// the subject, timeout, JetStream write failed, shutting down).
	ErrUnavailable = errors.New("gcs: unavailable")
	// ErrInternal: the GCS failed in a way the caller cannot fix, or sent a
	// reply this client does not understand.
	ErrInternal = errors.New("gcs: internal error")
	// ErrAlreadyExists: the name is taken (a live actor of that name exists
	// in the namespace).
	ErrAlreadyExists = errors.New("gcs: already exists")
	// ErrClosed: the Server or Client was already shut down.
	ErrClosed = errors.New("gcs: closed")
	// ErrUnauthorized: the cluster's NATS refused this client's
	// credentials (a wrong or missing cluster token).
	ErrUnauthorized = errors.New("gcs: not authorized")
)

// Codes carried in GcsError.code, one per sentinel.
const (
	CodeNotFound      = "not_found"
	CodeInvalid       = "invalid"
	CodeUnavailable   = "unavailable"
	CodeInternal      = "internal"
	CodeAlreadyExists = "already_exists"
)

var codeSentinels = map[string]error{
	CodeNotFound:      ErrNotFound,
	CodeInvalid:       ErrInvalid,
	CodeUnavailable:   ErrUnavailable,
	CodeInternal:      ErrInternal,
	CodeAlreadyExists: ErrAlreadyExists,
}

// gcsErrorf builds the wire error for a reply. kind is one of the sentinels;
// the message holds only the detail, since the code already says the kind.
func gcsErrorf(kind error, format string, args ...any) *protos.GcsError {
	return &protos.GcsError{Code: codeOf(kind), Message: fmt.Sprintf(format, args...)}
}

// toGcsError converts an error made inside the GCS (wrapping a sentinel as
// "sentinel: detail") to its wire form; the sentinel text is dropped from
// the message because the code carries it and the client re-adds it.
func toGcsError(err error) *protos.GcsError {
	code := codeOf(err)
	msg := err.Error()
	if s, ok := codeSentinels[code]; ok {
		msg = strings.TrimPrefix(msg, s.Error()+": ")
	}
	return &protos.GcsError{Code: code, Message: msg}
}

func codeOf(kind error) string {
	for code, sentinel := range codeSentinels {
		if errors.Is(kind, sentinel) {
			return code
		}
	}
	if errors.Is(kind, ErrClosed) {
		return CodeUnavailable
	}
	return CodeInternal
}

// replyError turns a GcsError from the wire into a Go error wrapping the
// sentinel for its code; nil stays nil.
func replyError(subject string, e *protos.GcsError) error {
	if e == nil {
		return nil
	}
	sentinel, ok := codeSentinels[e.GetCode()]
	if !ok {
		sentinel = ErrInternal
	}
	return fmt.Errorf("%w: %s (%s)", sentinel, e.GetMessage(), subject)
}
