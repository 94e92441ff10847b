package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certificates for a quick start with TLS (`goray tls generate DIR`): a
// cluster CA, and certificates it signs that serve as both server and
// client certificates, since every goray process is both. Operators with a
// PKI of their own use its certificates instead.

// CA file names in a certificate directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// CertValidity is how long generated certificates are valid.
const CertValidity = 825 * 24 * time.Hour

// GeneratedCert names the files GenerateCert wrote.
type GeneratedCert struct {
	Files TLSFiles
	// CreatedCA is set when the directory had no CA and one was made.
	CreatedCA bool
}

// GenerateCert writes, in dir, a certificate and key named name.pem and
// name-key.pem for hosts (DNS names or IP addresses), signed by the CA in
// dir (ca.pem, ca-key.pem), which it creates first if dir has none. Keys
// are written with mode 0600.
func GenerateCert(dir, name string, hosts []string) (GeneratedCert, error) {
	if name == "" || filepath.Base(name) != name {
		return GeneratedCert{}, fmt.Errorf("%w: certificate name %q: want a plain file name", ErrBadCredentials, name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return GeneratedCert{}, fmt.Errorf("auth: certificate dir: %w", err)
	}
	out := GeneratedCert{Files: TLSFiles{
		Cert: filepath.Join(dir, name+".pem"),
		Key:  filepath.Join(dir, name+"-key.pem"),
		CA:   filepath.Join(dir, CACertFile),
	}}
	caCert, caKey, err := loadCA(dir)
	if errors.Is(err, os.ErrNotExist) {
		caCert, caKey, err = newCA(dir)
		out.CreatedCA = true
	}
	if err != nil {
		return GeneratedCert{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return GeneratedCert{}, fmt.Errorf("auth: generate key: %w", err)
	}
	tmpl, err := template(name)
	if err != nil {
		return GeneratedCert{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return GeneratedCert{}, fmt.Errorf("auth: sign certificate: %w", err)
	}
	if err := writePEM(out.Files.Cert, "CERTIFICATE", der, 0o644); err != nil {
		return GeneratedCert{}, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return GeneratedCert{}, fmt.Errorf("auth: encode key: %w", err)
	}
	return out, writePEM(out.Files.Key, "PRIVATE KEY", kb, 0o600)
}

func template(cn string) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("auth: serial number: %w", err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"goray"}, CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(CertValidity),
	}, nil
}

func newCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: generate CA key: %w", err)
	}
	tmpl, err := template("goray cluster CA")
	if err != nil {
		return nil, nil, err
	}
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: make CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(filepath.Join(dir, CAKeyFile), "PRIVATE KEY", kb, 0o600); err != nil {
		return nil, nil, err
	}
	return cert, key, writePEM(filepath.Join(dir, CACertFile), "CERTIFICATE", der, 0o644)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("auth: %s has a CA certificate but no %s to sign with: %w", dir, CAKeyFile, err)
	}
	cp, _ := pem.Decode(cb)
	kp, _ := pem.Decode(kb)
	if cp == nil || kp == nil {
		return nil, nil, fmt.Errorf("%w: the CA in %s is not PEM", ErrBadCredentials, dir)
	}
	cert, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: CA certificate: %w", ErrBadCredentials, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kp.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: CA key: %w", ErrBadCredentials, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%w: the CA key is a %T, want ECDSA", ErrBadCredentials, k)
	}
	return cert, key, nil
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("auth: write %s: %w", path, err)
	}
	return os.Chmod(path, mode)
}
