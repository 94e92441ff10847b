package auth

import "errors"

// Sentinel errors. Errors of this package wrap one of them.
var (
	// ErrBadToken: a token (or token file) that cannot be used.
	ErrBadToken = errors.New("auth: bad cluster token")
	// ErrNoToken: a cluster that needs a token, and none was found.
	ErrNoToken = errors.New("auth: no cluster token")
	// ErrDenied: the peer does not hold the cluster's key (or refused
	// ours).
	ErrDenied = errors.New("auth: authentication failed")
	// ErrProtocol: the peer does not speak goray's handshake: another
	// program, another version, or garbage.
	ErrProtocol = errors.New("auth: not a goray handshake")
	// ErrAborted: the connection broke, or the peer left, before the
	// handshake finished (not an attempt to authenticate).
	ErrAborted = errors.New("auth: handshake aborted")
	// ErrTooManyConns: a connection refused because its peer already has
	// as many as it may (or too many handshakes are under way).
	ErrTooManyConns = errors.New("auth: too many connections")
	// ErrBadCredentials: credentials handed to a worker that cannot be
	// decoded, or a TLS file that cannot be loaded.
	ErrBadCredentials = errors.New("auth: bad credentials")
)
