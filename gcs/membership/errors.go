package membership

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them (and,
// for failures of NATS itself, the nats.go error too), so callers test with
// errors.Is.
var (
	// ErrInvalidOptions: Options cannot work (bad bucket name, TTL below
	// MinTTL, Heartbeat not shorter than TTL, replica count out of range).
	ErrInvalidOptions = errors.New("membership: invalid options")
	// ErrInvalidID: the member id is not usable as a NATS KV key.
	ErrInvalidID = errors.New("membership: invalid member id")
	// ErrBucketMismatch: the bucket exists with a configuration that would
	// break expiry (another TTL, no limit markers, history kept).
	ErrBucketMismatch = errors.New("membership: bucket configuration mismatch")
	// ErrAlreadyJoined: this Registry already keeps that id alive.
	ErrAlreadyJoined = errors.New("membership: already joined")
	// ErrNotJoined: the Membership ended (Leave, its context, or Close).
	ErrNotJoined = errors.New("membership: not joined")
	// ErrClosed: the Registry was closed.
	ErrClosed = errors.New("membership: closed")
)
