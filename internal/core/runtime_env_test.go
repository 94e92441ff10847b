package core

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/goray/goray/protos"
)

func TestJobEnvIsAnAllowlist(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
	t.Setenv("GORAY_AUTH_TOKEN", strings.Repeat("ab", 32))
	t.Setenv("GORAY_LOG_LEVEL", "debug")
	o := initOptions{namespace: "ns"}
	RuntimeEnv(EnvVars{"MODEL_DIR": "/m", "EMPTY": ""})(&o)
	sp, err := buildEnvSpec(o.runtimeEnv)
	if err != nil {
		t.Fatal(err)
	}
	env := o.jobEnv("nats://h:1", sp)
	want := []string{"GORAY_GCS_ADDRESS=nats://h:1", "GORAY_LOG_LEVEL=debug", "GORAY_NAMESPACE=ns"}
	if !slices.Equal(env, want) {
		t.Fatalf("job env %q, want %q", env, want)
	}
	// The user's variables are the runtime env's.
	got := mergeEnv(nil, &envSpec{vars: sp.userVars()}, nil).GetEnvVars()
	if want := []string{"EMPTY=", "MODEL_DIR=/m"}; !slices.Equal(got, want) {
		t.Fatalf("runtime env vars %q, want %q", got, want)
	}
}

func TestEnvVarsRefused(t *testing.T) {
	for _, vars := range []EnvVars{
		{"": "x"},
		{"A=B": "x"},
		{"A": "x\x00y"},
		{"GORAY_WORKER": "1"},
		{"GORAY_AUTH_TOKEN": "x"},
	} {
		if _, err := buildEnvSpec([]RuntimeEnvPart{vars}); !errors.Is(err, ErrArgument) {
			t.Errorf("EnvVars %q: %v, want ErrArgument", vars, err)
		}
	}
	// The log level is the one goray variable a job may set.
	o := initOptions{}
	sp, err := buildEnvSpec([]RuntimeEnvPart{EnvVars{"GORAY_LOG_LEVEL": "info"}})
	if err != nil {
		t.Fatalf("GORAY_LOG_LEVEL: %v", err)
	}
	if env := o.jobEnv("nats://h:1", sp); !slices.Contains(env, "GORAY_LOG_LEVEL=info") {
		t.Errorf("job env %q lacks the log level", env)
	}
}

func TestMergeEnv(t *testing.T) {
	base := &protos.RuntimeEnv{EnvVars: []string{"A=job", "B=job"}, PackageDigest: strings.Repeat("a", 64), PackageContent: 3}
	sp := &envSpec{vars: map[string]string{"B": "task", "C": "task"}}
	got := mergeEnv(base, sp, nil)
	if want := []string{"A=job", "B=task", "C=task"}; !slices.Equal(got.GetEnvVars(), want) {
		t.Errorf("merged vars %q, want %q", got.GetEnvVars(), want)
	}
	if got.GetPackageDigest() != base.GetPackageDigest() {
		t.Errorf("a task without a package lost the job's")
	}
	pkg := &uploadedPackage{digest: strings.Repeat("b", 64), content: 9}
	if got := mergeEnv(base, sp, pkg); got.GetPackageDigest() != pkg.digest || got.GetPackageContent() != 9 {
		t.Errorf("the task's package did not replace the job's: %v", got)
	}
	if envQueueKey(got) == envQueueKey(base) || envQueueKey(nil) != "" {
		t.Errorf("queue keys do not tell envs apart")
	}
}

func TestTaskOnlyParts(t *testing.T) {
	cw := &Worker{}
	if _, err := cw.resolveEnv(t.Context(), []RuntimeEnvPart{Binaries("/bin/true")}); !errors.Is(err, ErrArgument) {
		t.Errorf("Binaries on a task: %v, want ErrArgument", err)
	}
	if _, err := cw.resolveEnv(t.Context(), []RuntimeEnvPart{EnvVars{"GORAY_LOG_LEVEL": "debug"}}); !errors.Is(err, ErrArgument) {
		t.Errorf("GORAY_LOG_LEVEL on a task: %v, want ErrArgument", err)
	}
	if _, err := buildEnvSpec([]RuntimeEnvPart{WorkingDir(t.TempDir() + "/missing")}); !errors.Is(err, ErrArgument) {
		t.Errorf("a missing WorkingDir: %v, want ErrArgument", err)
	}
}
