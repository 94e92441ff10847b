package raylet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/digest"
	"github.com/goray/goray/internal/runtimeenv"
	"github.com/goray/goray/protos"
)

// fakeStore serves objects by name and counts fetches: the packages
// object store, for the cache's unit tests.
type fakeStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	fetches atomic.Int32
}

func (f *fakeStore) fetch(_ context.Context, name string, w io.Writer) error {
	f.fetches.Add(1)
	f.mu.Lock()
	b, ok := f.objects[name]
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s not stored", name)
	}
	_, err := w.Write(b)
	return err
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestEnvCacheBinaries(t *testing.T) {
	store := &fakeStore{objects: map[string][]byte{}}
	dir := t.TempDir()
	c, err := newEnvCache(dir, 1<<20, store.fetch, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	jobA, jobB := protos.NewUniqueID(), protos.NewUniqueID()
	content := []byte("#!/bin/sh\necho binary one\n")
	d := sum(content)
	store.objects[binaryObject(d)] = content
	bin := &protos.JobBinary{Goos: "linux", Goarch: "amd64", Digest: d}

	// Fetched once, for two jobs and concurrent callers.
	var wg sync.WaitGroup
	paths := make([]string, 8)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			job := jobA
			if i%2 == 1 {
				job = jobB
			}
			p, err := c.binary(ctx, job, bin, "")
			if err != nil {
				t.Error(err)
			}
			paths[i] = p
		}()
	}
	wg.Wait()
	if n := store.fetches.Load(); n != 1 {
		t.Errorf("fetched %d times, want once", n)
	}
	for _, p := range paths {
		if p != filepath.Join(dir, "bin", d) {
			t.Fatalf("path %q", p)
		}
	}
	if err := digest.Verify(paths[0], d); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(paths[0]); fi.Mode()&0o111 == 0 {
		t.Errorf("cached binary mode %v: not executable", fi.Mode())
	}
	l := c.list()
	if len(l) != 1 || l[0].GetSource() != sourceFetched || len(l[0].GetJobIds()) != 2 || l[0].GetPlatform() != "linux/amd64" {
		t.Errorf("list: %v", l)
	}

	// Content that is not what its name says is refused, not cached.
	bad := sum([]byte("other"))
	store.objects[binaryObject(bad)] = []byte("tampered")
	if _, err := c.binary(ctx, jobA, &protos.JobBinary{Goos: "linux", Goarch: "amd64", Digest: bad}, ""); !errors.Is(err, digest.ErrMismatch) {
		t.Errorf("tampered binary: %v, want a digest mismatch", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", bad)); !os.IsNotExist(err) {
		t.Errorf("tampered binary cached: %v", err)
	}
	// A failure is not kept: once stored, the next call gets it.
	missing := []byte("late upload")
	md := sum(missing)
	if _, err := c.binary(ctx, jobA, &protos.JobBinary{Digest: md}, ""); err == nil {
		t.Fatal("a binary not stored yet was found")
	}
	store.objects[binaryObject(md)] = missing
	if _, err := c.binary(ctx, jobA, &protos.JobBinary{Digest: md}, ""); err != nil {
		t.Errorf("after its upload: %v", err)
	}

	// The driver's file on this node is linked, not fetched.
	local := filepath.Join(t.TempDir(), "driver")
	localContent := []byte("the driver's own binary")
	if err := os.WriteFile(local, localContent, 0o755); err != nil {
		t.Fatal(err)
	}
	before := store.fetches.Load()
	p, err := c.binary(ctx, jobA, &protos.JobBinary{Digest: sum(localContent)}, local)
	if err != nil || store.fetches.Load() != before {
		t.Fatalf("local binary: %v, fetches %d -> %d", err, before, store.fetches.Load())
	}
	if err := os.Remove(local); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != string(localContent) {
		t.Errorf("the cached copy after the driver's file was deleted: %q, %v", b, err)
	}
}

func TestEnvCacheEvictsUnusedPastItsCap(t *testing.T) {
	store := &fakeStore{objects: map[string][]byte{}}
	dir := t.TempDir()
	c, err := newEnvCache(dir, 250, store.fetch, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	jobs := []protos.JobID{protos.NewUniqueID(), protos.NewUniqueID(), protos.NewUniqueID()}
	var digests []string
	for i, j := range jobs {
		b := make([]byte, 100)
		b[0] = byte(i)
		d := sum(b)
		store.objects[binaryObject(d)] = b
		if _, err := c.binary(ctx, j, &protos.JobBinary{Digest: d}, ""); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	// 300 bytes, all in use: nothing goes.
	if n := len(c.list()); n != 3 {
		t.Fatalf("%d entries while all are used, want 3", n)
	}
	// The first two jobs end: the least recently used unused entry goes
	// until the cache is under its cap.
	c.release(jobs[0])
	c.release(jobs[1])
	left := map[string]bool{}
	for _, e := range c.list() {
		left[e.GetDigest()] = true
	}
	if left[digests[0]] || !left[digests[1]] || !left[digests[2]] {
		t.Errorf("after release: %v; want the oldest unused entry removed, the rest kept", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", digests[0])); !os.IsNotExist(err) {
		t.Errorf("evicted binary still on disk: %v", err)
	}

	// A raylet started again on the directory finds what is there, and
	// removes partial downloads.
	if err := os.WriteFile(filepath.Join(dir, "bin", "."+digests[2]+".tmp-1"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := newEnvCache(dir, 250, store.fetch, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c2.list()); n != 2 {
		t.Errorf("restarted cache holds %d entries, want 2", n)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "bin", ".*tmp*")); len(m) != 0 {
		t.Errorf("partial downloads left: %v", m)
	}
}

func TestEnvCachePackages(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "data.txt"), []byte("shipped"), 0o644); err != nil {
		t.Fatal(err)
	}
	pkg, err := runtimeenv.Pack(runtimeenv.PackSpec{WorkingDir: src}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	archive, err := os.ReadFile(pkg.Path)
	if err != nil {
		t.Fatal(err)
	}
	store := &fakeStore{objects: map[string][]byte{packageObject(pkg.Digest): archive}}
	c, err := newEnvCache(t.TempDir(), 1<<20, store.fetch, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		dir, err := c.pkg(ctx, protos.NewUniqueID(), pkg.Digest, uint64(pkg.Content))
		if err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "data.txt")); err != nil || string(b) != "shipped" {
			t.Fatalf("unpacked data.txt: %q, %v", b, err)
		}
	}
	if n := store.fetches.Load(); n != 1 {
		t.Errorf("package fetched %d times, want once", n)
	}
	// A package named for other content is refused.
	other := sum([]byte("x"))
	store.objects[packageObject(other)] = archive
	if _, err := c.pkg(ctx, protos.NewUniqueID(), other, uint64(pkg.Content)); !errors.Is(err, runtimeenv.ErrDigestMismatch) {
		t.Errorf("package under another digest: %v, want ErrDigestMismatch", err)
	}
	// More than the cache can hold is refused before any download.
	if _, err := c.pkg(ctx, protos.NewUniqueID(), other, 2<<20); !errors.Is(err, runtimeenv.ErrTooLarge) {
		t.Errorf("package larger than the cache: %v, want ErrTooLarge", err)
	}
}
