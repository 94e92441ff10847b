package raylet

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/digest"
	"github.com/goray/goray/internal/runtimeenv"
	"github.com/goray/goray/protos"
)

// The node's runtime env cache: job binaries and unpacked working
// directories under <SessionDir>/runtime_resources, named by digest, so
// jobs with the same binary or directory share one copy and a second job
// downloads nothing. Entries are fetched on first use (Config.FetchPackage)
// and verified against their digest; an entry no job on the node uses is
// removed once the cache holds more than its cap, least recently used
// first.

// DefaultRuntimeEnvCacheBytes is Config.RuntimeEnvCacheBytes's default
// (Ray's working_dir cache defaults to 10 GB too).
const DefaultRuntimeEnvCacheBytes = 10 << 30

// Kinds of cache entry.
const (
	cacheBinary  = "binary"
	cachePackage = "package"
)

// Sources of a cache entry.
const (
	sourceFetched = "fetched" // from the packages object store
	sourceLocal   = "local"   // the driver's file on this node, linked or copied
	sourceFound   = "found"   // already in the directory when the raylet started
)

type envCache struct {
	dir   string
	cap   int64
	fetch func(ctx context.Context, name string, w io.Writer) error
	log   zerolog.Logger

	mu      sync.Mutex
	entries map[string]*cacheEntry // by kind/digest
}

type cacheEntry struct {
	kind, digest string
	platform     string
	source       string
	path         string
	size         int64
	users        map[protos.JobID]struct{}
	lastUsed     time.Time
	// done is closed once the entry is ready or failed (err).
	done chan struct{}
	err  error
}

func newEnvCache(dir string, capBytes int64, fetch func(context.Context, string, io.Writer) error, log zerolog.Logger) (*envCache, error) {
	if capBytes <= 0 {
		capBytes = DefaultRuntimeEnvCacheBytes
	}
	c := &envCache{dir: dir, cap: capBytes, fetch: fetch, log: log, entries: map[string]*cacheEntry{}}
	for _, sub := range []string{"bin", "pkg"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("runtime env cache: %w", err)
		}
	}
	c.adoptExisting()
	return c, nil
}

// adoptExisting takes in what an earlier raylet on the same session
// directory left (a restarted head keeps its cache). Only complete entries
// have a digest for a name: partial ones are temp names, removed here.
func (c *envCache) adoptExisting() {
	for _, kind := range []string{cacheBinary, cachePackage} {
		sub := c.subdir(kind)
		des, _ := os.ReadDir(sub)
		for _, de := range des {
			p := filepath.Join(sub, de.Name())
			if !runtimeenv.IsDigest(de.Name()) {
				_ = os.RemoveAll(p)
				continue
			}
			e := &cacheEntry{kind: kind, digest: de.Name(), source: sourceFound, path: p, size: diskUsage(p),
				users: map[protos.JobID]struct{}{}, lastUsed: time.Now(), done: make(chan struct{})}
			if kind == cacheBinary {
				if goos, goarch, err := runtimeenv.Platform(p); err == nil {
					e.platform = goos + "/" + goarch
				}
			}
			close(e.done)
			c.entries[kind+"/"+e.digest] = e
		}
	}
}

func (c *envCache) subdir(kind string) string {
	if kind == cacheBinary {
		return filepath.Join(c.dir, "bin")
	}
	return filepath.Join(c.dir, "pkg")
}

// binary returns the path of the job binary b, for job: the cached copy,
// else a link to (or copy of) local when that file has b's digest (the
// driver runs on this node), else a verified download.
func (c *envCache) binary(ctx context.Context, job protos.JobID, b *protos.JobBinary, local string) (string, error) {
	return c.get(ctx, job, cacheBinary, b.GetDigest(), func(e *cacheEntry, tmp string) error {
		e.platform = b.GetGoos() + "/" + b.GetGoarch()
		if local != "" && digest.Verify(local, b.GetDigest()) == nil {
			// A link is the file just verified; a copy is checked.
			linked, err := linkOrCopy(local, tmp)
			if err == nil && (linked || digest.Verify(tmp, b.GetDigest()) == nil) {
				e.source = sourceLocal
				return nil
			}
			_ = os.Remove(tmp)
		}
		e.source = sourceFetched
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		h := sha256.New()
		err = c.fetch(ctx, binaryObject(b.GetDigest()), io.MultiWriter(f, h))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != b.GetDigest() {
			return fmt.Errorf("%w: fetched binary has SHA-256 %s, want %s", digest.ErrMismatch, got, b.GetDigest())
		}
		return nil
	})
}

// pkg returns the directory of the unpacked package with digest d.
func (c *envCache) pkg(ctx context.Context, job protos.JobID, d string, content uint64) (string, error) {
	if content > uint64(c.cap) {
		return "", fmt.Errorf("%w: package %s holds %d bytes, more than this node's runtime env cache (%d bytes)", runtimeenv.ErrTooLarge, short(d), content, c.cap)
	}
	return c.get(ctx, job, cachePackage, d, func(e *cacheEntry, tmp string) error {
		e.source = sourceFetched
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(c.fetch(ctx, packageObject(d), pw)) }()
		_, err := runtimeenv.Unpack(pr, tmp, int64(content), d)
		pr.CloseWithError(errors.New("unpack ended"))
		return err
	})
}

