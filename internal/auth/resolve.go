package auth

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Environment variables every goray process reads (`goray` commands take
// flags with the same meaning).
const (
	// EnvToken holds the cluster token itself (64 hex digits).
	EnvToken = "GORAY_AUTH_TOKEN"
	// EnvTokenFile names a file holding the token (mode 0600).
	EnvTokenFile = "GORAY_AUTH_TOKEN_FILE"
	// EnvAuth is "token" (the default) or "none": a cluster without
	// authentication, for benchmarks (`goray start --auth none`).
	EnvAuth = "GORAY_AUTH"
)

// Mode is how a cluster authenticates.
type Mode string

// The modes.
const (
	ModeToken Mode = "token"
	ModeNone  Mode = "none"
)

// ParseMode reads --auth or GORAY_AUTH ("" means token).
func ParseMode(s string) (Mode, error) {
	switch Mode(strings.ToLower(strings.TrimSpace(s))) {
	case "", ModeToken:
		return ModeToken, nil
	case ModeNone:
		return ModeNone, nil
	}
	return "", fmt.Errorf("invalid auth mode %q: want token or none", s)
}

// ModeFromEnv reads GORAY_AUTH.
func ModeFromEnv() (Mode, error) {
	m, err := ParseMode(os.Getenv(EnvAuth))
	if err != nil {
		return "", fmt.Errorf("%s: %w", EnvAuth, err)
	}
	return m, nil
}

// FindToken finds the cluster token a process should use, in this order:
// the file given by flag or option (file), GORAY_AUTH_TOKEN,
// GORAY_AUTH_TOKEN_FILE, then the token file of the cluster started on
// this machine (local, "" if none). It says where the token came from; a
// token named but unreadable is an error, not a reason to look further.
func FindToken(file, local string) (Token, string, error) {
	if file != "" {
		t, err := ReadTokenFile(file)
		return t, file, err
	}
	if v := os.Getenv(EnvToken); v != "" {
		t, err := ParseToken(v)
		if err != nil {
			return Token{}, "", fmt.Errorf("%s: %w", EnvToken, err)
		}
		return t, EnvToken, nil
	}
	if p := os.Getenv(EnvTokenFile); p != "" {
		t, err := ReadTokenFile(p)
		if err != nil {
			return Token{}, "", fmt.Errorf("%s: %w", EnvTokenFile, err)
		}
		return t, p, nil
	}
	if local != "" {
		if _, err := os.Stat(local); err == nil {
			t, err := ReadTokenFile(local)
			return t, local, err
		}
	}
	return Token{}, "", fmt.Errorf("%w: give the cluster's token with --auth-token-file FILE, %s or %s (on the head's machine, `goray start --head` wrote it to <session dir>/%s)",
		ErrNoToken, EnvTokenFile, EnvToken, TokenFileName)
}

// Source says where a process finds its credentials. Zero fields fall
// back to the environment (GORAY_AUTH, GORAY_TLS_*, GORAY_NATS_*).
type Source struct {
	// Mode is ModeToken or ModeNone; "" reads GORAY_AUTH.
	Mode Mode
	// TokenFile and LocalTokenFile are FindToken's arguments.
	TokenFile, LocalTokenFile string
	// NewToken makes a token when none is given (a head): by flag or
	// environment if one is, else a fresh one. Otherwise the token must
	// be found.
	NewToken bool
	// Embedded: the process starts a cluster of its own (sdk.Init
	// without an address): a new token whatever the environment says,
	// and its own NATS, so no external NATS credentials.
	Embedded bool
	// TLS files; zero reads GORAY_TLS_*.
	TLS TLSFiles
	// NATS: an external NATS's credentials; zero reads GORAY_NATS_*.
	NATS NATSCreds
}

// Resolve returns the credentials s describes, and whether it made a new
// token.
func Resolve(s Source) (creds *Credentials, generated bool, err error) {
	files := TLSFilesFromEnv()
	if !s.TLS.IsZero() {
		files = s.TLS
	}
	var t *TLS
	if !files.IsZero() {
		if t, err = files.Load(); err != nil {
			return nil, false, err
		}
	}
	mode := s.Mode
	if mode == "" {
		if mode, err = ModeFromEnv(); err != nil {
			return nil, false, err
		}
	}
	switch {
	case mode == ModeNone:
		creds = None(t)
	default:
		var tok Token
		if !s.Embedded {
			tok, _, err = FindToken(s.TokenFile, s.LocalTokenFile)
		}
		if s.Embedded || (s.NewToken && errors.Is(err, ErrNoToken)) {
			tok, err = GenerateToken()
			generated = true
		}
		if err != nil {
			return nil, false, err
		}
		creds = FromToken(tok, t)
	}
	if s.Embedded {
		return creds, generated, nil
	}
	n := NATSCredsFromEnv()
	if !s.NATS.IsZero() {
		n = s.NATS
		if n.User != "" && n.Password == "" {
			n.Password = os.Getenv(EnvNATSPassword)
		}
	}
	if err := n.Validate(); err != nil {
		return nil, false, err
	}
	if !n.IsZero() {
		creds = creds.WithExternalNATS(n)
	}
	return creds, generated, nil
}
