package auth

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/goray/goray/protos"
)

func TestTokenNeverPrints(t *testing.T) {
	tok := testToken(t)
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Interface("tok", tok).Stringer("s", tok).Msg("x")
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok), buf.String()} {
		if strings.Contains(s, tok.Hex()) || strings.Contains(s, tok.Hex()[:16]) {
			t.Fatalf("the token shows in %q", s)
		}
	}
}

func TestParseToken(t *testing.T) {
	tok := testToken(t)
	if got, err := ParseToken("  " + tok.Hex() + "\n"); err != nil || got != tok {
		t.Fatalf("ParseToken(hex) = %v, %v", got.Hex(), err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("z", 64), strings.Repeat("0", 64), tok.Hex() + "00"} {
		if _, err := ParseToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v, want ErrBadToken", bad, err)
		}
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, TokenFileName)
	tok := testToken(t)
	if err := WriteTokenFile(path, tok); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if got, err := ReadTokenFile(path); err != nil || got != tok {
		t.Fatalf("ReadTokenFile = %v", err)
	}
	// A token file others may read is refused.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTokenFile(path); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable token file: %v, want ErrBadToken saying chmod 600", err)
	}
}

func TestFindToken(t *testing.T) {
	dir := t.TempDir()
	fileTok, envTok, localTok := testToken(t), testToken(t), testToken(t)
	file, local := filepath.Join(dir, "f"), filepath.Join(dir, "local")
	for p, tok := range map[string]Token{file: fileTok, local: localTok} {
		if err := WriteTokenFile(p, tok); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(EnvToken, "")
	t.Setenv(EnvTokenFile, "")
	if got, src, err := FindToken(file, local); err != nil || got != fileTok || src != file {
		t.Errorf("file first: %v %v", src, err)
	}
	if got, src, err := FindToken("", local); err != nil || got != localTok || src != local {
		t.Errorf("local last: %v %v", src, err)
	}
	t.Setenv(EnvToken, envTok.Hex())
	if got, src, err := FindToken("", local); err != nil || got != envTok || src != EnvToken {
		t.Errorf("env before local: %v %v", src, err)
	}
	t.Setenv(EnvToken, "")
	if _, _, err := FindToken("", filepath.Join(dir, "none")); !errors.Is(err, ErrNoToken) {
		t.Errorf("no token: %v, want ErrNoToken", err)
	}
	t.Setenv(EnvToken, "nonsense")
	if _, _, err := FindToken("", local); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), EnvToken) {
		t.Errorf("bad env token: %v, want ErrBadToken naming %s", err, EnvToken)
	}
}

func TestDerivedKeysDiffer(t *testing.T) {
	tok := testToken(t)
	seen := map[string]string{string(tok.b[:]): "token"}
	add := func(name string, b []byte) {
		if other, dup := seen[string(b)]; dup {
			t.Fatalf("%s equals %s", name, other)
		}
		seen[string(b)] = name
	}
	k := tok.WireKey()
	add("wire key", k[:])
	add("metrics bearer", []byte(tok.MetricsBearer()))
	for _, r := range Roles {
		kp, err := tok.NATSKey(r)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		add("nkey "+string(r), seed)
	}
	// Derivation is deterministic: every process of the cluster agrees.
	if tok.WireKey() != k {
		t.Fatal("wire key changed")
	}
}

func TestWorkerCredentials(t *testing.T) {
	tok := testToken(t)
	creds := FromToken(tok, nil)
	w, err := creds.ForWorker()
	if err != nil {
		t.Fatal(err)
	}
	f, err := WriteWorkerCredentials(w)
	if err != nil {
		t.Fatal(err)
	}
	// The worker gets its own descriptor (ExtraFiles); ReadWorkerCredentials
	// closes it, f's stays ours to close.
	fd, err := syscall.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadWorkerCredentials(uintptr(fd))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Token(); ok {
		t.Fatal("a worker's credentials hold the cluster token")
	}
	if got.wireKey != creds.wireKey {
		t.Fatal("the worker's wire key differs")
	}
	want, _ := tok.NATSKey(RoleWorker)
	wpub, _ := want.PublicKey()
	gpub, _ := got.natsKey.PublicKey()
	if wpub != gpub {
		t.Fatal("the worker's NATS key is not the worker role's")
	}
	// A worker cannot act in another role: it has no key for it.
	if _, err := got.NATSOptions(RoleWorker); err != nil {
		t.Fatal(err)
	}

	// Auth off travels too.
	w, _ = None(nil).ForWorker()
	if c, err := FromWorker(w); err != nil || c.Enabled() {
		t.Fatalf("none: %v, enabled %v", err, c.Enabled())
	}
	// Garbage is refused.
	if _, err := FromWorker(&protos.WorkerCredentials{WireKey: []byte("short")}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("bad key: %v", err)
	}
}

func TestResolve(t *testing.T) {
	for _, k := range []string{EnvToken, EnvTokenFile, EnvAuth, EnvTLSCert, EnvTLSKey, EnvTLSCA, EnvNATSCreds, EnvNATSNkey, EnvNATSUser, EnvNATSPassword} {
		t.Setenv(k, "")
	}
	// A head without a token makes one; a client without one fails.
	creds, gen, err := Resolve(Source{NewToken: true})
	if _, ok := creds.Token(); err != nil || !gen || !ok {
		t.Fatalf("head: %v, generated %v", err, gen)
	}
	if _, _, err := Resolve(Source{}); !errors.Is(err, ErrNoToken) {
		t.Fatalf("client without a token: %v, want ErrNoToken", err)
	}
	// A head given a token keeps it.
	tok := testToken(t)
	t.Setenv(EnvToken, tok.Hex())
	creds, gen, err = Resolve(Source{NewToken: true})
	if got, _ := creds.Token(); err != nil || gen || got != tok {
		t.Fatalf("head with GORAY_AUTH_TOKEN: %v, generated %v", err, gen)
	}
	// The embedded cluster ignores it, and any external NATS.
	t.Setenv(EnvNATSUser, "u")
	creds, gen, err = Resolve(Source{Embedded: true})
	if got, _ := creds.Token(); err != nil || !gen || got == tok || !creds.natsExternal.IsZero() {
		t.Fatalf("embedded: %v, generated %v", err, gen)
	}
	creds, _, err = Resolve(Source{})
	if err != nil || creds.natsExternal.User != "u" {
		t.Fatalf("external NATS user from the environment: %v %+v", err, creds.natsExternal)
	}
	// --auth none.
	t.Setenv(EnvAuth, "none")
	if creds, _, err := Resolve(Source{}); err != nil || creds.Enabled() {
		t.Fatalf("GORAY_AUTH=none: %v, enabled %v", err, creds.Enabled())
	}
	t.Setenv(EnvAuth, "bogus")
	if _, _, err := Resolve(Source{}); err == nil || !strings.Contains(err.Error(), EnvAuth) {
		t.Fatalf("GORAY_AUTH=bogus: %v", err)
	}
}
