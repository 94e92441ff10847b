package runtimeenv

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Limits of Unpack beside the caller's content cap. A package comes from
// another process: without them a few kilobytes of compressed input could
// make a node create or hash without end.
var (
	// maxEntries bounds the entries of a package (a var for tests).
	maxEntries = 1_000_000
	// A package's bytes other than file content (headers, padding, long
	// names) may be metaBase plus metaPerEntry per entry: a path as long
	// as Linux allows takes about 6 KiB.
	metaBase     int64 = 1 << 20
	metaPerEntry int64 = 8 << 10
)

const (
	// maxTrailing bounds what may follow the tar's end marker (other tar
	// writers pad to a record of 10 KiB); it is hashed like the rest.
	maxTrailing = 64 << 10
	// maxWindow bounds the zstd window, the decoder's memory; Pack's
	// encoder uses far less.
	maxWindow = 64 << 20
)

// Unpack reads an archive written by Pack from r into dir, and returns
// the hex SHA-256 of its uncompressed tar stream.
//
// dir must not exist yet; its parent must. Unpack writes a temporary
// sibling, dir+".tmp-<random>", and renames it to dir once everything is
// written and checked, so that dir, if it exists, is a whole package: a
// node that crashed while unpacking finds no half package at the final
// path. On any error Unpack removes what it wrote.
//
// The input is treated as hostile (a peer uploaded it): Unpack refuses
// absolute names, names with ".." components, entries inside a symbolic
// link, links that lead out of dir, hard links, devices and all other
// types but directories, regular files and symbolic links (ErrUnsafePath
// or ErrUnsupportedFile); more than maxContent bytes of file content
// (0 means DefaultMaxSize), counted as read, or more than a million
// entries (ErrTooLarge). If want is not "" and the digest differs, it
// fails with ErrDigestMismatch.
//
// Directories are 0755, files 0644 or 0755 after the stored exec bit,
// whatever the umask.
func Unpack(r io.Reader, dir string, maxContent int64, want string) (digest string, err error) {
	if maxContent <= 0 {
		maxContent = DefaultMaxSize
	}
	if _, err := os.Lstat(dir); err == nil {
		return "", fmt.Errorf("unpack: %s already exists", dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("unpack: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("unpack: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("unpack: %w", err)
	}
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxWindow))
	if err != nil {
		return "", fmt.Errorf("unpack: %w", err)
	}
	defer zr.Close()
	h := sha256.New()
	stream := &countingReader{r: io.TeeReader(zr, h)}
	tr := tar.NewReader(stream)
	u := &unpacker{root: tmp, max: maxContent, dirs: map[string]bool{}, links: map[string]string{}}
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// tar stops without complaint at a clean end of its input;
			// only its two zero blocks tell a whole archive from a cut one.
			if stream.zeros < 2*blockSize {
				return "", fmt.Errorf("unpack: the archive ends without tar's end marker (cut short?)")
			}
			break
		}
		if err != nil {
			return "", fmt.Errorf("unpack: %w", err)
		}
		if n >= maxEntries {
			return "", fmt.Errorf("%w: more than %d entries", ErrTooLarge, maxEntries)
		}
		if meta := stream.n - u.content; meta > metaBase+int64(n+1)*metaPerEntry {
			return "", fmt.Errorf("%w: %d bytes of headers for %d entries", ErrTooLarge, meta, n+1)
		}
		if err := u.entry(hdr, tr); err != nil {
			return "", err
		}
	}
	// What follows the end marker is part of the stream the digest names.
	if n, err := io.Copy(io.Discard, io.LimitReader(stream, maxTrailing+1)); err != nil {
		return "", fmt.Errorf("unpack: %w", err)
	} else if n > maxTrailing {
		return "", fmt.Errorf("unpack: more than %d bytes after the archive's end", maxTrailing)
	}
	if err := u.checkLinks(); err != nil {
		return "", err
	}
	digest = hex.EncodeToString(h.Sum(nil))
	if want != "" && digest != want {
		return "", fmt.Errorf("%w: got %s, want %s", ErrDigestMismatch, digest, want)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("unpack: %w", err)
	}
	return digest, nil
}

// blockSize is tar's.
const blockSize = 512

// countingReader counts the bytes read, and the zero bytes they end with.
type countingReader struct {
	r     io.Reader
	n     int64
	zeros int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	i := n
	for i > 0 && p[i-1] == 0 {
		i--
	}
	if i > 0 {
		c.zeros = 0
	}
	c.zeros += int64(n - i)
	return n, err
}

