package jobserver

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

func TestCheckID(t *testing.T) {
	for _, id := range []string{"a", "goray_0123abcd", "my-job_2", strings.Repeat("x", 64)} {
		if err := checkID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	// Ids become NATS subject tokens and file names: nothing else passes.
	for _, id := range []string{"", "a.b", "a b", "../x", "a*", "a>", strings.Repeat("x", 65)} {
		if err := checkID(id); !errors.Is(err, gcs.ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", id, err)
		}
	}
}

// TestDriverEnv: a driver gets the cluster's address, how to
// authenticate, the working directory package and the submitter's
// variables, and never the head's token itself.
func TestDriverEnv(t *testing.T) {
	t.Setenv("GORAY_AUTH_TOKEN", "secret-token")
	s := &Server{opts: Options{Address: "nats://h:1", Env: []string{"GORAY_AUTH_TOKEN_FILE=/s/auth_token"}}}
	sub := &protos.Submission{SubmissionId: "j1", WorkingDirDigest: strings.Repeat("ab", 32), WorkingDirContent: 42}
	env := s.driverEnv(sub, map[string]string{"B": "2", "A": "1"})
	for _, kv := range env {
		if strings.Contains(kv, "secret-token") {
			t.Fatalf("the head's token reached the driver: %s", kv)
		}
	}
	for _, want := range []string{"GORAY_ADDRESS=nats://h:1", "GORAY_SUBMISSION_ID=j1", "GORAY_AUTH_TOKEN_FILE=/s/auth_token",
		raylet.EnvJobPackage + "=" + strings.Repeat("ab", 32) + ":42", "A=1", "B=2"} {
		if !slices.Contains(env, want) {
			t.Errorf("driver env lacks %s", want)
		}
	}
	if slices.Index(env, "A=1") > slices.Index(env, "B=2") {
		t.Error("the submitter's variables are not in a stable order")
	}
}
