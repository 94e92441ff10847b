package runtimeenv

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// craftEntry is an entry of a hand-made archive.
type craftEntry struct {
	name     string
	typ      byte
	content  string
	linkname string
	size     int64 // header size if not len(content)
}

// craft builds an archive as Pack would store it (tar in zstd), but with
// whatever entries a hostile peer likes; trailing is written after the
// tar's end. It returns the archive and its digest.
func craft(t testing.TB, entries []craftEntry, trailing []byte) ([]byte, string) {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(e.content))
		if e.size != 0 {
			size = e.size
		}
		if typ != tar.TypeReg {
			size = 0
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: typ, Linkname: e.linkname, Size: size, Mode: 0o644, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.content); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw.Write(trailing)
	sum := sha256.Sum256(raw.Bytes())
	return compress(t, raw.Bytes()), hex.EncodeToString(sum[:])
}

// compress compresses a tar stream as Pack does.
func compress(t testing.TB, raw []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// assertEmpty fails unless dir holds nothing: a failed Unpack leaves
// neither its target nor its temporary directory.
func assertEmpty(t testing.TB, dir string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		t.Errorf("left behind: %s", filepath.Join(dir, de.Name()))
	}
}

func TestUnpackRoundTrip(t *testing.T) {
	wd := t.TempDir()
	tree := map[string]node{
		"main.go":         file("package main\n"),
		"run.sh":          execFile("#!/bin/sh\n"),
		"lib/a.go":        file("package lib\n"),
		"lib/sub/big.bin": file(strings.Repeat("0123456789", 100_000)),
		"empty":           dirNode(),
		"lib/link":        link("sub/big.bin"),
		"dirlink":         link("lib/sub"),
		"zero":            file(""),
	}
	writeTree(t, wd, tree)
	// Modes the package does not keep, to see they are not kept.
	if err := os.Chmod(filepath.Join(wd, "main.go"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(wd, "lib"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := mustPack(t, PackSpec{WorkingDir: wd})
	f, err := os.Open(p.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parent := t.TempDir()
	dir := filepath.Join(parent, p.Digest)
	d, err := Unpack(f, dir, p.Content, p.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if d != p.Digest {
		t.Fatalf("Unpack digest %s, Pack digest %s", d, p.Digest)
	}
	if des, _ := os.ReadDir(parent); len(des) != 1 {
		t.Fatalf("parent holds %v, want the package alone", des)
	}
	want := map[string]fs.FileMode{
		".": fs.ModeDir | 0o755, "empty": fs.ModeDir | 0o755, "lib": fs.ModeDir | 0o755, "lib/sub": fs.ModeDir | 0o755,
		"main.go": 0o644, "run.sh": 0o755, "lib/a.go": 0o644, "lib/sub/big.bin": 0o644, "zero": 0o644,
		"lib/link": fs.ModeSymlink, "dirlink": fs.ModeSymlink,
	}
	seen := 0
	err = filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		fi, err := de.Info()
		if err != nil {
			return err
		}
		wantMode, ok := want[rel]
		if !ok {
			t.Errorf("unexpected %s", rel)
			return nil
		}
		seen++
		got := fi.Mode()
		if got.Type() == fs.ModeSymlink {
			got = fs.ModeSymlink // a link's permission bits are the system's
			if target, _ := os.Readlink(path); target != filepath.FromSlash(tree[rel].link) {
				t.Errorf("%s -> %s, want -> %s", rel, target, tree[rel].link)
			}
		}
		if got != wantMode {
			t.Errorf("%s: mode %v, want %v", rel, got, wantMode)
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if string(b) != tree[rel].content {
				t.Errorf("%s: content differs (%d bytes, want %d)", rel, len(b), len(tree[rel].content))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(want) {
		t.Fatalf("saw %d entries, want %d", seen, len(want))
	}
	// The unpacked tree packs to the same package.
	if again := mustPack(t, PackSpec{WorkingDir: dir}); again.Digest != p.Digest {
		t.Fatalf("repacked: %s, want %s", again.Digest, p.Digest)
	}
	// A second unpack to the same place is refused, and leaves it be.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := Unpack(f, dir, 0, ""); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("unpacking onto an existing dir: %v", err)
	}
	if des, _ := os.ReadDir(parent); len(des) != 1 {
		t.Fatalf("parent holds %v after a refused unpack", des)
	}
}

func TestUnpackHostile(t *testing.T) {
	cases := []struct {
		name    string
		entries []craftEntry
		max     int64
		want    error
	}{
		{name: "dot dot", want: ErrUnsafePath, entries: []craftEntry{{name: "../x", content: "evil"}}},
		{name: "dot dot inside", want: ErrUnsafePath, entries: []craftEntry{{name: "a/", typ: tar.TypeDir}, {name: "a/../../x", content: "evil"}}},
		{name: "absolute", want: ErrUnsafePath, entries: []craftEntry{{name: "/etc/x", content: "evil"}}},
		{name: "empty name", want: ErrUnsafePath, entries: []craftEntry{{name: "", content: "evil"}}},
		{name: "link escaping, then a file through it", want: ErrUnsafePath, entries: []craftEntry{
			{name: "l", typ: tar.TypeSymlink, linkname: "../.."}, {name: "l/x", content: "evil"}}},
		{name: "absolute link", want: ErrUnsafePath, entries: []craftEntry{{name: "l", typ: tar.TypeSymlink, linkname: "/etc"}}},
		{name: "file through a link inside", want: ErrUnsafePath, entries: []craftEntry{
			{name: "d/", typ: tar.TypeDir}, {name: "l", typ: tar.TypeSymlink, linkname: "d"}, {name: "l/x", content: "x"}}},
		{name: "link escaping through a later link", want: ErrUnsafePath, entries: []craftEntry{
			{name: "d1/d2/s", typ: tar.TypeSymlink, linkname: "a/../../.."},
			{name: "d1/d2/a", typ: tar.TypeSymlink, linkname: "../../x"}}},
		{name: "file over a link", want: fs.ErrExist, entries: []craftEntry{
			{name: "l", typ: tar.TypeSymlink, linkname: "f"}, {name: "l", content: "evil"}}},
		{name: "hard link", want: ErrUnsupportedFile, entries: []craftEntry{{name: "f", content: "x"}, {name: "h", typ: tar.TypeLink, linkname: "f"}}},
		{name: "char device", want: ErrUnsupportedFile, entries: []craftEntry{{name: "null", typ: tar.TypeChar}}},
		{name: "block device", want: ErrUnsupportedFile, entries: []craftEntry{{name: "sda", typ: tar.TypeBlock}}},
		{name: "fifo", want: ErrUnsupportedFile, entries: []craftEntry{{name: "p", typ: tar.TypeFifo}}},
		{name: "file over the cap", max: 10, want: ErrTooLarge, entries: []craftEntry{{name: "f", content: strings.Repeat("x", 11)}}},
		{name: "files over the cap", max: 10, want: ErrTooLarge, entries: []craftEntry{
			{name: "f", content: strings.Repeat("x", 6)}, {name: "g", content: strings.Repeat("x", 6)}}},
		{name: "duplicate file", want: fs.ErrExist, entries: []craftEntry{{name: "f", content: "a"}, {name: "f", content: "b"}}},
		{name: "file under a file", want: ErrUnsafePath, entries: []craftEntry{{name: "f", content: "a"}, {name: "f/g", content: "b"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			parent := filepath.Join(root, "cache", "pkg")
			if err := os.MkdirAll(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			archive, _ := craft(t, c.entries, nil)
			_, err := Unpack(bytes.NewReader(archive), filepath.Join(parent, "p"), c.max, "")
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			t.Log(err)
			assertEmpty(t, parent)
			// Nothing was written above the target either.
			for _, p := range []string{filepath.Join(root, "x"), filepath.Join(root, "cache", "x")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
		})
	}
}

func TestUnpackLimits(t *testing.T) {
	t.Run("entries", func(t *testing.T) {
		defer func(n int) { maxEntries = n }(maxEntries)
		maxEntries = 3
		var entries []craftEntry
		for i := range 4 {
			entries = append(entries, craftEntry{name: fmt.Sprintf("d%d/", i), typ: tar.TypeDir})
		}
		parent := t.TempDir()
		archive, _ := craft(t, entries, nil)
		if _, err := Unpack(bytes.NewReader(archive), filepath.Join(parent, "p"), 0, ""); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("4 entries, at most 3: %v", err)
		}
		assertEmpty(t, parent)
		archive, _ = craft(t, entries[:3], nil)
		if _, err := Unpack(bytes.NewReader(archive), filepath.Join(parent, "p"), 0, ""); err != nil {
			t.Fatalf("3 entries, at most 3: %v", err)
		}
	})
	t.Run("headers", func(t *testing.T) {
		defer func(b, n int64) { metaBase, metaPerEntry = b, n }(metaBase, metaPerEntry)
		metaBase, metaPerEntry = 0, 2048
		parent := t.TempDir()
		archive, _ := craft(t, []craftEntry{{name: strings.Repeat("n", 4000), content: "x"}}, nil)
		if _, err := Unpack(bytes.NewReader(archive), filepath.Join(parent, "p"), 0, ""); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("a long name past the header budget: %v", err)
		}
		assertEmpty(t, parent)
	})
	t.Run("trailing", func(t *testing.T) {
		parent := t.TempDir()
		archive, _ := craft(t, []craftEntry{{name: "f", content: "x"}}, make([]byte, maxTrailing+1))
		if _, err := Unpack(bytes.NewReader(archive), filepath.Join(parent, "p"), 0, ""); err == nil {
			t.Fatal("no error for data after the end")
		}
		assertEmpty(t, parent)
		// A tar record's padding is fine, and part of the digest.
		archive, digest := craft(t, []craftEntry{{name: "f", content: "x"}}, make([]byte, 8192))
		if d, err := Unpack(bytes.NewReader(archive), filepath.Join(parent, "p"), 0, digest); err != nil || d != digest {
			t.Fatalf("padded archive: %s, %v; want %s", d, err, digest)
		}
	})
}

func TestUnpackDigestMismatch(t *testing.T) {
	archive, digest := craft(t, []craftEntry{{name: "d/", typ: tar.TypeDir}, {name: "d/f", content: "x"}}, nil)
	other := strings.Repeat("0", 64)
	parent := t.TempDir()
	_, err := Unpack(bytes.NewReader(archive), filepath.Join(parent, other), 0, other)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), digest) {
		t.Fatalf("err = %v, want ErrDigestMismatch naming %s", err, digest)
	}
	assertEmpty(t, parent)
	if d, err := Unpack(bytes.NewReader(archive), filepath.Join(parent, digest), 0, ""); err != nil || d != digest {
		t.Fatalf("without want: %s, %v; want %s", d, err, digest)
	}
}

func TestUnpackCorrupt(t *testing.T) {
	archive, _ := craft(t, []craftEntry{{name: "f", content: strings.Repeat("x", 10_000)}, {name: "g", content: "y"}}, nil)
	for name, input := range map[string][]byte{
		"truncated":    archive[:len(archive)/2],
		"not zstd":     []byte("PK\x03\x04 a zip, say"),
		"empty":        nil,
		"garbage tail": append(append([]byte{}, archive...), "garbage"...),
		"no end marker": func() []byte {
			var raw bytes.Buffer
			tw := tar.NewWriter(&raw)
			if err := tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 1}); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write([]byte{0}); err != nil {
				t.Fatal(err)
			}
			if err := tw.Flush(); err != nil { // no Close: no end marker
				t.Fatal(err)
			}
			return compress(t, raw.Bytes())
		}(),
		"half an end marker": compress(t, make([]byte, blockSize)),
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			if _, err := Unpack(bytes.NewReader(input), filepath.Join(parent, "p"), 0, ""); err == nil {
				t.Fatal("no error")
			}
			assertEmpty(t, parent)
		})
	}
}

func TestUnpackModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	wd := t.TempDir()
	writeTree(t, wd, map[string]node{"d/f": file("x"), "d/x": execFile("x")})
	p := mustPack(t, PackSpec{WorkingDir: wd})
	f, err := os.Open(p.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := filepath.Join(t.TempDir(), "p")
	if _, err := Unpack(f, dir, 0, p.Digest); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]fs.FileMode{".": fs.ModeDir | 0o755, "d": fs.ModeDir | 0o755, "d/f": 0o644, "d/x": 0o755} {
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: %v, want %v", rel, fi.Mode(), want)
		}
	}
}

// BenchmarkPackUnpack packs and unpacks a 40 MB tree of 40 files (half
// random bytes, half text, as code and data mixed).
func BenchmarkPackUnpack(b *testing.B) {
	wd := b.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	for i := range 40 {
		if i%2 == 0 {
			for j := range buf {
				buf[j] = byte(rng.Uint32())
			}
		} else {
			for j := range buf {
				buf[j] = "abcdefgh \n"[rng.IntN(10)]
			}
		}
		p := filepath.Join(wd, fmt.Sprintf("dir%d", i%4), fmt.Sprintf("file%02d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	tmp := b.TempDir()
	b.SetBytes(40 << 20)
	var size int64
	for i := 0; b.Loop(); i++ {
		p, err := Pack(PackSpec{WorkingDir: wd}, tmp)
		if err != nil {
			b.Fatal(err)
		}
		size = p.Size
		f, err := os.Open(p.Path)
		if err != nil {
			b.Fatal(err)
		}
		dir := filepath.Join(tmp, fmt.Sprintf("u%d", i))
		if _, err := Unpack(f, dir, 0, p.Digest); err != nil {
			b.Fatal(err)
		}
		f.Close()
		if err := p.Remove(); err != nil {
			b.Fatal(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/(40<<20), "ratio")
}
