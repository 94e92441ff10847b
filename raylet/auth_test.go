package raylet

import (
	"os"
	"strconv"
	"testing"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/digest"
)

// testCreds authenticate the raylets of this package's tests, as a
// cluster's would: their fake workers read what the raylet hands them.
var testCreds = func() *auth.Credentials {
	tok, err := auth.GenerateToken()
	if err != nil {
		panic(err)
	}
	return auth.FromToken(tok, nil)
}()

// exeDigest is the binary digest a driver registers for exe.
func exeDigest(t *testing.T, exe string) string {
	t.Helper()
	d, err := digest.File(exe)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// readCreds reads what the raylet handed this (fake) worker process.
func readCreds() (*auth.Credentials, error) {
	fd, err := strconv.Atoi(os.Getenv(auth.EnvCredentialsFD))
	if err != nil {
		return nil, err
	}
	return auth.ReadWorkerCredentials(uintptr(fd))
}
