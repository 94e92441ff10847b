package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// TokenSize is the size of a cluster token in bytes (256 bits).
const TokenSize = 32

// Token is a cluster's secret. Every key goray uses (the wire and transfer
// handshake key, the NATS users' nkeys, the metrics bearer token) is
// derived from it, so the token itself never crosses the network and
// worker processes never hold it.
//
// A Token prints as "[redacted]" (String, GoString, zerolog and fmt's %v
// all go through String) so that it cannot land in a log by accident; Hex
// gives the real text for the one place that writes it to a file.
type Token struct{ b [TokenSize]byte }

// GenerateToken returns a new random token.
func GenerateToken() (Token, error) {
	var t Token
	if _, err := io.ReadFull(rand.Reader, t.b[:]); err != nil {
		return Token{}, fmt.Errorf("auth: generate token: %w", err)
	}
	return t, nil
}

// ParseToken reads a token written as 64 hex digits (surrounding space is
// ignored, as a file's trailing newline is).
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if len(s) != 2*TokenSize {
		return Token{}, fmt.Errorf("%w: want %d hex digits, got %d characters", ErrBadToken, 2*TokenSize, len(s))
	}
	var t Token
	if _, err := hex.Decode(t.b[:], []byte(s)); err != nil {
		return Token{}, fmt.Errorf("%w: not hex: %v", ErrBadToken, err)
	}
	if t.IsZero() {
		return Token{}, fmt.Errorf("%w: all zeros", ErrBadToken)
	}
	return t, nil
}

// IsZero reports whether t is the zero Token (no token).
func (t Token) IsZero() bool { return t.b == [TokenSize]byte{} }

// Hex is the token's text form, for the token file.
func (t Token) Hex() string { return hex.EncodeToString(t.b[:]) }

// String never shows the token.
func (t Token) String() string { return "[redacted]" }

// GoString never shows the token.
func (t Token) GoString() string { return "auth.Token{[redacted]}" }

// derive returns the key for purpose: HMAC-SHA256 keyed by the token, so
// knowing one derived key (a worker's wire key, say) tells nothing about
// the token or the other keys.
func (t Token) derive(purpose string) [32]byte {
	m := hmac.New(sha256.New, t.b[:])
	m.Write([]byte("goray/v1/" + purpose))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// MetricsBearer is the bearer token a Prometheus scraper presents to a
// metrics endpoint. It is derived, so a scrape config never holds the
// cluster token.
func (t Token) MetricsBearer() string {
	k := t.derive("metrics")
	return hex.EncodeToString(k[:])
}

// DashboardBearer is the key a script presents to the dashboard's API
// ("Authorization: Bearer <key>"): derived, so that a Grafana data source
// or a script never holds the cluster token.
func (t Token) DashboardBearer() string {
	k := t.derive("dashboard")
	return hex.EncodeToString(k[:])
}

// TokenFileName is the token's file name in a head's session directory.
const TokenFileName = "auth_token"

// ReadTokenFile reads a token file. A file that others than its owner may
// read is refused: the token is the cluster's only secret.
func ReadTokenFile(path string) (Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return Token{}, fmt.Errorf("auth: token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Token{}, fmt.Errorf("auth: token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Token{}, fmt.Errorf("%w: %s is readable by others (mode %v); chmod 600 it", ErrBadToken, path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4<<10))
	if err != nil {
		return Token{}, fmt.Errorf("auth: token file %s: %w", path, err)
	}
	t, err := ParseToken(string(b))
	if err != nil {
		return Token{}, fmt.Errorf("token file %s: %w", path, err)
	}
	return t, nil
}

// WriteTokenFile writes t to path with mode 0600, atomically: a reader
// sees the old file or the whole new one.
func WriteTokenFile(path string, t Token) error {
	if t.IsZero() {
		return fmt.Errorf("%w: refusing to write an empty token", ErrBadToken)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("auth: write token file: %w", err)
	}
	name := tmp.Name()
	err = errors.Join(tmp.Chmod(0o600), writeAll(tmp, t.Hex()+"\n"), tmp.Close())
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("auth: write token file %s: %w", path, err)
	}
	return nil
}

func writeAll(f *os.File, s string) error {
	_, err := f.WriteString(s)
	return err
}
