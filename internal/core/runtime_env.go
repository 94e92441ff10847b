package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/goray/goray/internal/runtimeenv"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

// Runtime environments (Ray's runtime_env): what a job's workers start
// with besides its binary. Set for the whole job at Init, and for one task
// or actor as an option, which is merged over the job's (its variables
// over the job's, its package instead of the job's), as Ray merges. The
// cluster's records hold the variables the user named and the package's
// digest, never file contents or the driver's environment.

// EnvVars are environment variables a job's workers get, on every node
// (Ray's runtime_env={"env_vars": ...}). Workers otherwise inherit their
// node's environment, as Ray's do: never the driver's, which may hold
// secrets the cluster's records would then keep.
type EnvVars map[string]string

// RuntimeEnvPart is one part of a runtime environment.
type RuntimeEnvPart interface {
	applyRuntimeEnv(*envSpec) error
}

// envSpec is a runtime environment as the user gave it.
type envSpec struct {
	vars     map[string]string
	pack     runtimeenv.PackSpec
	binaries []string
}

func (sp *envSpec) hasPackage() bool { return sp.pack.WorkingDir != "" || len(sp.pack.Files) > 0 }

func (e EnvVars) applyRuntimeEnv(sp *envSpec) error {
	for k, v := range e {
		if err := checkEnvVar(k, v); err != nil {
			return err
		}
		sp.vars[k] = v
	}
	return nil
}

type envPartFunc func(*envSpec) error

func (f envPartFunc) applyRuntimeEnv(sp *envSpec) error { return f(sp) }

// WorkingDir ships dir to every node that runs the job's (or the task's,
// the actor's) workers, as their working directory: packed when first
// used (DefaultExcludes and Excludes left out, at most MaxPackageSize),
// uploaded once by its digest, unpacked once per node. Later changes to
// the directory are not seen by this process's tasks.
func WorkingDir(dir string) RuntimeEnvPart {
	return envPartFunc(func(sp *envSpec) error {
		if dir == "" {
			return fmt.Errorf("%w: WorkingDir: empty path", ErrArgument)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("%w: WorkingDir %s: %v", ErrArgument, dir, err)
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: WorkingDir %s: not a directory (%v)", ErrArgument, dir, err)
		}
		sp.pack.WorkingDir = abs
		return nil
	})
}

// Files ships files or directories with the working directory, each at
// its root under its base name.
func Files(paths ...string) RuntimeEnvPart {
	return envPartFunc(func(sp *envSpec) error {
		for _, p := range paths {
			abs, err := filepath.Abs(p)
			if err == nil {
				_, err = os.Lstat(abs)
			}
			if err != nil {
				return fmt.Errorf("%w: Files: %v", ErrArgument, err)
			}
			sp.pack.Files = append(sp.pack.Files, abs)
		}
		return nil
	})
}

// Excludes leaves paths out of the working directory's package: patterns
// as in .gitignore (a name matches at any depth, a path with / from the
// root, a trailing / only directories), besides runtimeenv.DefaultExcludes.
func Excludes(patterns ...string) RuntimeEnvPart {
	return envPartFunc(func(sp *envSpec) error {
		sp.pack.Excludes = append(sp.pack.Excludes, patterns...)
		return nil
	})
}

// MaxPackageSize caps the working directory's package (file bytes; the
// default is runtimeenv.DefaultMaxSize).
func MaxPackageSize(bytes int64) RuntimeEnvPart {
	return envPartFunc(func(sp *envSpec) error {
		if bytes <= 0 {
			return fmt.Errorf("%w: MaxPackageSize %d: must be positive", ErrArgument, bytes)
		}
		sp.pack.MaxSize = bytes
		return nil
	})
}

