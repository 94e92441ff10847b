package core

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/digest"
	"github.com/goray/goray/internal/runtimeenv"
	"github.com/goray/goray/protos"
)

// Shipping the job's code: its binaries and working-directory packages go
// to the cluster's packages store (gcs.BucketPackages) by digest, where a
// node that lacks them fetches them. Each is stored once per cluster
// however many jobs use it: an upload first asks whether it is there.

// uploadedPackage is a working-directory package in the store.
type uploadedPackage struct {
	digest  string
	content int64
}

// pkgUpload is one package's upload, shared by every caller wanting the
// same PackSpec.
type pkgUpload struct {
	done chan struct{}
	pkg  *uploadedPackage
	err  error
}

// uploadPackage packs spec and uploads it unless the store has it, once
// per process per spec; a failure is not kept, so a later call retries.
func (cw *Worker) uploadPackage(ctx context.Context, spec runtimeenv.PackSpec) (*uploadedPackage, error) {
	key, err := spec.Key()
	if err != nil {
		return nil, fmt.Errorf("%w: runtime env: %w", ErrArgument, err)
	}
	cw.pkgMu.Lock()
	if cw.pkgUploads == nil {
		cw.pkgUploads = map[string]*pkgUpload{}
	}
	u := cw.pkgUploads[key]
	first := u == nil
	if first {
		u = &pkgUpload{done: make(chan struct{})}
		cw.pkgUploads[key] = u
	}
	cw.pkgMu.Unlock()
	if first {
		u.pkg, u.err = cw.packAndUpload(ctx, spec)
		if u.err != nil {
			cw.pkgMu.Lock()
			delete(cw.pkgUploads, key)
			cw.pkgMu.Unlock()
		}
		close(u.done)
	}
	select {
	case <-u.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return u.pkg, u.err
}

func (cw *Worker) packAndUpload(ctx context.Context, spec runtimeenv.PackSpec) (*uploadedPackage, error) {
	p, err := runtimeenv.Pack(spec, "")
	if err != nil {
		return nil, fmt.Errorf("%w: runtime env: %w", ErrArgument, err)
	}
	defer p.Remove()
	gc, err := cw.GCS()
	if err != nil {
		return nil, err
	}
	store, err := gc.Packages(ctx)
	if err != nil {
		return nil, fmt.Errorf("runtime env: %w", err)
	}
	start := time.Now()
	stored, err := gcs.UploadPacked(ctx, store, p)
	if err != nil {
		return nil, fmt.Errorf("runtime env: %w", err)
	}
	if stored {
		cw.log.Debug().Str("package", p.Digest[:12]).Int64("bytes", p.Size).Int("files", p.Files).Dur("took", time.Since(start)).Msg("runtime env package uploaded")
	}
	return &uploadedPackage{digest: p.Digest, content: p.Content}, nil
}

// jobBinary is a build of the job's program and where this process reads
// it.
type jobBinary struct {
	path string
	info *protos.JobBinary
}

// ownBinary describes the running program. It is read from
// /proc/self/exe where there is one: the file that runs, even if its path
// was deleted or replaced since.
func ownBinary(d string) jobBinary {
	path := executable()
	if runtime.GOOS == "linux" {
		path = "/proc/self/exe"
	}
	var size uint64
	if fi, err := os.Stat(path); err == nil {
		size = uint64(fi.Size())
	}
	return jobBinary{path: path, info: &protos.JobBinary{Goos: runtime.GOOS, Goarch: runtime.GOARCH, Digest: d, Size: size}}
}

// extraBinaries reads the builds for other platforms given with Binaries.
func extraBinaries(own jobBinary, paths []string) ([]jobBinary, error) {
	seen := map[string]string{own.info.GetGoos() + "/" + own.info.GetGoarch(): "this program"}
	var out []jobBinary
	for _, p := range paths {
		goos, goarch, err := runtimeenv.Platform(p)
		if err != nil {
			return nil, fmt.Errorf("%w: Binaries: %w", ErrArgument, err)
		}
		plat := goos + "/" + goarch
		if other, ok := seen[plat]; ok {
			return nil, fmt.Errorf("%w: Binaries: %s is a %s build, as %s is", ErrArgument, p, plat, other)
		}
		seen[plat] = p
		d, err := digest.File(p)
		if err != nil {
			return nil, fmt.Errorf("%w: Binaries: %w", ErrArgument, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: Binaries: %w", ErrArgument, err)
		}
		out = append(out, jobBinary{path: p, info: &protos.JobBinary{Goos: goos, Goarch: goarch, Digest: d, Size: uint64(fi.Size())}})
	}
	return out, nil
}

// binaryUploads uploads the job's binaries in the background. A driver
// that joined a cluster starts at once; an embedded cluster's driver waits
// until another node joins (until then its own node runs its file).
type binaryUploads struct {
	bins   []jobBinary
	gc     *gcs.Client
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup
	sub    *nats.Subscription
	log    zerolog.Logger
}

func (s *session) startBinaryUploads(bins []jobBinary, ownNode []byte) error {
	ctx, cancel := context.WithCancel(context.Background())
	u := &binaryUploads{bins: bins, gc: s.gcs, ctx: ctx, cancel: cancel, log: s.cw.log}
	s.uploads = u
	if s.head == nil {
		u.start()
		return nil
	}
	sub, err := s.gcs.NATS().Subscribe(gcs.SubjectNodeEvents, func(m *nats.Msg) {
		info := &protos.NodeInfo{}
		if gcs.DecodeEvent(m.Data, info) == nil && info.GetState() == protos.NodeInfo_ALIVE && string(info.GetNodeId()) != string(ownNode) {
			u.start()
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe to node events: %w", err)
	}
	u.sub = sub
	lctx, lcancel := context.WithTimeout(ctx, gcs.DefaultRequestTimeout)
	defer lcancel()
	if nodes, err := s.gcs.ListNodes(lctx); err == nil {
		for _, n := range nodes {
			if n.GetState() == protos.NodeInfo_ALIVE && string(n.GetNodeId()) != string(ownNode) {
				u.start()
			}
		}
	}
	return nil
}

// start uploads once.
func (u *binaryUploads) start() {
	u.once.Do(func() {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			// Tried again until it is stored: the head may be restarting
			// (a node waiting for the binary waits for it meanwhile).
			wait := 250 * time.Millisecond
			for {
				err := u.upload()
				if err == nil || u.ctx.Err() != nil {
					return
				}
				u.log.Warn().Err(err).Msgf("goray: uploading the job's binary failed; trying again in %v (nodes without a copy wait for it)", wait)
				select {
				case <-u.ctx.Done():
					return
				case <-time.After(wait):
				}
				wait = min(2*wait, 5*time.Second)
			}
		}()
	})
}

func (u *binaryUploads) upload() error {
	store, err := u.gc.Packages(u.ctx)
	if err != nil {
		return err
	}
	for _, b := range u.bins {
		name := gcs.BinaryObject(b.info.GetDigest())
		has, err := store.Has(u.ctx, name)
		if err != nil {
			return err
		}
		plat := b.info.GetGoos() + "/" + b.info.GetGoarch()
		if has {
			// The job's record names it, which keeps it from the GCS's
			// cleaning while the job runs.
			u.log.Info().Str("digest", b.info.GetDigest()[:12]).Str("platform", plat).Msg("goray: job binary already in the cluster's package store")
			continue
		}
		f, err := os.Open(b.path)
		if err != nil {
			return err
		}
		start := time.Now()
		err = store.Put(u.ctx, name, f, map[string]string{gcs.PackageMetaGOOS: b.info.GetGoos(), gcs.PackageMetaGOARCH: b.info.GetGoarch()})
		f.Close()
		if err != nil {
			return err
		}
		u.log.Info().Str("digest", b.info.GetDigest()[:12]).Str("platform", plat).Uint64("bytes", b.info.GetSize()).Dur("took", time.Since(start)).Msg("goray: job binary uploaded")
	}
	return nil
}

// stop ends the uploads: one under way gets until wait to finish (a
// node may be fetching it), then is cancelled.
func (u *binaryUploads) stop(wait time.Duration) {
	if u == nil {
		return
	}
	if u.sub != nil {
		_ = u.sub.Unsubscribe()
	}
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
	}
	u.cancel()
	u.wg.Wait()
}
