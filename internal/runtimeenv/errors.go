package runtimeenv

import "errors"

// Errors of packing, unpacking and reading binaries, for errors.Is; the
// errors returned wrap them with what was wrong and where.
var (
	// ErrTooLarge: a package over its content cap (or, unpacking, its
	// entry or header limits).
	ErrTooLarge = errors.New("runtime env package too large")
	// ErrUnsafePath: an entry of a package being unpacked that would
	// write, or lead, outside the target directory.
	ErrUnsafePath = errors.New("unsafe path in runtime env package")
	// ErrUnsupportedFile: a file that cannot be packed (a socket, a
	// device, a link leading out of the package) or unpacked (a hard
	// link, a device).
	ErrUnsupportedFile = errors.New("unsupported file in runtime env")
	// ErrDigestMismatch: an unpacked package that is not the one wanted.
	ErrDigestMismatch = errors.New("runtime env package digest mismatch")
	// ErrUnknownPlatform: a file Platform cannot read a GOOS/GOARCH from.
	ErrUnknownPlatform = errors.New("not a Go binary of a known platform")
)
