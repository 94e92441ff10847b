package transfer

import (
	"errors"
	"fmt"

	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
)

// Sentinel errors. Pull wraps them with the object and the address, so
// match with errors.Is.
var (
	// ErrClosed means the Puller was closed: pulls in flight are cancelled
	// and new ones refused.
	ErrClosed = errors.New("transfer: puller closed")
	// ErrServerClosed is what Serve returns once Close was called.
	ErrServerClosed = errors.New("transfer: server closed")
	// ErrProtocol means the peer sent something that is not this protocol,
	// or replies that contradict each other (an object changing size
	// between chunks). The connection is dropped.
	ErrProtocol = errors.New("transfer: protocol error")
	// ErrRemote marks errors the serving node reported; the concrete error
	// is a *RemoteError.
	ErrRemote = errors.New("transfer: remote error")
)

// RemoteError is a chunk request the serving node refused. Besides
// ErrRemote it matches the objstore sentinel of its code, so that a pull of
// an object the remote does not have satisfies
// errors.Is(err, objstore.ErrObjectNotFound) like a local miss does.
type RemoteError struct {
	Addr    string
	ID      protos.ObjectID
	Code    protos.TransferErrorCode
	Message string // the remote's own error text
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("transfer: %s at %s: %s: %s", e.ID, e.Addr, e.Code, e.Message)
}

// Unwrap yields ErrRemote and the objstore sentinel matching Code, if any.
func (e *RemoteError) Unwrap() []error {
	errs := []error{ErrRemote}
	if s := codeSentinel(e.Code); s != nil {
		errs = append(errs, s)
	}
	return errs
}

func codeSentinel(c protos.TransferErrorCode) error {
	switch c {
	case protos.TransferErrorCode_TRANSFER_NOT_FOUND:
		return objstore.ErrObjectNotFound
	case protos.TransferErrorCode_TRANSFER_SPILL_LOST:
		return objstore.ErrSpillLost
	case protos.TransferErrorCode_TRANSFER_SPILL_CORRUPT:
		return objstore.ErrSpillCorrupt
	case protos.TransferErrorCode_TRANSFER_STORE_FULL:
		return objstore.ErrStoreFull
	case protos.TransferErrorCode_TRANSFER_UNAVAILABLE:
		return ErrServerClosed
	}
	return nil
}

// errorCode classifies a serving-side failure for the wire.
func errorCode(err error) protos.TransferErrorCode {
	switch {
	case errors.Is(err, objstore.ErrObjectNotFound):
		return protos.TransferErrorCode_TRANSFER_NOT_FOUND
	case errors.Is(err, objstore.ErrSpillLost):
		return protos.TransferErrorCode_TRANSFER_SPILL_LOST
	case errors.Is(err, objstore.ErrSpillCorrupt):
		return protos.TransferErrorCode_TRANSFER_SPILL_CORRUPT
	case errors.Is(err, objstore.ErrStoreFull):
		return protos.TransferErrorCode_TRANSFER_STORE_FULL
	case errors.Is(err, objstore.ErrStoreClosed), errors.Is(err, objstore.ErrSegmentClosed):
		return protos.TransferErrorCode_TRANSFER_UNAVAILABLE
	}
	return protos.TransferErrorCode_TRANSFER_INTERNAL
}
