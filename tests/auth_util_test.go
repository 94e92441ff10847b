package tests

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
)

// tokenFile is the token file of the head whose session is dir.
func tokenFile(dir string) string { return filepath.Join(dir, auth.TokenFileName) }

// sessionCreds are the credentials of the cluster whose head's session is
// dir, as a goray command on the head's machine finds them.
func sessionCreds(t *testing.T, dir string) *auth.Credentials {
	t.Helper()
	tok, err := auth.ReadTokenFile(tokenFile(dir))
	if err != nil {
		t.Fatalf("the head's token: %v", err)
	}
	return auth.FromToken(tok, tlsFromEnv(t))
}

// tlsFromEnv is the TLS of GORAY_TLS_* (make test-tls), or nil.
func tlsFromEnv(t *testing.T) *auth.TLS {
	t.Helper()
	tl, err := auth.TLSFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

// dialAs connects to the NATS of the cluster at addr (head session dir)
// as role.
func dialAs(ctx context.Context, t *testing.T, addr, dir string, role auth.Role) *gcs.Client {
	t.Helper()
	opts, err := sessionCreds(t, dir).NATSOptions(role)
	if err != nil {
		t.Fatal(err)
	}
	c, err := gcs.Dial(ctx, addr, zerolog.Nop(), opts...)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", addr, role, err)
	}
	return c
}

// natsTLS are the nats.go options for the suite's TLS, if it runs with it.
func natsTLS(t *testing.T) []nats.Option {
	t.Helper()
	if tl := tlsFromEnv(t); tl != nil {
		return []nats.Option{nats.Secure(tl.ClientConfig(""))}
	}
	return nil
}
