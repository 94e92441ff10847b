package core

import (
	"fmt"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/localcluster"
)

// A goray cluster authenticates every connection with its token (see
// docs/security.md). Init finds the token of the cluster it joins in this
// order: AuthTokenFile, GORAY_AUTH_TOKEN, GORAY_AUTH_TOKEN_FILE, then the
// token of the cluster `goray start --head` runs on this machine. The
// embedded cluster makes a token of its own; its workers get keys derived
// from it, never the token.

// AuthTokenFile names the file (mode 0600) holding the token of the
// cluster Init joins: a copy of the head's <session dir>/auth_token.
func AuthTokenFile(path string) InitOption { return func(o *initOptions) { o.tokenFile = path } }

// AuthNone joins, or starts, a cluster without authentication (`goray
// start --auth none`, or GORAY_AUTH=none): anyone who reaches its ports
// can run code on it. For benchmarks on a machine of one's own only.
func AuthNone() InitOption { return func(o *initOptions) { o.authNone = true } }

// TLS turns on mutual TLS with the cluster (certificate, its key, and the
// CA that signed every certificate of the cluster); GORAY_TLS_CERT,
// GORAY_TLS_KEY and GORAY_TLS_CA do the same. An embedded cluster then
// uses TLS for its NATS and TCP connections too.
func TLS(cert, key, ca string) InitOption {
	return func(o *initOptions) { o.tls = auth.TLSFiles{Cert: cert, Key: key, CA: ca} }
}

// credentials builds this driver's credentials: for the embedded cluster
// (embedded) a new token, else the token of the cluster at addr.
func (o *initOptions) credentials(embedded bool, addr string) (*auth.Credentials, error) {
	src := auth.Source{TokenFile: o.tokenFile, LocalTokenFile: localcluster.TokenFileFor(o.address), Embedded: embedded, TLS: o.tls}
	if o.authNone {
		src.Mode = auth.ModeNone
	}
	creds, _, err := auth.Resolve(src)
	if err != nil && !embedded {
		return nil, fmt.Errorf("goray: join cluster at %s: %w", addr, err)
	}
	if err != nil {
		return nil, fmt.Errorf("goray: %w", err)
	}
	return creds, nil
}
