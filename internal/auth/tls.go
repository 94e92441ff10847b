package auth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
)

// Environment variables naming TLS files, for every goray process
// (`goray start` also takes them as --tls-cert, --tls-key, --tls-ca).
const (
	EnvTLSCert = "GORAY_TLS_CERT"
	EnvTLSKey  = "GORAY_TLS_KEY"
	EnvTLSCA   = "GORAY_TLS_CA"
)

// TLSFiles names a certificate, its key and the CA that signs every
// certificate of the cluster.
type TLSFiles struct {
	Cert, Key, CA string
}

// TLSFilesFromEnv reads the GORAY_TLS_* variables.
func TLSFilesFromEnv() TLSFiles {
	return TLSFiles{Cert: os.Getenv(EnvTLSCert), Key: os.Getenv(EnvTLSKey), CA: os.Getenv(EnvTLSCA)}
}

// TLSFromEnv loads the files GORAY_TLS_* name; nil when none is set.
func TLSFromEnv() (*TLS, error) {
	f := TLSFilesFromEnv()
	if f.IsZero() {
		return nil, nil
	}
	return f.Load()
}

// IsZero reports whether no file is named (TLS off).
func (f TLSFiles) IsZero() bool { return f == TLSFiles{} }

// TLS is a loaded certificate and CA: mutual TLS for goray's connections,
// where each side presents a certificate the CA signed and checks the
// other's (the server's against the address dialled, as usual).
type TLS struct {
	Files TLSFiles
	cert  tls.Certificate
	pool  *x509.CertPool
}

// Load reads the files. All three are needed: a cluster with TLS
// authenticates both ends of every connection.
func (f TLSFiles) Load() (*TLS, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, fmt.Errorf("%w: TLS needs a certificate, its key and the CA (got cert %q, key %q, ca %q)", ErrBadCredentials, f.Cert, f.Key, f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: TLS certificate %s, key %s: %w", ErrBadCredentials, f.Cert, f.Key, err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("%w: TLS CA: %w", ErrBadCredentials, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: TLS CA %s holds no PEM certificate", ErrBadCredentials, f.CA)
	}
	return &TLS{Files: f, cert: cert, pool: pool}, nil
}

// ServerConfig is the configuration of a TLS server that requires a client
// certificate signed by the CA.
func (t *TLS) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{t.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    t.pool,
	}
}

// ServerConfig is serverConfig for servers outside this package (NATS,
// metrics).
func (t *TLS) ServerConfig() *tls.Config { return t.serverConfig() }

// clientConfig is the configuration of a TLS client that presents its
// certificate and checks the server's against the host it dialled.
func (t *TLS) clientConfig(remote net.Addr) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{t.cert},
		RootCAs:      t.pool,
	}
	if a, ok := remote.(*net.TCPAddr); ok {
		c.ServerName = a.IP.String()
	}
	return c
}

// ClientConfig is the client configuration for a server at host (a name
// or an IP address), for clients outside this package (NATS).
func (t *TLS) ClientConfig(host string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{t.cert},
		RootCAs:      t.pool,
		ServerName:   host,
	}
}