// Binaries adds builds of this program for other platforms (GOOS/GOARCH,
// read from each file): nodes of those platforms run them. Job level only.
func Binaries(paths ...string) RuntimeEnvPart {
	return envPartFunc(func(sp *envSpec) error {
		sp.binaries = append(sp.binaries, paths...)
		return nil
	})
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

// buildEnvSpec applies parts.
func buildEnvSpec(parts []RuntimeEnvPart) (*envSpec, error) {
	sp := &envSpec{vars: map[string]string{}}
	for _, p := range parts {
		if p == nil {
			continue
		}
		if err := p.applyRuntimeEnv(sp); err != nil {
			return nil, err
		}
	}
	return sp, nil
}

// RuntimeEnv sets the runtime environment of the job Init starts.
func RuntimeEnv(parts ...RuntimeEnvPart) InitOption {
	return func(o *initOptions) { o.runtimeEnv = append(o.runtimeEnv, parts...) }
}

// TaskRuntimeEnv sets a task's runtime environment, merged over its
// submitter's.
func TaskRuntimeEnv(parts ...RuntimeEnvPart) CallOption {
	return func(o *CallOptions) { o.env = append(slices.Clip(o.env), parts...) }
}

// ActorRuntimeEnv sets an actor's runtime environment, merged over its
// creator's.
func ActorRuntimeEnv(parts ...RuntimeEnvPart) ActorOption {
	return func(o *ActorOptions) { o.env = append(slices.Clip(o.env), parts...) }
}

// jobEnv is goray's settings for the job's workers, in a stable order: the
// GCS address, the namespace, the log level and whether task events are
// off. It is an allowlist: nothing else of the driver's environment goes
// into the cluster's records.
func (o *initOptions) jobEnv(gcsAddress string, sp *envSpec) []string {
	vars := map[string]string{raylet.EnvGCSAddress: gcsAddress, raylet.EnvNamespace: o.namespace}
	if v, ok := sp.vars[raylet.EnvLogLevel]; ok {
		vars[raylet.EnvLogLevel] = v
	} else if v := os.Getenv(raylet.EnvLogLevel); v != "" {
		vars[raylet.EnvLogLevel] = v
	}
	if os.Getenv(raylet.EnvTaskEvents) == "0" {
		vars[raylet.EnvTaskEvents] = "0"
	}
	return sortedVars(vars)
}

func sortedVars(vars map[string]string) []string {
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// userVars are sp's variables but goray's own.
func (sp *envSpec) userVars() map[string]string {
	out := maps.Clone(sp.vars)
	delete(out, raylet.EnvLogLevel)
	return out
}

// mergeEnv is sp over base: sp's variables win, sp's package replaces
// base's. pkg is sp's package, when it has one.
func mergeEnv(base *protos.RuntimeEnv, sp *envSpec, pkg *uploadedPackage) *protos.RuntimeEnv {
	vars := map[string]string{}
	for _, kv := range base.GetEnvVars() {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	maps.Copy(vars, sp.vars)
	out := &protos.RuntimeEnv{EnvVars: sortedVars(vars), PackageDigest: base.GetPackageDigest(), PackageContent: base.GetPackageContent()}
	if pkg != nil {
		out.PackageDigest, out.PackageContent = pkg.digest, uint64(pkg.content)
	}
	if len(out.EnvVars) == 0 {
		out.EnvVars = nil
	}
	return out
}

// envQueueKey tells tasks of different runtime envs apart in the
// submitter's queues ("" for none set).
func envQueueKey(e *protos.RuntimeEnv) string {
	if e == nil {
		return ""
	}
	h := sha256.New()
	for _, kv := range e.GetEnvVars() {
		h.Write([]byte(kv))
		h.Write([]byte{0})
	}
	h.Write([]byte(e.GetPackageDigest()))
	return "|env:" + hex.EncodeToString(h.Sum(nil)[:8])
}

// resolvedEnv is a task's or actor's runtime env, resolved once per
// options value.
type resolvedEnv struct {
	once  sync.Once
	proto *protos.RuntimeEnv
	key   string
	err   error
}

// resolveEnv turns parts into the runtime env a lease asks for: merged
// over this process's own, its package packed and uploaded (once per
// process). No parts: this process's env (nil for a driver: the job's).
func (cw *Worker) resolveEnv(ctx context.Context, parts []RuntimeEnvPart) (*protos.RuntimeEnv, error) {
	if len(parts) == 0 {
		return cw.ownEnv, nil
	}
	sp, err := buildEnvSpec(parts)
	if err != nil {
		return nil, err
	}
	if len(sp.binaries) > 0 {
		return nil, fmt.Errorf("%w: Binaries applies to the whole job: give it to Init's RuntimeEnv", ErrArgument)
	}
	if _, ok := sp.vars[raylet.EnvLogLevel]; ok {
		return nil, fmt.Errorf("%w: EnvVars: %s applies to the whole job: give it to Init's RuntimeEnv", ErrArgument, raylet.EnvLogLevel)
	}
	var pkg *uploadedPackage
	if sp.hasPackage() {
		if pkg, err = cw.uploadPackage(ctx, sp.pack); err != nil {
			return nil, err
		}
	}
	base := cw.ownEnv
	if base == nil {
		base = cw.jobEnv
	}
	return mergeEnv(base, sp, pkg), nil
}

// submittedPackage is the job server's working directory package
// (raylet.EnvJobPackage): unless the driver gives its own WorkingDir or
// Files, the job's workers run in the package the driver was submitted
// with, as Ray's `ray job submit --working-dir` does.
func submittedPackage() (*uploadedPackage, error) {
	v := os.Getenv(raylet.EnvJobPackage)
	if v == "" {
		return nil, nil
	}
	digest, content, ok := strings.Cut(v, ":")
	n, err := strconv.ParseInt(content, 10, 64)
	if !ok || err != nil || n < 0 || !runtimeenv.IsDigest(digest) {
		return nil, fmt.Errorf("goray: %s=%q: want <sha256 hex>:<content bytes>", raylet.EnvJobPackage, v)
	}
	return &uploadedPackage{digest: digest, content: n}, nil
}
