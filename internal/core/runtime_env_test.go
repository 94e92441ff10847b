package core

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestJobEnvIsAnAllowlist(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
	t.Setenv("GORAY_AUTH_TOKEN", strings.Repeat("ab", 32))
	t.Setenv("GORAY_LOG_LEVEL", "debug")
	o := initOptions{namespace: "ns"}
	RuntimeEnv(EnvVars{"MODEL_DIR": "/m", "EMPTY": ""})(&o)
	env, err := o.jobEnv("nats://h:1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"EMPTY=", "GORAY_GCS_ADDRESS=nats://h:1", "GORAY_LOG_LEVEL=debug", "GORAY_NAMESPACE=ns", "MODEL_DIR=/m"}
	if !slices.Equal(env, want) {
		t.Fatalf("job env %q, want %q", env, want)
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
		o := initOptions{}
		RuntimeEnv(vars)(&o)
		if _, err := o.jobEnv("nats://h:1"); !errors.Is(err, ErrArgument) {
			t.Errorf("EnvVars %q: %v, want ErrArgument", vars, err)
		}
	}
	// The log level is the one goray variable a job may set.
	o := initOptions{}
	RuntimeEnv(EnvVars{"GORAY_LOG_LEVEL": "info"})(&o)
	if _, err := o.jobEnv("nats://h:1"); err != nil {
		t.Errorf("GORAY_LOG_LEVEL: %v", err)
	}
}
