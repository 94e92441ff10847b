package auth

import (
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
)

// Labels of the handshakes of goray's two connection protocols.
const (
	LabelWire     = "wire"
	LabelTransfer = "transfer"
)

// NATSCreds are credentials an operator gives for an external NATS server
// (`goray start --head --nats URL`): at most one of a creds file, an nkey
// seed file, or a user and password.
type NATSCreds struct {
	CredsFile string
	NkeyFile  string
	User      string
	Password  string
}

// IsZero reports whether no credential is set.
func (c NATSCreds) IsZero() bool { return c == NATSCreds{} }

// Environment variables for an external NATS's credentials (`goray start`
// takes them as --nats-creds, --nats-nkey, --nats-user and
// --nats-password).
const (
	EnvNATSCreds    = "GORAY_NATS_CREDS"
	EnvNATSNkey     = "GORAY_NATS_NKEY"
	EnvNATSUser     = "GORAY_NATS_USER"
	EnvNATSPassword = "GORAY_NATS_PASSWORD"
)

// NATSCredsFromEnv reads the GORAY_NATS_* variables.
func NATSCredsFromEnv() NATSCreds {
	return NATSCreds{CredsFile: os.Getenv(EnvNATSCreds), NkeyFile: os.Getenv(EnvNATSNkey), User: os.Getenv(EnvNATSUser), Password: os.Getenv(EnvNATSPassword)}
}

// Validate checks that at most one kind of credential is set.
func (c NATSCreds) Validate() error {
	n := 0
	for _, set := range []bool{c.CredsFile != "", c.NkeyFile != "", c.User != "" || c.Password != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%w: give one NATS credential: a creds file, an nkey seed file, or a user and password", ErrBadCredentials)
	}
	if c.Password != "" && c.User == "" {
		return fmt.Errorf("%w: a NATS password needs a user", ErrBadCredentials)
	}
	return nil
}

// Credentials are what one goray process authenticates with: on wire and
// transfer connections (the wire key), to NATS (an nkey per role, or an
// operator's credentials for an external NATS) and, with TLS, its
// certificate. A process holding the cluster token can act in any role; a
// worker gets only the wire key and the worker role's nkey (ForWorker).
//
// A nil *Credentials is "auth off" (`--auth none`), as is None().
type Credentials struct {
	disabled bool
	token    Token
	wireKey  Key
	// natsKey is set for a worker (its role's key); a token holder
	// derives any role's.
	natsKey nkeys.KeyPair
	tls     *TLS
	// external NATS: the operator's credentials, used for every role.
	natsExternal NATSCreds
}

// FromToken returns the credentials of a process that holds the token; t
// is optional TLS.
func FromToken(tok Token, t *TLS) *Credentials {
	return &Credentials{token: tok, wireKey: tok.WireKey(), tls: t}
}

// None returns credentials that authenticate nothing (`--auth none`), with
// optional TLS.
func None(t *TLS) *Credentials { return &Credentials{disabled: true, tls: t} }

// WithExternalNATS returns a copy of c that connects to an external NATS
// with the operator's credentials instead of the embedded server's nkeys.
func (c *Credentials) WithExternalNATS(n NATSCreds) *Credentials {
	cp := *c.orNone()
	cp.natsExternal = n
	return &cp
}

func (c *Credentials) orNone() *Credentials {
	if c == nil {
		return &Credentials{disabled: true}
	}
	return c
}

// Enabled reports whether connections authenticate (not `--auth none`).
func (c *Credentials) Enabled() bool { return c != nil && !c.disabled }

// Token returns the cluster token, if this process holds it.
func (c *Credentials) Token() (Token, bool) {
	if !c.Enabled() || c.token.IsZero() {
		return Token{}, false
	}
	return c.token, true
}

// TLS returns the loaded TLS configuration, or nil when TLS is off.
func (c *Credentials) TLS() *TLS {
	if c == nil {
		return nil
	}
	return c.tls
}

// Handshaker returns the handshaker for the protocol label, or nil (pass
// connections through) when auth and TLS are both off.
func (c *Credentials) Handshaker(label string) *Handshaker {
	if c == nil || (c.disabled && c.tls == nil) {
		return nil
	}
	if c.disabled {
		// TLS without a token: the handshake runs with a key every
		// process knows, so TLS alone decides who may connect.
		return NewHandshaker(Key{}, label, c.tls)
	}
	return NewHandshaker(c.wireKey, label, c.tls)
}

