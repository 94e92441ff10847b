package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/cluster"
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

// source is where the flags (and, for what they leave out, the
// environment) say the credentials are.
func (s *securityOptions) source() (auth.Source, error) {
	src := auth.Source{TokenFile: s.tokenFile, TLS: s.tls, NATS: s.nats}
	if s.mode != "" {
		m, err := auth.ParseMode(s.mode)
		if err != nil {
			return src, flagError{err: fmt.Errorf("invalid --auth: %w", err), cmd: "goray"}
		}
		src.Mode = m
	}
	return src, nil
}

// client returns the credentials for talking to the cluster at addr (a
// command, or a node joining it): its token from the flags, the
// environment, or the record of the head started on this machine.
func (s *securityOptions) client(addr string) (*auth.Credentials, error) {
	src, err := s.source()
	if err != nil {
		return nil, err
	}
	src.LocalTokenFile = localcluster.TokenFileFor(addr)
	creds, _, err := auth.Resolve(src)
	if errors.Is(err, auth.ErrNoToken) {
		return nil, fmt.Errorf("the cluster at %s: %w", addr, err)
	}
	return creds, err
}

// head returns the credentials of a head: the token given by flag or
// environment, else the one in its session directory (a head restarted on
// its session keeps its cluster's token, so nodes and drivers reconnect),
// else a new one (generated reports which).
func (s *securityOptions) head(sessionDir string) (creds *auth.Credentials, generated bool, err error) {
	src, err := s.source()
	if err != nil {
		return nil, false, err
	}
	src.LocalTokenFile = cluster.TokenFile(sessionDir)
	src.NewToken = true
	return auth.Resolve(src)
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
