package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/goray/goray/internal/runtimeenv"
)

// Runtime env packages: the job binaries and working-directory packages
// that nodes without a copy fetch, in the JetStream object store
// BucketPackages. Objects are named by content (BinaryObject,
// PackageObject), so a build or directory is stored once however many
// jobs use it, and a node checks what it fetched against the name.
//
// Drivers (and workers, for tasks that set their own runtime env) write
// it; raylets read it; the GCS creates it. `nats obj ls goray_packages`
// lists it.

// BucketPackages is the object store of runtime env packages.
const BucketPackages = "goray_packages"

// DefaultPackagesMaxBytes caps the bucket unless Options.PackagesMaxBytes
// says otherwise: an upload past it fails (the bucket discards new
// data, never old objects' chunks).
const DefaultPackagesMaxBytes = 16 << 30

// PackageChunkSize is the object store's chunk size for packages. Chunks
// must fit NATS's default 1 MB max payload with their headers; 512 KiB
// moves a 40 MB binary in and out of the store on loopback in about 50 ms
// each way, against 70 ms for nats.go's default 128 KiB (docs/benchmarks.md).
const PackageChunkSize = 512 << 10

// Metadata keys of a stored binary.
const (
	PackageMetaGOOS   = "goos"
	PackageMetaGOARCH = "goarch"
)

// BinaryObject is the object name of a job binary with digest (hex SHA-256).
func BinaryObject(digest string) string { return "bin/" + digest }

// PackageObject is the object name of a working-directory package.
func PackageObject(digest string) string { return "pkg/" + digest }

// Packages reads and writes BucketPackages.
type Packages struct {
	obs jetstream.ObjectStore
}

// createPackages creates (or updates the limits of) the bucket: the GCS
// does this when it starts.
func createPackages(ctx context.Context, js jetstream.JetStream, replicas int, maxBytes int64) error {
	if maxBytes <= 0 {
		maxBytes = DefaultPackagesMaxBytes
	}
	_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      BucketPackages,
		Description: "goray runtime env packages: job binaries (bin/<sha256>) and working directories (pkg/<sha256>)",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		MaxBytes:    maxBytes,
	})
	if err != nil {
		return fmt.Errorf("%w: open object store %s: %w", ErrUnavailable, BucketPackages, err)
	}
	return nil
}

// OpenPackages binds to the bucket the GCS created.
func OpenPackages(ctx context.Context, nc *nats.Conn) (*Packages, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: JetStream: %w", ErrUnavailable, err)
	}
	obs, err := js.ObjectStore(ctx, BucketPackages)
	if err != nil {
		return nil, fmt.Errorf("%w: object store %s: %w", ErrUnavailable, BucketPackages, err)
	}
	return &Packages{obs: obs}, nil
}

// Has reports whether name is stored (complete: the object store writes
// an object's record after its last chunk).
func (p *Packages) Has(ctx context.Context, name string) (bool, error) {
	_, err := p.obs.GetInfo(ctx, name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return false, nil
	}
	return false, fmt.Errorf("%w: %s %s: %w", ErrUnavailable, BucketPackages, name, err)
}

// Put stores r's content as name, with meta.
func (p *Packages) Put(ctx context.Context, name string, r io.Reader, meta map[string]string) error {
	_, err := p.obs.Put(ctx, jetstream.ObjectMeta{
		Name:     name,
		Metadata: meta,
		Opts:     &jetstream.ObjectMetaOptions{ChunkSize: PackageChunkSize},
	}, r)
	if err != nil {
		return fmt.Errorf("%w: store %s in %s: %w", ErrUnavailable, name, BucketPackages, err)
	}
	return nil
}

// Fetch writes name's content to w. An object not stored yet is waited
// for until ctx ends: a driver uploads its binary while its first tasks
// are already on their way to other nodes.
func (p *Packages) Fetch(ctx context.Context, name string, w io.Writer) error {
	wait := 10 * time.Millisecond
	for {
		res, err := p.obs.Get(ctx, name)
		if err == nil {
			_, err = io.Copy(w, res)
			res.Close()
			if err != nil {
				return fmt.Errorf("%w: read %s from %s: %w", ErrUnavailable, name, BucketPackages, err)
			}
			return nil
		}
		if !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("%w: read %s from %s: %w", ErrUnavailable, name, BucketPackages, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s is not in %s (was it uploaded? its driver may have exited first): %w", ErrNotFound, name, BucketPackages, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// Touch marks name as in use now (its record is written again, with a
// new time): the GCS's cleaning spares what running jobs touched. A
// driver touches an object it found stored instead of uploading it.
func (p *Packages) Touch(ctx context.Context, name string) error {
	info, err := p.obs.GetInfo(ctx, name)
	if err == nil {
		err = p.obs.UpdateMeta(ctx, name, info.ObjectMeta)
	}
	if err != nil {
		return fmt.Errorf("%w: touch %s in %s: %w", ErrUnavailable, name, BucketPackages, err)
	}
	return nil
}

// Delete removes name.
func (p *Packages) Delete(ctx context.Context, name string) error {
	if err := p.obs.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("%w: delete %s from %s: %w", ErrUnavailable, name, BucketPackages, err)
	}
	return nil
}

// UploadPacked stores a packed working directory as PackageObject(its
// digest) unless the store has it, in which case it is touched so that
// the cleaning does not take it now. stored says which.
func UploadPacked(ctx context.Context, store *Packages, p *runtimeenv.Package) (stored bool, err error) {
	name := PackageObject(p.Digest)
	has, err := store.Has(ctx, name)
	if err != nil {
		return false, err
	}
	if has {
		return false, store.Touch(ctx, name)
	}
	f, err := os.Open(p.Path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := store.Put(ctx, name, f, map[string]string{"content": strconv.FormatInt(p.Content, 10), "files": strconv.Itoa(p.Files)}); err != nil {
		return false, err
	}
	return true, nil
}
