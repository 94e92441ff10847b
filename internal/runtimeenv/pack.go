package runtimeenv

import (
	"archive/tar"
	"cmp"
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
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// PackSpec says what goes into a package.
type PackSpec struct {
	// WorkingDir is a directory whose content becomes the package's root;
	// may be "".
	WorkingDir string
	// Files are extra files or directories, each placed at the package's
	// root under its base name.
	Files []string
	// Excludes are patterns left out besides DefaultExcludes, a small
	// subset of .gitignore's: a pattern without '/' matches the base name
	// of an entry at any depth, one with '/' the whole slash path from the
	// package's root (a leading '/' only anchors it), and a trailing '/'
	// matches directories only. Matching is path.Match's (*, ?, [...]; no
	// **). An excluded directory is left out with all it holds. The paths
	// named by WorkingDir and Files themselves are never excluded: naming
	// one is asking for it.
	Excludes []string
	// MaxSize caps the sum of the files' content bytes; 0 means
	// DefaultMaxSize.
	MaxSize int64
}

// DefaultExcludes are left out of every package: a repository's history
// is seldom what a job reads, and often most of a working directory.
var DefaultExcludes = []string{".git"}

// DefaultMaxSize is the cap on a package's content when PackSpec.MaxSize
// is 0. Every node that runs the job holds the unpacked tree, so a
// working directory larger than this is more likely a mistake (data,
// build output) than code.
const DefaultMaxSize = 512 << 20

// Package is a packed archive in a temporary file.
type Package struct {
	// Path is the archive file; the caller removes it, or calls Remove.
	Path string
	// Digest is the lowercase hex SHA-256 of the uncompressed tar stream:
	// the package's name. It is of the tar, not of the compressed file, so
	// that it depends on the tree alone and not on the compressor.
	Digest string
	// Size is the archive file's bytes (compressed).
	Size int64
	// Content is the sum of the files' content bytes.
	Content int64
	// Files is the number of regular files.
	Files int
}

// Remove deletes the archive file.
func (p *Package) Remove() error { return os.Remove(p.Path) }

// Key returns a stable string identifying s: its absolute paths, its
// excludes (DefaultExcludes included) and its cap. Two specs with the same
// key pack the same tree as long as the files do not change, so a caller
// may pack a key once per process.
func (s PackSpec) Key() (string, error) {
	abs := func(p string) (string, error) {
		if p == "" {
			return "", nil
		}
		a, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("pack: %w", err)
		}
		return a, nil
	}
	wd, err := abs(s.WorkingDir)
	if err != nil {
		return "", err
	}
	files := make([]string, len(s.Files))
	for i, f := range s.Files {
		if files[i], err = abs(f); err != nil {
			return "", err
		}
	}
	excludes := append(slices.Clone(DefaultExcludes), s.Excludes...)
	return fmt.Sprintf("wd=%q files=%q excludes=%q max=%d", wd, files, excludes, s.maxSize()), nil
}

func (s PackSpec) maxSize() int64 {
	if s.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return s.MaxSize
}

// Pack writes the package of spec into a new temporary file in tmpDir (""
// for os.TempDir()).
//
// It walks and measures the whole tree before it writes a byte, so a tree
// over the cap, or holding a file that cannot be packed, fails at once
// rather than after compressing gigabytes.
func Pack(spec PackSpec, tmpDir string) (*Package, error) {
	sc, err := scan(spec)
	if err != nil {
		return nil, err
	}
	out, err := os.CreateTemp(tmpDir, "goray-pkg-*.tar.zst")
	if err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	fail := func(err error) (*Package, error) {
		_ = out.Close()
		_ = os.Remove(out.Name())
		return nil, fmt.Errorf("pack: %w", err)
	}
	zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return fail(err)
	}
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, h))
	p := &Package{Path: out.Name(), Content: sc.total}
	for _, e := range sc.entries {
		if err := writeEntry(tw, e); err != nil {
			_ = zw.Close()
			return fail(err)
		}
		if e.mode.IsRegular() {
			p.Files++
		}
	}
	if err := tw.Close(); err != nil {
		_ = zw.Close()
		return fail(err)
	}
	if err := zw.Close(); err != nil {
		return fail(err)
	}
	fi, err := out.Stat()
	if err != nil {
		return fail(err)
	}
	if err := out.Close(); err != nil {
		return fail(err)
	}
	p.Size, p.Digest = fi.Size(), hex.EncodeToString(h.Sum(nil))
	return p, nil
}

// epoch is every entry's time: times differ between checkouts of the same
// tree, and would give it a different name on every machine.
var epoch = time.Unix(0, 0)

