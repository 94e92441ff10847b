package runtimeenv

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/goray/goray/protos"
)

// Limits on a runtime env in a record or request: every worker started
// with it gets its variables.
const (
	MaxEnvVars     = 4096
	MaxEnvVarBytes = 128 << 10
	MaxBinaries    = 16
)

// CheckRuntimeEnv validates a runtime env from a peer, naming the field
// that is wrong.
func CheckRuntimeEnv(e *protos.RuntimeEnv) error {
	vars := e.GetEnvVars()
	if len(vars) > MaxEnvVars {
		return fmt.Errorf("env_vars: %d variables, at most %d", len(vars), MaxEnvVars)
	}
	for _, kv := range vars {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok || k == "":
			return fmt.Errorf("env_vars: %.40q is not NAME=value", kv)
		case len(kv) > MaxEnvVarBytes:
			return fmt.Errorf("env_vars: %s is %d bytes, at most %d", k, len(kv), MaxEnvVarBytes)
		case strings.ContainsRune(kv, 0):
			return fmt.Errorf("env_vars: %s holds a NUL byte", k)
		}
	}
	if d := e.GetPackageDigest(); d != "" && !IsDigest(d) {
		return fmt.Errorf("package_digest: %.80q is not a hex SHA-256", d)
	}
	return nil
}

// CheckBinaries validates a job's binaries.
func CheckBinaries(bins []*protos.JobBinary) error {
	if len(bins) > MaxBinaries {
		return fmt.Errorf("binaries: %d, at most %d", len(bins), MaxBinaries)
	}
	for _, b := range bins {
		if !IsDigest(b.GetDigest()) {
			return fmt.Errorf("binaries: digest %.80q is not a hex SHA-256", b.GetDigest())
		}
		if !isWord(b.GetGoos()) || !isWord(b.GetGoarch()) {
			return fmt.Errorf("binaries: platform %.40q/%.40q", b.GetGoos(), b.GetGoarch())
		}
	}
	return nil
}

// IsDigest reports whether s is a lowercase hex SHA-256.
func IsDigest(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func isWord(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
