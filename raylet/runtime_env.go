package raylet

import (
	"context"
	"encoding/base64"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Runtime environments on the node. A job's workers run the job's binary
// for this node's platform, fetched into the node's cache (envCache) when
// the node has no copy, and start with a runtime env: the job's, or the
// one a task or actor set (environment variables, a working directory
// package). Workers are pooled per runtime env: a lease gets only a worker
// started with an equal one, as Ray's.

// Error codes of lease requests the node cannot serve for their runtime
// env.
const (
	// CodePlatformMismatch: no binary of the job is for this node's
	// platform, and no other node that can run it may take the request.
	CodePlatformMismatch = "platform_mismatch"
	// CodeRuntimeEnvFailed: the job's binary or the request's package
	// could not be fetched or unpacked.
	CodeRuntimeEnvFailed = "runtime_env_failed"
)

// PlatformLabel is the node label every node carries: its GOOS/GOARCH.
// The scheduler sends a job's work only to nodes of the platforms the job
// has binaries for.
const PlatformLabel = "goray.io/platform"

// runtimeEnvFetchTimeout bounds fetching a binary or package, waiting for
// its upload included.
const runtimeEnvFetchTimeout = 2 * time.Minute

type prepState uint8

const (
	prepNone prepState = iota
	prepFetching
	prepReady
	prepFailed
)

// runtimeEnv is one runtime environment of a job's workers on the node.
type runtimeEnv struct {
	key   string
	proto *protos.RuntimeEnv
	// encoded is proto for the worker (EnvRuntimeEnv), so the tasks it
	// submits inherit it; "" for an empty one.
	encoded string
	state   prepState
	// dir is the unpacked package once ready; "" when it has none.
	dir string
	err error
}

// envPrepared brings the outcome of fetching a job's binary (binary) or
// the package of its runtime env with key env.
type envPrepared struct {
	job    protos.JobID
	binary bool
	env    string
	path   string
	err    error
}

// runtimeEnvKey identifies a runtime env: leases with equal keys share
// workers. The job's default env has key "".
func runtimeEnvKey(e *protos.RuntimeEnv) string {
	if len(e.GetEnvVars()) == 0 && e.GetPackageDigest() == "" {
		return ""
	}
	return strings.Join(e.GetEnvVars(), "\x00") + "\x01" + e.GetPackageDigest()
}

// envFor returns j's runtime env with key (from a lease request's p), making
// it on first use. Key "" is the job's own.
func (j *jobState) envFor(key string, p *protos.RuntimeEnv) *runtimeEnv {
	if j.envs == nil {
		j.envs = map[string]*runtimeEnv{}
	}
	if e := j.envs[key]; e != nil {
		return e
	}
	e := &runtimeEnv{key: key, proto: p}
	if key == "" {
		e.proto = j.runtimeEnv
	}
	if runtimeEnvKey(e.proto) != "" {
		if data, err := proto.Marshal(e.proto); err == nil {
			e.encoded = base64.StdEncoding.EncodeToString(data)
		}
	}
	if e.proto.GetPackageDigest() == "" {
		e.state = prepReady
	}
	j.envs[key] = e
	return e
}

// setRuntime takes a job's binaries and runtime env from its record. An
// old-style record names one binary, for the platform of the node its
// driver registered on.
func (j *jobState) setRuntime(binaries []*protos.JobBinary, env *protos.RuntimeEnv, platform string) {
	j.binaries = binaries
	if len(j.binaries) == 0 && j.binaryDigest != "" {
		goos, goarch, _ := strings.Cut(platform, "/")
		j.binaries = []*protos.JobBinary{{Goos: goos, Goarch: goarch, Digest: j.binaryDigest}}
	}
	j.runtimeEnv = env
	j.defaultEnvKey = runtimeEnvKey(env)
}

// binaryFor is j's binary for platform ("goos/goarch"), or nil.
func (j *jobState) binaryFor(platform string) *protos.JobBinary {
	goos, goarch, _ := strings.Cut(platform, "/")
	for _, b := range j.binaries {
		if b.GetGoos() == goos && b.GetGoarch() == goarch {
			return b
		}
	}
	return nil
}

// platforms lists the platforms j has binaries for.
func (j *jobState) platforms() []string {
	out := make([]string, 0, len(j.binaries))
	for _, b := range j.binaries {
		out = append(out, b.GetGoos()+"/"+b.GetGoarch())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// platformError is the error for a request of j that must run on node
// (of platform) but cannot.
func platformError(j *jobState, node protos.NodeID, platform string) error {
	return wire.NewError(CodePlatformMismatch,
		"job %s has binaries for %s only, and node %s is %s: give Init sdk.RuntimeEnv(sdk.Binaries(...)) with a %s build of the program",
		j.id.Short(), strings.Join(j.platforms(), ", "), node.Short(), platform, platform)
}

// withPlatforms adds to a lease's label selector that the node's platform
// must be one j has a binary for.
func withPlatforms(st *protos.SchedulingStrategy, platforms []string) *protos.SchedulingStrategy {
	var out *protos.SchedulingStrategy
	if st == nil {
		out = &protos.SchedulingStrategy{}
	} else {
		out = proto.Clone(st).(*protos.SchedulingStrategy)
	}
	if out.Labels == nil {
		out.Labels = map[string]*protos.LabelValues{}
	}
	if have := out.Labels[PlatformLabel]; have != nil {
		// The request asked for platforms itself: keep those the job can run.
		var both []string
		for _, v := range have.GetValues() {
			if slices.Contains(platforms, v) {
				both = append(both, v)
			}
		}
		platforms = both
	}
	out.Labels[PlatformLabel] = &protos.LabelValues{Values: platforms}
	return out
}

// prepare reports whether workers of j with env e can start now, fetching
// what is missing: the job's binary for this node, e's package.
func (s *state) prepare(j *jobState, e *runtimeEnv) (bool, error) {
	switch j.binState {
	case prepNone:
		b := j.binaryFor(s.r.cfg.Platform)
		if b == nil {
			return false, platformError(j, s.r.cfg.NodeID, s.r.cfg.Platform)
		}
		j.binState = prepFetching
		cache, id, local := s.r.envCache, j.id, j.executable
		if j.remote || checkExecutable(local) != nil {
			// The record's path is on the driver's machine, or is no
			// program.
			local = ""
		}
		s.background(func(ctx context.Context) envPrepared {
			p, err := cache.binary(ctx, id, b, local)
			return envPrepared{job: id, binary: true, path: p, err: err}
		})
	case prepFailed:
		return false, j.binErr
	}
	switch e.state {
	case prepNone:
		e.state = prepFetching
		cache, id, key, d, n := s.r.envCache, j.id, e.key, e.proto.GetPackageDigest(), e.proto.GetPackageContent()
		s.background(func(ctx context.Context) envPrepared {
			p, err := cache.pkg(ctx, id, d, n)
			return envPrepared{job: id, env: key, path: p, err: err}
		})
	case prepFailed:
		return false, e.err
	}
	return j.binState == prepReady && e.state == prepReady, nil
}

// background runs fetch off the actor and hands its outcome back to it.
func (s *state) background(fetch func(ctx context.Context) envPrepared) {
	root, self := s.r.system.Root, s.r.pid
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), runtimeEnvFetchTimeout)
		defer cancel()
		root.Send(self, fetch(ctx))
	}()
}