// writeEntry writes e's header and content. Only the name, the type, the
// exec bit, a link's target and the content go in: owners, times and
// other permission bits are the packing machine's, not the tree's.
func writeEntry(tw *tar.Writer, e entry) error {
	hdr := &tar.Header{Name: e.name, ModTime: epoch, Format: tar.FormatPAX}
	switch {
	case e.mode.IsDir():
		hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
	case e.mode&fs.ModeSymlink != 0:
		hdr.Typeflag, hdr.Mode, hdr.Linkname = tar.TypeSymlink, 0o777, e.target
	default:
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, e.size
		if e.mode&0o111 != 0 {
			hdr.Mode = 0o755
		}
	}
	if hdr.Typeflag != tar.TypeReg {
		return tw.WriteHeader(hdr)
	}
	f, err := os.Open(e.src)
	if err != nil {
		return err
	}
	defer f.Close()
	// The cap was checked and the header's size comes from the walk: a
	// file replaced or resized since then fails rather than be cut or
	// padded into a package that matches nothing on disk.
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Size() != e.size {
		return fmt.Errorf("%s changed while it was being packed", e.src)
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, e.size); err != nil {
		return fmt.Errorf("%s changed while it was being packed: %w", e.src, err)
	}
	return nil
}

// entry is one thing to pack.
type entry struct {
	name   string // slash path in the package; a directory's ends in '/'
	src    string // where it is on disk
	mode   fs.FileMode
	size   int64
	target string // a symbolic link's target, slash-separated
}

// scanner walks a spec's trees and measures them before anything is
// written.
type scanner struct {
	excludes []pattern
	max      int64
	total    int64
	entries  []entry
	largest  []entry // the 5 largest files so far, largest first
	// top says where each name at the package's root came from, so that
	// a clash can name both sides.
	top map[string]string
	// names holds every entry's name (directories without their '/'), and
	// links every symbolic link's target, to check where links lead.
	names map[string]bool
	links map[string]string
}

func scan(spec PackSpec) (*scanner, error) {
	sc := &scanner{max: spec.maxSize(), top: map[string]string{}, names: map[string]bool{".": true}, links: map[string]string{}}
	for _, p := range append(slices.Clone(DefaultExcludes), spec.Excludes...) {
		pat, err := parsePattern(p)
		if err != nil {
			return nil, err
		}
		if pat.glob != "" {
			sc.excludes = append(sc.excludes, pat)
		}
	}
	if spec.WorkingDir != "" {
		root, err := namedPath(spec.WorkingDir)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(root); err != nil {
			return nil, fmt.Errorf("pack: %w", err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("pack: working dir %s is not a directory", spec.WorkingDir)
		}
		if err := sc.walk(root, ""); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, f := range spec.Files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("pack: %w", err)
		}
		if seen[abs] {
			continue // named twice: it is the same file, once
		}
		seen[abs] = true
		root, err := namedPath(abs)
		if err != nil {
			return nil, err
		}
		base := filepath.Base(abs)
		if base == "." || base == ".." || base == string(filepath.Separator) || base == "" {
			return nil, fmt.Errorf("pack: file %s has no base name to place it under", f)
		}
		if sc.top[base] == root {
			continue // the working directory's own entry, already in
		}
		if err := sc.walk(root, filepath.ToSlash(base)); err != nil {
			return nil, err
		}
	}
	if err := sc.checkLinks(); err != nil {
		return nil, err
	}
	// Slash paths with directories' trailing '/' sort a directory before
	// what it holds, and do not depend on how the disk lists them.
	slices.SortFunc(sc.entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	return sc, nil
}

// namedPath resolves a path the spec names: a link given explicitly is
// followed (the caller asked for what it points to), unlike links found
// inside a tree.
func namedPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("pack: %w", err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("pack: %w", err)
	}
	return real, nil
}

// walk adds the tree at root under the package name prefix ("" for the
// working directory, whose content is the root).
func (sc *scanner) walk(root, prefix string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("pack: %w", err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("pack: %w", err)
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		if name == "." {
			return nil // the working directory is the package's root
		}
		if rel != "." && sc.excluded(name, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.Contains(name, "/") {
			if other, ok := sc.top[name]; ok {
				return fmt.Errorf("pack: %s and %s would both be %q at the package's root", other, p, name)
			}
			sc.top[name] = p
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("pack: %w", err)
		}
		e := entry{name: name, src: p, mode: fi.Mode()}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			e.name += "/"
		case mode.IsRegular():
			e.size = fi.Size()
			sc.total += e.size
			sc.noteLargest(e)
			if sc.total > sc.max {
				return sc.tooLarge(root)
			}
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("pack: %w", err)
			}
			if filepath.IsAbs(target) || filepath.VolumeName(target) != "" || path.IsAbs(filepath.ToSlash(target)) {
				return fmt.Errorf("%w: %s is a symbolic link to the absolute path %s, which a node would not have; copy the file in, or exclude the link", ErrUnsupportedFile, p, target)
			}
			e.target = filepath.ToSlash(target)
			sc.links[name] = e.target
		default:
			return fmt.Errorf("%w: %s is a %s, which cannot be packed; leave it out with Excludes", ErrUnsupportedFile, p, kind(mode))
		}
		sc.names[name] = true
		sc.entries = append(sc.entries, e)
		return nil
	})
}