type unpacker struct {
	root    string
	max     int64
	content int64 // file bytes written so far
	// dirs are the directories known to be real ones (not links), by
	// slash name.
	dirs map[string]bool
	// links are the symbolic links unpacked, by folded slash name.
	links map[string]string
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return nil // "./": the root, which exists
		}
		return fmt.Errorf("%w: %q", ErrUnsafePath, hdr.Name)
	}
	dst := filepath.Join(u.root, filepath.FromSlash(name))
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdirs(name, name)
	case tar.TypeReg:
		if hdr.Size < 0 || hdr.Size > u.max-u.content {
			return fmt.Errorf("%w: %s (%d bytes) would take the package past its cap of %d bytes", ErrTooLarge, name, hdr.Size, u.max)
		}
		if err := u.mkdirs(path.Dir(name), name); err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if hdr.Mode&0o111 != 0 {
			mode = 0o755
		}
		// O_EXCL: an existing name, a link above all, is not written
		// through.
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return u.createError(name, err)
		}
		// The header's size was checked; the bytes are counted as they
		// come all the same, as they are what fills the disk.
		n, err := io.Copy(f, io.LimitReader(r, u.max-u.content+1))
		u.content += n
		if err == nil {
			err = f.Chmod(mode)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("unpack: %s: %w", name, err)
		}
		if u.content > u.max {
			return fmt.Errorf("%w: %s takes the package past its cap of %d bytes", ErrTooLarge, name, u.max)
		}
		return nil
	case tar.TypeSymlink:
		t := hdr.Linkname
		if t == "" || strings.ContainsRune(t, 0) || path.IsAbs(t) || runtime.GOOS == "windows" && strings.ContainsAny(t, `\:`) {
			return fmt.Errorf("%w: symbolic link %s -> %q", ErrUnsafePath, name, t)
		}
		if err := u.mkdirs(path.Dir(name), name); err != nil {
			return err
		}
		// Checked now against the links so far, to fail early, and again
		// at the end against all of them.
		if _, err := resolveLink(name, t, u.linkAt, nil); err != nil {
			return fmt.Errorf("%w: symbolic link %s -> %s %v", ErrUnsafePath, name, t, err)
		}
		if err := os.Symlink(filepath.FromSlash(t), dst); err != nil {
			return u.createError(name, err)
		}
		u.links[foldName(name)] = t
		return nil
	case tar.TypeLink:
		return fmt.Errorf("%w: %s is a hard link (to %s)", ErrUnsupportedFile, name, hdr.Linkname)
	}
	return fmt.Errorf("%w: %s has tar type %q; only directories, regular files and symbolic links unpack", ErrUnsupportedFile, name, hdr.Typeflag)
}

// mkdirs makes sure the directory dir and its parents exist as real
// directories, creating what is missing, for the entry name. A parent
// that is a link fails: writing through it would write where the link
// leads, which no check of the names alone can bound.
func (u *unpacker) mkdirs(dir, name string) error {
	if dir == "." {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		if u.dirs[p] {
			continue
		}
		full := filepath.Join(u.root, filepath.FromSlash(p))
		fi, err := os.Lstat(full)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(full, 0o755); err != nil {
				return fmt.Errorf("unpack: %w", err)
			}
			if err := os.Chmod(full, 0o755); err != nil {
				return fmt.Errorf("unpack: %w", err)
			}
		case err != nil:
			return fmt.Errorf("unpack: %w", err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %s is inside symbolic link %s", ErrUnsafePath, name, p)
		case !fi.IsDir() && p == name:
			return fmt.Errorf("unpack: %s appears twice in the package: %w", name, fs.ErrExist)
		case !fi.IsDir():
			return fmt.Errorf("%w: %s is inside file %s", ErrUnsafePath, name, p)
		}
		u.dirs[p] = true
	}
	return nil
}

// createError describes a failure to create the entry name, without the
// temporary directory's path, which means nothing to whoever reads it.
func (u *unpacker) createError(name string, err error) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("unpack: %s appears twice in the package: %w", name, fs.ErrExist)
	}
	return fmt.Errorf("unpack: %s: %w", name, err)
}

// checkLinks resolves every link against all the package's links: one
// that stayed inside when it was unpacked may lead out through a link
// that came later.
func (u *unpacker) checkLinks() error {
	for _, name := range slices.Sorted(maps.Keys(u.links)) {
		if _, err := resolveLink(name, u.links[name], u.linkAt, nil); err != nil {
			return fmt.Errorf("%w: symbolic link %s -> %s %v", ErrUnsafePath, name, u.links[name], err)
		}
	}
	return nil
}

func (u *unpacker) linkAt(p string) (string, bool) {
	t, ok := u.links[foldName(p)]
	return t, ok
}

// foldCase says whether names that differ only in case are one file, as
// on the default file systems of macOS and Windows. Link checks must see
// them as the disk does; goray's nodes run Linux, where they differ.
var foldCase = runtime.GOOS == "darwin" || runtime.GOOS == "windows"

func foldName(p string) string {
	if foldCase {
		return strings.ToLower(p)
	}
	return p
}

// cleanName checks a tar entry's name and returns it cleaned: a relative
// slash path without "..", so that it stays below the root.
func cleanName(raw string) (string, error) {
	bad := raw == "" || path.IsAbs(raw) || strings.ContainsRune(raw, 0) ||
		runtime.GOOS == "windows" && strings.ContainsAny(raw, `\:`)
	for _, part := range strings.Split(raw, "/") {
		bad = bad || part == ".."
	}
	if bad {
		return "", fmt.Errorf("%w: %q", ErrUnsafePath, raw)
	}
	return path.Clean(raw), nil
}
