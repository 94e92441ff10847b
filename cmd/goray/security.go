package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/localcluster"
)

// securityOptions are the flags every command takes to authenticate to a
// cluster: its token, TLS files, and an external NATS's credentials. Each
// has an environment variable (GORAY_AUTH_TOKEN_FILE, GORAY_TLS_*, ...);
// docs/security.md explains them.
type securityOptions struct {
	tokenFile string
	mode      string
	tls       auth.TLSFiles
	nats      auth.NATSCreds
}

func (s *securityOptions) register(f *pflag.FlagSet) {
	f.StringVar(&s.tokenFile, "auth-token-file", "", "file holding the cluster's token (default: $GORAY_AUTH_TOKEN, $GORAY_AUTH_TOKEN_FILE, then the token of the cluster started on this machine)")
	f.StringVar(&s.mode, "auth", "", "token (the default: every connection authenticates) or none (no authentication, for benchmarks on a machine of your own); default $GORAY_AUTH")
	f.StringVar(&s.tls.Cert, "tls-cert", "", "TLS certificate for mutual TLS on every connection (default $GORAY_TLS_CERT); see goray tls generate")
	f.StringVar(&s.tls.Key, "tls-key", "", "the TLS certificate's key (default $GORAY_TLS_KEY)")
	f.StringVar(&s.tls.CA, "tls-ca", "", "the CA that signed every certificate of the cluster (default $GORAY_TLS_CA)")
	f.StringVar(&s.nats.CredsFile, "nats-creds", "", "with an external NATS (--nats): its credentials file (default $GORAY_NATS_CREDS)")
	f.StringVar(&s.nats.NkeyFile, "nats-nkey", "", "with an external NATS: an nkey seed file (default $GORAY_NATS_NKEY)")
	f.StringVar(&s.nats.User, "nats-user", "", "with an external NATS: user name (default $GORAY_NATS_USER; the password comes from $GORAY_NATS_PASSWORD)")
}

// resolveMode reads --auth, then GORAY_AUTH.
func (s *securityOptions) resolveMode() (auth.Mode, error) {
	if s.mode != "" {
		m, err := auth.ParseMode(s.mode)
		if err != nil {
			return "", flagError{err: fmt.Errorf("invalid --auth: %w", err), cmd: "goray"}
		}
		return m, nil
	}
	return auth.ModeFromEnv()
}

// loadTLS loads the TLS files of the flags, else of GORAY_TLS_*; nil when
// none is named.
func (s *securityOptions) loadTLS() (*auth.TLS, error) {
	files := s.tls
	env := auth.TLSFilesFromEnv()
	for _, f := range []struct {
		v *string
		e string
	}{{&files.Cert, env.Cert}, {&files.Key, env.Key}, {&files.CA, env.CA}} {
		if *f.v == "" {
			*f.v = f.e
		}
	}
	if files.IsZero() {
		return nil, nil
	}
	return files.Load()
}

// natsCreds are the external NATS credentials of the flags and
// environment.
func (s *securityOptions) natsCreds() (auth.NATSCreds, error) {
	n := s.nats
	env := auth.NATSCredsFromEnv()
	if n.IsZero() {
		n = env
	} else if n.User != "" && n.Password == "" {
		n.Password = env.Password
	}
	return n, n.Validate()
}

// finish adds TLS and external NATS credentials to creds.
func (s *securityOptions) finish(creds *auth.Credentials) (*auth.Credentials, error) {
	n, err := s.natsCreds()
	if err != nil {
		return nil, err
	}
	if !n.IsZero() {
		creds = creds.WithExternalNATS(n)
	}
	return creds, nil
}

// client returns the credentials for talking to the cluster at addr (a
// command, or a node joining it): its token from the flags, the
// environment, or the record of the head started on this machine.
func (s *securityOptions) client(addr string) (*auth.Credentials, error) {
	t, err := s.loadTLS()
	if err != nil {
		return nil, err
	}
	mode, err := s.resolveMode()
	if err != nil {
		return nil, err
	}
	if mode == auth.ModeNone {
		return s.finish(auth.None(t))
	}
	tok, _, err := auth.FindToken(s.tokenFile, localcluster.TokenFileFor(addr))
	if err != nil {
		return nil, fmt.Errorf("the cluster at %s: %w", addr, err)
	}
	return s.finish(auth.FromToken(tok, t))
}

// head returns the credentials of a new head: the token given by flag or
// environment, or a new one (generated reports which).
func (s *securityOptions) head() (creds *auth.Credentials, generated bool, err error) {
	t, err := s.loadTLS()
	if err != nil {
		return nil, false, err
	}
	mode, err := s.resolveMode()
	if err != nil {
		return nil, false, err
	}
	if mode == auth.ModeNone {
		creds, err = s.finish(auth.None(t))
		return creds, false, err
	}
	tok, _, err := auth.FindToken(s.tokenFile, "")
	if errors.Is(err, auth.ErrNoToken) {
		tok, err = auth.GenerateToken()
		generated = true
	}
	if err != nil {
		return nil, false, err
	}
	creds, err = s.finish(auth.FromToken(tok, t))
	return creds, generated, err
}

// daemonArgs pass the flags on to the daemon `goray start` runs in the
// background (secrets travel in files and the environment, never in
// arguments).
func (s *securityOptions) daemonArgs() []string {
	var args []string
	add := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	add("--auth-token-file", s.tokenFile)
	add("--auth", s.mode)
	add("--tls-cert", s.tls.Cert)
	add("--tls-key", s.tls.Key)
	add("--tls-ca", s.tls.CA)
	add("--nats-creds", s.nats.CredsFile)
	add("--nats-nkey", s.nats.NkeyFile)
	add("--nats-user", s.nats.User)
	return args
}

// warnNoAuth says loudly what --auth none gives up.
func warnNoAuth() {
	fmt.Fprintln(os.Stderr, `WARNING: this cluster runs WITHOUT AUTHENTICATION (--auth none).
Anyone who can reach its ports can run any program on it as this user, read
and change its state, and stop it. Use it only for benchmarks on a machine
and network of your own. See docs/security.md.`)
}