// checkLinks makes sure every link leads to something in the package,
// following links within the package as a node would: a link kept must
// work on any node, and never lead out of the unpacked directory.
func (sc *scanner) checkLinks() error {
	linkAt := func(p string) (string, bool) { t, ok := sc.links[p]; return t, ok }
	exists := func(p string) bool { return sc.names[p] }
	for _, name := range slices.Sorted(maps.Keys(sc.links)) {
		target := sc.links[name]
		if _, err := resolveLink(name, target, linkAt, exists); err != nil {
			i := slices.IndexFunc(sc.entries, func(e entry) bool { return e.name == name })
			return fmt.Errorf("%w: %s is a symbolic link to %s, which %v; copy the file in, or exclude the link", ErrUnsupportedFile, sc.entries[i].src, target, err)
		}
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file (" + m.Type().String() + ")"
}

func (sc *scanner) noteLargest(e entry) {
	i, _ := slices.BinarySearchFunc(sc.largest, e.size, func(a entry, size int64) int { return cmp.Compare(size, a.size) })
	if i < 5 {
		sc.largest = slices.Insert(sc.largest, i, e)
		sc.largest = sc.largest[:min(len(sc.largest), 5)]
	}
}

func (sc *scanner) tooLarge(root string) error {
	var largest []string
	for _, e := range sc.largest {
		largest = append(largest, fmt.Sprintf("%s (%s)", e.src, human(e.size)))
	}
	return fmt.Errorf("%w: %s holds more than the cap of %s (%d bytes): %d bytes counted so far; largest files: %s; leave what the job does not need out with Excludes, or raise MaxSize",
		ErrTooLarge, root, human(sc.max), sc.max, sc.total, strings.Join(largest, ", "))
}

// human writes n bytes the way a person reads sizes.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pattern is an exclude pattern, parsed.
type pattern struct {
	glob    string
	path    bool // matched against the whole path, not the base name
	dirOnly bool
}

func parsePattern(p string) (pattern, error) {
	var pat pattern
	if strings.HasSuffix(p, "/") {
		pat.dirOnly = true
		p = strings.TrimRight(p, "/")
	}
	if strings.Contains(p, "/") {
		pat.path = true
		p = strings.TrimLeft(p, "/")
	}
	// Matching "" finds a malformed pattern only where Match gets to it;
	// checking every prefix would not be worth it for patterns this
	// small, so match the pattern against itself too.
	for _, s := range []string{"", p} {
		if _, err := path.Match(p, s); err != nil {
			return pattern{}, fmt.Errorf("pack: exclude pattern %q: %w", p, err)
		}
	}
	pat.glob = p
	return pat, nil
}

// excluded says whether name (a slash path from the package's root) is
// left out.
func (sc *scanner) excluded(name string, isDir bool) bool {
	base := path.Base(name)
	for _, pat := range sc.excludes {
		if pat.dirOnly && !isDir {
			continue
		}
		subject := base
		if pat.path {
			subject = name
		}
		if ok, _ := path.Match(pat.glob, subject); ok {
			return true
		}
	}
	return false
}

// maxLinkHops bounds the links followed in resolving one, as the kernel
// does (ELOOP).
const maxLinkHops = 40

var (
	errEscapes  = errors.New("leads out of the package")
	errNotFound = errors.New("is not in the package")
	errLoop     = errors.New("goes through too many symbolic links")
)

// resolveLink resolves the link name -> target (slash paths in a package)
// the way the kernel would, following the package's links (linkAt), and
// returns the path it leads to. It fails with errEscapes if any step goes
// above the package's root: checking the target's text alone is not
// enough, as "a/../.." stays inside as text but not if a is itself a link
// to a deeper directory. If exists is not nil, every step must exist.
func resolveLink(name, target string, linkAt func(string) (string, bool), exists func(string) bool) (string, error) {
	var cur []string
	if dir := path.Dir(name); dir != "." {
		cur = strings.Split(dir, "/")
	}
	todo := strings.Split(target, "/")
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "", errEscapes
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, c)
		p := strings.Join(cur, "/")
		if t, ok := linkAt(p); ok {
			if hops++; hops > maxLinkHops {
				return "", errLoop
			}
			if t == "" || path.IsAbs(t) {
				return "", errEscapes
			}
			cur = cur[:len(cur)-1]
			todo = append(strings.Split(t, "/"), todo...)
			continue
		}
		if exists != nil && !exists(p) {
			return "", errNotFound
		}
	}
	if len(cur) == 0 {
		return ".", nil
	}
	return strings.Join(cur, "/"), nil
}
