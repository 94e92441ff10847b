// Package digest computes the SHA-256 digests that name goray's job
// binaries, once per file version per process: a driver hashes its
// executable when it registers its job, a raylet checks the file it is
// about to start as a job's worker against the job's digest.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// ErrMismatch reports a file whose content is not the expected one.
var ErrMismatch = errors.New("digest mismatch")

// version identifies one version of a file: the same inode, size and
// modification and change times mean the same content (a binary rebuilt
// in place, or replaced by a rename, changes one of them).
type version struct {
	dev, ino   uint64
	size       int64
	mtim, ctim syscall.Timespec
}

var (
	mu    sync.Mutex
	cache = map[string]cached{} // by path
)

type cached struct {
	v      version
	digest string
}

// errChanged: the file changed while it was hashed.
var errChanged = errors.New("the file changed while it was read")

// File returns the hex SHA-256 of the file at path, from the cache when
// the file has not changed since it was last hashed. A change while it is
// read is retried: a hard link made meanwhile (a raylet caching the
// binary) changes the file's ctime, not its content.
func File(path string) (string, error) {
	var err error
	for range 3 {
		var d string
		if d, err = file(path); !errors.Is(err, errChanged) {
			return d, err
		}
	}
	return "", err
}

func file(path string) (string, error) {
	// O_NONBLOCK: opening a FIFO named as a binary must not wait for a
	// writer (it is then refused as not a regular file).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	defer f.Close()
	v, err := versionOf(f)
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	mu.Lock()
	c, ok := cache[path]
	mu.Unlock()
	if ok && c.v == v {
		return c.digest, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	d := hex.EncodeToString(h.Sum(nil))
	// Hashing took a while: if the file changed meanwhile, the digest is
	// of no one version, so it is not cached (and a Verify fails).
	if v2, err := versionOf(f); err != nil || v2 != v {
		return "", fmt.Errorf("digest %s: %w", path, errChanged)
	}
	mu.Lock()
	cache[path] = cached{v: v, digest: d}
	mu.Unlock()
	return d, nil
}

// Verify checks that the file at path has digest want.
func Verify(path, want string) error {
	got, err := File(path)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: %s has SHA-256 %s, want %s", ErrMismatch, path, short(got), short(want))
	}
	return nil
}

func short(d string) string {
	if len(d) > 16 {
		return d[:16]
	}
	return d
}

func versionOf(f *os.File) (version, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return version{}, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return version{}, errors.New("not a regular file")
	}
	return version{dev: st.Dev, ino: st.Ino, size: st.Size, mtim: st.Mtim, ctim: st.Ctim}, nil
}