// envPrepared records a fetch's outcome. A failure fails the requests
// waiting for it (dispatch); the next request tries again.
func (s *state) envPrepared(m envPrepared) {
	j := s.jobs[m.job]
	if j == nil {
		return
	}
	if m.binary {
		if j.binState != prepFetching {
			return
		}
		if m.err != nil {
			j.binState, j.binErr = prepFailed, wire.NewError(CodeRuntimeEnvFailed, "job %s: its binary for %s: %v", j.id.Short(), s.r.cfg.Platform, m.err)
			s.r.cfg.Logger.Warn().Err(m.err).Str("job", j.id.Short()).Msg("cannot get the job's binary")
			return
		}
		j.binState, j.binPath = prepReady, m.path
	} else {
		e := j.envs[m.env]
		if e == nil || e.state != prepFetching {
			return
		}
		if m.err != nil {
			e.state, e.err = prepFailed, wire.NewError(CodeRuntimeEnvFailed, "job %s: runtime env package %s: %v", j.id.Short(), short(e.proto.GetPackageDigest()), m.err)
			s.r.cfg.Logger.Warn().Err(m.err).Str("job", j.id.Short()).Msg("runtime env package failed")
			return
		}
		e.state, e.dir = prepReady, m.path
	}
	s.prestart(j)
}

// prestart starts the workers registerClient asked for once the job's
// own env is ready, so the first tasks do not wait for a process start.
func (s *state) prestart(j *jobState) {
	if j.prestarts == 0 || j.fatal != nil {
		return
	}
	e := j.envFor("", nil)
	if ready, _ := s.prepare(j, e); !ready {
		return
	}
	for ; j.prestarts > 0; j.prestarts-- {
		if s.startWorker(j, e, false) == nil {
			j.prestarts = 0
		}
	}
}

// resetFailedEnvs lets the next requests of failed runtime envs try
// again, once dispatch answered those that waited.
func (s *state) resetFailedEnvs() {
	for _, j := range s.jobs {
		if j.binState == prepFailed {
			j.binState, j.binErr = prepNone, nil
		}
		for _, e := range j.envs {
			if e.state == prepFailed {
				e.state, e.err = prepNone, nil
			}
		}
	}
}

// workingDir is where a worker of j with env e starts: e's package, else
// the driver's working directory if this node has it (the driver runs
// here, or the machines share it), else the node's session directory.
func (s *state) workingDir(j *jobState, e *runtimeEnv) string {
	if e.dir != "" {
		return e.dir
	}
	if j.dir != "" {
		if fi, err := os.Stat(j.dir); err == nil && fi.IsDir() {
			return j.dir
		}
	}
	return s.r.cfg.SessionDir
}

// serveRuntimeEnvCache answers RUNTIME_ENV_CACHE.
func (r *Raylet) runtimeEnvCache() *protos.RuntimeEnvCacheReply {
	return &protos.RuntimeEnvCacheReply{NodeId: r.cfg.NodeID.Bytes(), Dir: r.envCache.dir, CapBytes: uint64(r.envCache.cap), Entries: r.envCache.list()}
}