// NATSOptions are the nats.go options that connect as role.
func (c *Credentials) NATSOptions(role Role) ([]nats.Option, error) {
	c = c.orNone()
	var opts []nats.Option
	if c.tls != nil {
		opts = append(opts, nats.Secure(c.tls.ClientConfig("")))
	}
	switch {
	case !c.natsExternal.IsZero():
		o, err := c.natsExternal.options()
		if err != nil {
			return nil, err
		}
		opts = append(opts, o...)
	case c.disabled:
	default:
		kp := c.natsKey
		if !c.token.IsZero() {
			var err error
			if kp, err = c.token.NATSKey(role); err != nil {
				return nil, err
			}
		}
		if kp == nil {
			return nil, fmt.Errorf("%w: no NATS key for role %s", ErrBadCredentials, role)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("%w: NATS key: %w", ErrBadCredentials, err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	}
	return opts, nil
}

func (n NATSCreds) options() ([]nats.Option, error) {
	switch {
	case n.CredsFile != "":
		return []nats.Option{nats.UserCredentials(n.CredsFile)}, nil
	case n.NkeyFile != "":
		o, err := nats.NkeyOptionFromSeed(n.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: NATS nkey seed file %s: %w", ErrBadCredentials, n.NkeyFile, err)
		}
		return []nats.Option{o}, nil
	case n.User != "":
		return []nats.Option{nats.UserInfo(n.User, n.Password)}, nil
	}
	return nil, nil
}

// ForWorker returns the credentials a raylet hands a worker: the wire key
// and the worker role's NATS key (or the external NATS credentials), the
// TLS files, and not the token.
func (c *Credentials) ForWorker() (*protos.WorkerCredentials, error) {
	c = c.orNone()
	w := &protos.WorkerCredentials{
		AuthDisabled:  c.disabled,
		NatsCredsFile: c.natsExternal.CredsFile,
		NatsNkeyFile:  c.natsExternal.NkeyFile,
		NatsUser:      c.natsExternal.User,
		NatsPassword:  c.natsExternal.Password,
	}
	if c.tls != nil {
		w.TlsCertFile, w.TlsKeyFile, w.TlsCaFile = c.tls.Files.Cert, c.tls.Files.Key, c.tls.Files.CA
	}
	if c.disabled {
		return w, nil
	}
	w.WireKey = append([]byte(nil), c.wireKey[:]...)
	kp := c.natsKey
	if !c.token.IsZero() {
		var err error
		if kp, err = c.token.NATSKey(RoleWorker); err != nil {
			return nil, err
		}
	}
	if kp != nil {
		seed, err := kp.Seed()
		if err != nil {
			return nil, fmt.Errorf("%w: NATS key: %w", ErrBadCredentials, err)
		}
		w.NatsNkeySeed = seed
	}
	return w, nil
}

// FromWorker turns what a raylet handed a worker back into credentials.
func FromWorker(w *protos.WorkerCredentials) (*Credentials, error) {
	c := &Credentials{
		disabled: w.GetAuthDisabled(),
		natsExternal: NATSCreds{
			CredsFile: w.GetNatsCredsFile(), NkeyFile: w.GetNatsNkeyFile(),
			User: w.GetNatsUser(), Password: w.GetNatsPassword(),
		},
	}
	if f := (TLSFiles{Cert: w.GetTlsCertFile(), Key: w.GetTlsKeyFile(), CA: w.GetTlsCaFile()}); !f.IsZero() {
		t, err := f.Load()
		if err != nil {
			return nil, err
		}
		c.tls = t
	}
	if c.disabled {
		return c, nil
	}
	if len(w.GetWireKey()) != len(c.wireKey) {
		return nil, fmt.Errorf("%w: wire key of %d bytes, want %d", ErrBadCredentials, len(w.GetWireKey()), len(c.wireKey))
	}
	copy(c.wireKey[:], w.GetWireKey())
	if seed := w.GetNatsNkeySeed(); len(seed) > 0 {
		kp, err := nkeys.FromSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("%w: NATS nkey seed: %w", ErrBadCredentials, err)
		}
		c.natsKey = kp
	}
	return c, nil
}

// EnvCredentialsFD names the file descriptor on which a worker process
// finds its credentials (a pipe the raylet wrote them to).
const EnvCredentialsFD = "GORAY_CREDENTIALS_FD"

// maxCredentials bounds what a worker reads from its credentials pipe.
const maxCredentials = 64 << 10

// WriteWorkerCredentials writes w to the pipe a worker will read them
// from; it returns the read end, to hand to the worker (exec.Cmd's
// ExtraFiles), which the caller closes once the worker started.
func WriteWorkerCredentials(w *protos.WorkerCredentials) (*os.File, error) {
	b, err := proto.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("auth: encode worker credentials: %w", err)
	}
	if len(b) > maxCredentials {
		return nil, fmt.Errorf("%w: worker credentials of %d bytes", ErrBadCredentials, len(b))
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("auth: credentials pipe: %w", err)
	}
	// A pipe holds 64 KiB: the write completes before the worker reads.
	_, err = pw.Write(b)
	if cerr := pw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("auth: write worker credentials: %w", err)
	}
	return r, nil
}

// ReadWorkerCredentials reads the credentials a raylet wrote to fd.
func ReadWorkerCredentials(fd uintptr) (*Credentials, error) {
	f := os.NewFile(fd, "goray-credentials")
	if f == nil {
		return nil, fmt.Errorf("%w: no file descriptor %d", ErrBadCredentials, fd)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentials+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read fd %d: %w", ErrBadCredentials, fd, err)
	}
	if len(b) > maxCredentials {
		return nil, fmt.Errorf("%w: more than %d bytes on fd %d", ErrBadCredentials, maxCredentials, fd)
	}
	var w protos.WorkerCredentials
	if err := proto.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrBadCredentials, err)
	}
	return FromWorker(&w)
}
