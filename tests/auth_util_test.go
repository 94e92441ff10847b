package tests

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The cluster's credentials and TLS as an operator sees them: files in the
// head's session directory and GORAY_* variables (docs/security.md).

// Environment variables of the CLI and the sdk.
const (
	envTokenFile = "GORAY_AUTH_TOKEN_FILE"
	envTLSCert   = "GORAY_TLS_CERT"
	envTLSKey    = "GORAY_TLS_KEY"
	envTLSCA     = "GORAY_TLS_CA"
)

// tokenFile is the token file of the head whose session is dir.
func tokenFile(dir string) string { return filepath.Join(dir, "auth_token") }

// writeRandomToken writes a token file (64 hex digits, mode 0600) holding
// a fresh random token: another cluster's.
func writeRandomToken(t *testing.T, path string) {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsFiles are the files GORAY_TLS_* name (make test-tls runs every test
// with them); ok is false when the suite runs without TLS.
func tlsFiles() (cert, key, ca string, ok bool) {
	cert, key, ca = os.Getenv(envTLSCert), os.Getenv(envTLSKey), os.Getenv(envTLSCA)
	return cert, key, ca, cert != "" || key != "" || ca != ""
}

// loadTLS loads the suite's certificate and CA, or returns ok false.
func loadTLS(t *testing.T) (cert tls.Certificate, pool *x509.CertPool, ok bool) {
	t.Helper()
	certFile, keyFile, caFile, ok := tlsFiles()
	if !ok {
		return tls.Certificate{}, nil, false
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("TLS certificate %s, key %s: %v", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatalf("TLS CA: %v", err)
	}
	pool = x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("TLS CA %s holds no PEM certificate", caFile)
	}
	return cert, pool, true
}

// clientTLS is the mutual-TLS client configuration for a server at host,
// or nil when the suite runs without TLS.
func clientTLS(t *testing.T, host string) *tls.Config {
	t.Helper()
	cert, pool, ok := loadTLS(t)
	if !ok {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: host}
}

// serverTLS is the mutual-TLS server configuration (client certificates
// signed by the CA required), or nil when the suite runs without TLS.
func serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert, pool, ok := loadTLS(t)
	if !ok {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
}

// natsTLS are the nats.go options for the suite's TLS, if it runs with it.
func natsTLS(t *testing.T) []nats.Option {
	t.Helper()
	if tc := clientTLS(t, ""); tc != nil {
		return []nats.Option{nats.Secure(tc)}
	}
	return nil
}

// startNATS runs a stock NATS server with JetStream on a loopback port
// (with the suite's TLS, if any), stopped when the test ends, and returns
// its client URL.
func startNATS(t *testing.T) string {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoSigs:    true,
		NoLog:     true,
	}
	if tc := serverTLS(t); tc != nil {
		opts.TLSConfig, opts.TLS, opts.TLSVerify, opts.TLSTimeout = tc, true, true, 2
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("NATS server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready after 10s")
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("NATS server listens on %v", srv.Addr())
	}
	return fmt.Sprintf("nats://%s", net.JoinHostPort("127.0.0.1", strconv.Itoa(addr.Port)))
}