// get returns the ready entry kind/d, filling it with fill (which writes
// tmp; get renames it into place) if this is its first use. Concurrent
// callers wait for the first; a failed fill is forgotten, so a later call
// tries again.
func (c *envCache) get(ctx context.Context, job protos.JobID, kind, d string, fill func(e *cacheEntry, tmp string) error) (string, error) {
	if !runtimeenv.IsDigest(d) {
		return "", fmt.Errorf("%w: %q is not a SHA-256 digest", ErrInvalidRequest, d)
	}
	key := kind + "/" + d
	c.mu.Lock()
	e := c.entries[key]
	first := e == nil
	if first {
		e = &cacheEntry{kind: kind, digest: d, path: filepath.Join(c.subdir(kind), d), users: map[protos.JobID]struct{}{}, done: make(chan struct{})}
		c.entries[key] = e
	}
	e.users[job] = struct{}{}
	e.lastUsed = time.Now()
	c.mu.Unlock()
	if first {
		start := time.Now()
		tmp := filepath.Join(c.subdir(kind), fmt.Sprintf(".%s.tmp-%d", d, time.Now().UnixNano()))
		err := fill(e, tmp)
		if err == nil {
			err = os.Rename(tmp, e.path)
		}
		c.mu.Lock()
		if err != nil {
			_ = os.RemoveAll(tmp)
			e.err = fmt.Errorf("runtime env %s %s: %w", kind, short(d), err)
			delete(c.entries, key)
		} else {
			e.size = diskUsage(e.path)
		}
		close(e.done)
		c.mu.Unlock()
		if err == nil {
			c.log.Info().Str("kind", kind).Str("digest", short(d)).Str("source", e.source).Int64("bytes", e.size).Dur("took", time.Since(start)).Msg("runtime env cached")
			c.evict()
		}
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if e.err != nil {
		return "", e.err
	}
	return e.path, nil
}

// release drops job's use of every entry (the node forgot the job), then
// trims the cache.
func (c *envCache) release(job protos.JobID) {
	if c == nil {
		return
	}
	c.mu.Lock()
	for _, e := range c.entries {
		delete(e.users, job)
	}
	c.mu.Unlock()
	c.evict()
}

// evict removes unused entries, least recently used first, while the
// cache holds more than its cap.
func (c *envCache) evict() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total int64
	var idle []*cacheEntry
	for _, e := range c.entries {
		total += e.size
		select {
		case <-e.done:
			if len(e.users) == 0 {
				idle = append(idle, e)
			}
		default:
		}
	}
	slices.SortFunc(idle, func(a, b *cacheEntry) int { return a.lastUsed.Compare(b.lastUsed) })
	for _, e := range idle {
		if total <= c.cap {
			return
		}
		if err := os.RemoveAll(e.path); err != nil {
			c.log.Warn().Err(err).Str("path", e.path).Msg("cannot remove runtime env cache entry")
			continue
		}
		delete(c.entries, e.kind+"/"+e.digest)
		total -= e.size
		c.log.Info().Str("kind", e.kind).Str("digest", short(e.digest)).Int64("bytes", e.size).Msg("runtime env cache entry removed (unused, cache over its cap)")
	}
}

// list describes the ready entries.
func (c *envCache) list() []*protos.RuntimeEnvCacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*protos.RuntimeEnvCacheEntry
	for _, e := range c.entries {
		select {
		case <-e.done:
		default:
			continue
		}
		ce := &protos.RuntimeEnvCacheEntry{Kind: e.kind, Digest: e.digest, Size: uint64(e.size), Platform: e.platform,
			LastUsedUnixMs: e.lastUsed.UnixMilli(), Source: e.source}
		for j := range e.users {
			ce.JobIds = append(ce.JobIds, j.Bytes())
		}
		slices.SortFunc(ce.JobIds, func(a, b []byte) int { return cmp.Compare(string(a), string(b)) })
		out = append(out, ce)
	}
	slices.SortFunc(out, func(a, b *protos.RuntimeEnvCacheEntry) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Digest, b.Digest))
	})
	return out
}

// linkOrCopy makes dst a copy of src: a hard link when both are on one
// file system (instant; the link keeps the content even if the driver's
// file is deleted), else a byte copy.
func linkOrCopy(src, dst string) (linked bool, err error) {
	if err := os.Link(src, dst); err == nil {
		return true, nil
	}
	in, err := os.Open(src)
	if err != nil {
		return false, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return false, err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return false, err
	}
	return false, out.Close()
}

// diskUsage is the bytes of the file, or of the files under the
// directory, at p.
func diskUsage(p string) int64 {
	var n int64
	_ = filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// Object names in the packages store (as gcs.BinaryObject and
// gcs.PackageObject; the raylet does not import gcs).
func binaryObject(d string) string  { return "bin/" + d }
func packageObject(d string) string { return "pkg/" + d }
