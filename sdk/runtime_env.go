package sdk

import "github.com/goray/goray/internal/core"

// Runtime environments (Ray's runtime_env): what a job's workers start
// with on every node, besides the job's binary, which goray ships to the
// nodes that lack it. Give one to Init for the whole job, or to a task or
// an actor as an option: it is merged over the job's (its variables over
// the job's, its working directory instead of the job's), and workers are
// reused only by tasks with the same runtime env.
//
//	sdk.Init(ctx, sdk.Address(addr), sdk.RuntimeEnv(sdk.WorkingDir("."), sdk.EnvVars{"MODE": "prod"}))
//	train.Options(sdk.RuntimeEnv(sdk.EnvVars{"OMP_NUM_THREADS": "4"})).Remote(ctx, cfg)
//
// The cluster's records hold the variables named here and the digests of
// the binary and the working directory, never file contents or the
// driver's environment.

// RuntimeEnvPart is one part of a runtime environment: EnvVars,
// WorkingDir, Files, Excludes, MaxPackageSize, Binaries.
type RuntimeEnvPart interface{ runtimeEnvPart() core.RuntimeEnvPart }

// EnvVars are environment variables the workers get (Ray's
// runtime_env={"env_vars": ...}). Workers otherwise inherit their node's
// environment, as Ray's do: never the driver's, which may hold secrets
// the cluster's records would then keep. GORAY_LOG_LEVEL is the one goray
// variable that may be set, for the whole job only.
type EnvVars map[string]string

func (e EnvVars) runtimeEnvPart() core.RuntimeEnvPart { return core.EnvVars(e) }

type envPart struct{ p core.RuntimeEnvPart }

func (e envPart) runtimeEnvPart() core.RuntimeEnvPart { return e.p }

// WorkingDir ships dir to every node that runs the workers, as their
// working directory (Ray's working_dir): packed when first used, leaving
// out .git and Excludes, at most MaxPackageSize bytes (512 MiB unless
// set), uploaded once by its digest and unpacked once per node. Later
// changes to the directory are not seen by this program's tasks. Without
// a WorkingDir, workers start in the driver's working directory where the
// node has it, else in the node's session directory.
func WorkingDir(dir string) RuntimeEnvPart { return envPart{core.WorkingDir(dir)} }

// Files ships files or directories along with the working directory,
// each at its root under its base name.
func Files(paths ...string) RuntimeEnvPart { return envPart{core.Files(paths...)} }

// Excludes leaves paths out of WorkingDir's package, with patterns as in
// .gitignore: a name matches at any depth ("*.log", "data"), a path with a
// slash from the root ("/build/cache"), a trailing slash only directories
// ("tmp/"). .git is always left out.
func Excludes(patterns ...string) RuntimeEnvPart { return envPart{core.Excludes(patterns...)} }

// MaxPackageSize caps the bytes of files WorkingDir and Files may ship.
func MaxPackageSize(bytes int64) RuntimeEnvPart { return envPart{core.MaxPackageSize(bytes)} }

// Binaries adds builds of this program for other platforms
// (GOOS=linux GOARCH=arm64 go build ...): nodes of those platforms run
// them, and a node of a platform with no build refuses the job's work with
// ErrRuntimeEnvSetup naming both platforms. The platform is read from each
// file. For Init only.
func Binaries(paths ...string) RuntimeEnvPart { return envPart{core.Binaries(paths...)} }

// RuntimeEnvOption is a runtime environment: an InitOption, and an Option
// of tasks and actors.
type RuntimeEnvOption struct{ parts []core.RuntimeEnvPart }

func (o RuntimeEnvOption) initOption() core.InitOption   { return core.RuntimeEnv(o.parts...) }
func (o RuntimeEnvOption) taskOption() core.CallOption   { return core.TaskRuntimeEnv(o.parts...) }
func (o RuntimeEnvOption) actorOption() core.ActorOption { return core.ActorRuntimeEnv(o.parts...) }

// RuntimeEnv sets a runtime environment: the job's, given to Init; a
// task's or an actor's, given to Options.
func RuntimeEnv(parts ...RuntimeEnvPart) RuntimeEnvOption {
	cp := make([]core.RuntimeEnvPart, 0, len(parts))
	for _, p := range parts {
		if p != nil {
			cp = append(cp, p.runtimeEnvPart())
		}
	}
	return RuntimeEnvOption{parts: cp}
}
