package core

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/goray/goray/raylet"
)

// EnvVars are environment variables a job's workers get, on every node
// (Ray's runtime_env={"env_vars": ...}). Workers otherwise inherit their
// node's environment, as Ray's do: never the driver's, which may hold
// secrets the cluster's records would then keep.
type EnvVars map[string]string

// RuntimeEnvPart is one part of a runtime environment: EnvVars.
type RuntimeEnvPart interface {
	applyRuntimeEnv(*runtimeEnv) error
}

type runtimeEnv struct {
	vars map[string]string
}

func (e EnvVars) applyRuntimeEnv(r *runtimeEnv) error {
	for k, v := range e {
		if err := checkEnvVar(k, v); err != nil {
			return err
		}
		r.vars[k] = v
	}
	return nil
}

// checkEnvVar refuses what cannot be an environment variable, and goray's
// own variables (but for the log level): those are goray's to set.
func checkEnvVar(k, v string) error {
	switch {
	case k == "" || strings.ContainsAny(k, "=\x00"):
		return fmt.Errorf("%w: EnvVars: invalid variable name %q", ErrArgument, k)
	case strings.ContainsRune(v, 0):
		return fmt.Errorf("%w: EnvVars: the value of %s holds a NUL byte", ErrArgument, k)
	case strings.HasPrefix(k, "GORAY_") && k != raylet.EnvLogLevel:
		return fmt.Errorf("%w: EnvVars: %s is goray's own variable (only %s may be set)", ErrArgument, k, raylet.EnvLogLevel)
	}
	return nil
}

// RuntimeEnv sets the runtime environment of the job Init starts: for now
// environment variables for its workers (EnvVars).
func RuntimeEnv(parts ...RuntimeEnvPart) InitOption {
	return func(o *initOptions) { o.runtimeEnv = append(o.runtimeEnv, parts...) }
}

// jobEnv is the environment the job's record keeps for its workers: the
// runtime environment's variables and goray's settings for workers, in a
// stable order. It is an allowlist: nothing else of the driver's
// environment goes into the cluster's records.
func (o *initOptions) jobEnv(gcsAddress string) ([]string, error) {
	r := runtimeEnv{vars: map[string]string{}}
	for _, p := range o.runtimeEnv {
		if p == nil {
			continue
		}
		if err := p.applyRuntimeEnv(&r); err != nil {
			return nil, err
		}
	}
	if _, ok := r.vars[raylet.EnvLogLevel]; !ok {
		if v := os.Getenv(raylet.EnvLogLevel); v != "" {
			r.vars[raylet.EnvLogLevel] = v
		}
	}
	r.vars[raylet.EnvGCSAddress] = gcsAddress
	r.vars[raylet.EnvNamespace] = o.namespace
	env := make([]string, 0, len(r.vars))
	for k, v := range r.vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env, nil
}
