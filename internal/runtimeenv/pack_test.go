package runtimeenv

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// node is a file of a test tree: content, or a directory (dir), or a
// symbolic link (link), with exec for an executable file.
type node struct {
	content string
	dir     bool
	link    string
	exec    bool
}

func file(s string) node     { return node{content: s} }
func execFile(s string) node { return node{content: s, exec: true} }
func dirNode() node          { return node{dir: true} }
func link(t string) node     { return node{link: t} }

// writeTree creates the tree under root, parents first.
func writeTree(t testing.TB, root string, tree map[string]node) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(tree)) {
		n := tree[name]
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case n.dir:
			err = os.MkdirAll(p, 0o755)
		case n.link != "":
			err = os.Symlink(filepath.FromSlash(n.link), p)
		default:
			mode := os.FileMode(0o644)
			if n.exec {
				mode = 0o755
			}
			if err = os.WriteFile(p, []byte(n.content), mode); err == nil {
				err = os.Chmod(p, mode)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// tarStream returns the uncompressed tar stream of the archive at p.
func tarStream(t testing.TB, p string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// headers lists the headers of the archive at p, in order.
func headers(t testing.TB, p string) []*tar.Header {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(tarStream(t, p)))
	var out []*tar.Header
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
}

func names(t testing.TB, p string) []string {
	var out []string
	for _, h := range headers(t, p) {
		out = append(out, h.Name)
	}
	return out
}

func mustPack(t testing.TB, spec PackSpec) *Package {
	t.Helper()
	p, err := Pack(spec, t.TempDir())
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return p
}

var sample = map[string]node{
	"main.go":          file("package main\n"),
	"run.sh":           execFile("#!/bin/sh\necho hi\n"),
	"lib/a.go":         file("package lib // a\n"),
	"lib/b.go":         file("package lib // b\n"),
	"lib/sub/data.txt": file(strings.Repeat("data ", 1000)),
	"empty":            dirNode(),
	"a-b":              file("sorts before a/"),
	"lib0":             file("sorts after lib/"),
}

func TestPackContent(t *testing.T) {
	wd := t.TempDir()
	writeTree(t, wd, sample)
	p := mustPack(t, PackSpec{WorkingDir: wd})
	want := []string{"a-b", "empty/", "lib/", "lib/a.go", "lib/b.go", "lib/sub/", "lib/sub/data.txt", "lib0", "main.go", "run.sh"}
	if got := names(t, p.Path); !slices.Equal(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
	for _, h := range headers(t, p.Path) {
		wantMode := int64(0o644)
		if h.Typeflag == tar.TypeDir || h.Name == "run.sh" {
			wantMode = 0o755
		}
		if h.Mode != wantMode || h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mode %o mtime %v uid %d gid %d uname %q gname %q", h.Name, h.Mode, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
		}
	}
	var content int64
	for _, n := range sample {
		content += int64(len(n.content))
	}
	sum := sha256.Sum256(tarStream(t, p.Path))
	fi, err := os.Stat(p.Path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Digest != hex.EncodeToString(sum[:]) || p.Files != 7 || p.Content != content || p.Size != fi.Size() {
		t.Fatalf("package %+v; want digest %x, 7 files, %d content bytes, size %d", p, sum, content, fi.Size())
	}
	if err := p.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Remove: %v", err)
	}
}

func TestPackDeterministic(t *testing.T) {
	// A name too long for ustar takes a PAX header, which must be as
	// fixed as the rest.
	tree := maps.Clone(sample)
	tree["lib/"+strings.Repeat("long", 40)+".go"] = file("package lib")
	wd := t.TempDir()
	writeTree(t, wd, tree)
	digest := mustPack(t, PackSpec{WorkingDir: wd}).Digest
	if again := mustPack(t, PackSpec{WorkingDir: wd}).Digest; again != digest {
		t.Fatalf("packed twice: %s, then %s", digest, again)
	}

	// Times, and where the tree is, are not its content.
	old := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	err := filepath.Walk(wd, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustPack(t, PackSpec{WorkingDir: wd}).Digest; got != digest {
		t.Fatalf("after touching mtimes: %s, want %s", got, digest)
	}
	other := filepath.Join(t.TempDir(), "elsewhere")
	writeTree(t, other, tree)
	if got := mustPack(t, PackSpec{WorkingDir: other}).Digest; got != digest {
		t.Fatalf("same tree elsewhere: %s, want %s", got, digest)
	}
	// Permission bits other than exec are not content either.
	if err := os.Chmod(filepath.Join(wd, "main.go"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := mustPack(t, PackSpec{WorkingDir: wd}).Digest; got != digest {
		t.Fatalf("after chmod 600: %s, want %s", got, digest)
	}

	changes := map[string]func(){
		"one byte": func() {
			writeTree(t, wd, map[string]node{"lib/a.go": file("package lib // A\n")})
		},
		"exec bit": func() {
			if err := os.Chmod(filepath.Join(wd, "main.go"), 0o755); err != nil {
				t.Fatal(err)
			}
		},
		"empty dir": func() {
			if err := os.Mkdir(filepath.Join(wd, "empty2"), 0o755); err != nil {
				t.Fatal(err)
			}
		},
	}
	for _, what := range []string{"one byte", "exec bit", "empty dir"} {
		changes[what]()
		got := mustPack(t, PackSpec{WorkingDir: wd}).Digest
		if got == digest {
			t.Fatalf("after changing %s: digest unchanged", what)
		}
		digest = got
	}
}

func TestPackExcludes(t *testing.T) {
	tree := map[string]node{
		".git/HEAD":           file("ref"),
		"sub/.git/HEAD":       file("ref"),
		".gitignore":          file("x"),
		"app.log":             file("log"),
		"sub/deep/trace.log":  file("log"),
		"build/out/bin":       file("bin"),
		"build/keep":          file("keep"),
		"top.txt":             file("root"),
		"sub/top.txt":         file("nested"),
		"cache/x":             file("x"),
		"sub/cache":           file("a file named cache"),
		"a.tmp":               file("a"),
		"c.tmp":               file("c"),
		"src/main.go":         file("package main"),
		"src/gen/main_gen.go": file("package main"),
	}
	cases := []struct {
		name     string
		excludes []string
		gone     []string
		kept     []string
	}{
		{"default .git", nil, []string{".git/", ".git/HEAD", "sub/.git/"}, []string{".gitignore", "app.log", "src/main.go"}},
		{"base name glob", []string{"*.log"}, []string{"app.log", "sub/deep/trace.log"}, []string{"sub/deep/", "top.txt"}},
		{"char class", []string{"[ab].tmp"}, []string{"a.tmp"}, []string{"c.tmp"}},
		{"path", []string{"build/out"}, []string{"build/out/", "build/out/bin"}, []string{"build/", "build/keep"}},
		{"path glob", []string{"src/*/*_gen.go"}, []string{"src/gen/main_gen.go"}, []string{"src/gen/", "src/main.go"}},
		{"anchored", []string{"/top.txt"}, []string{"top.txt"}, []string{"sub/top.txt"}},
		{"base name matches at any depth", []string{"top.txt"}, []string{"top.txt", "sub/top.txt"}, nil},
		{"dir only", []string{"cache/"}, []string{"cache/", "cache/x"}, []string{"sub/cache"}},
		{"dir only path", []string{"/build/"}, []string{"build/", "build/keep"}, []string{"top.txt"}},
	}
	wd := t.TempDir()
	writeTree(t, wd, tree)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := names(t, mustPack(t, PackSpec{WorkingDir: wd, Excludes: c.excludes}).Path)
			for _, n := range c.gone {
				if slices.Contains(got, n) {
					t.Errorf("%s is in the package: %q", n, got)
				}
			}
			for _, n := range c.kept {
				if !slices.Contains(got, n) {
					t.Errorf("%s is not in the package: %q", n, got)
				}
			}
		})
	}
	if _, err := Pack(PackSpec{WorkingDir: wd, Excludes: []string{"[a"}}, t.TempDir()); err == nil || !strings.Contains(err.Error(), `"[a"`) {
		t.Fatalf("malformed pattern: %v", err)
	}
}

func TestPackFiles(t *testing.T) {
	wd := t.TempDir()
	writeTree(t, wd, map[string]node{"main.go": file("package main"), "conf": file("wd conf")})
	extra := t.TempDir()
	writeTree(t, extra, map[string]node{
		"model.bin":      file("weights"),
		"assets/a.png":   file("png"),
		"assets/.git/x":  file("excluded inside a named dir"),
		"other/conf":     file("other conf"),
		"other/main.go":  file("clash"),
		"twin/model.bin": file("same base"),
		".git/config":    file("named explicitly"),
	})
	p := mustPack(t, PackSpec{WorkingDir: wd, Files: []string{
		filepath.Join(extra, "model.bin"),
		filepath.Join(extra, "assets"),
		filepath.Join(extra, "model.bin"), // twice is once
		filepath.Join(wd, "main.go"),      // already in, at the same place
		filepath.Join(extra, ".git"),      // excluded only when found, not when named
	}})
	want := []string{".git/", ".git/config", "assets/", "assets/a.png", "conf", "main.go", "model.bin"}
	if got := names(t, p.Path); !slices.Equal(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}

	// Files alone, without a working dir.
	p = mustPack(t, PackSpec{Files: []string{filepath.Join(extra, "other")}})
	if got, want := names(t, p.Path), []string{"other/", "other/conf", "other/main.go"}; !slices.Equal(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}

	clashes := []struct {
		name  string
		spec  PackSpec
		paths []string
	}{
		{"with the working dir", PackSpec{WorkingDir: wd, Files: []string{filepath.Join(extra, "other", "conf")}},
			[]string{filepath.Join(wd, "conf"), filepath.Join(extra, "other", "conf")}},
		{"two files", PackSpec{Files: []string{filepath.Join(extra, "model.bin"), filepath.Join(extra, "twin", "model.bin")}},
			[]string{filepath.Join(extra, "model.bin"), filepath.Join(extra, "twin", "model.bin")}},
	}
	for _, c := range clashes {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			_, err := Pack(c.spec, tmp)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, p := range c.paths {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error does not name %s: %v", p, err)
				}
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("left %v in tmpDir", left)
			}
		})
	}
}

func TestPackSizeCap(t *testing.T) {
	wd := t.TempDir()
	tree := map[string]node{}
	for i, size := range []int{100, 700, 300, 600, 200, 500, 400} {
		tree[string(rune('a'+i))+".bin"] = file(strings.Repeat("x", size))
	}
	writeTree(t, wd, tree)
	tmp := t.TempDir()
	_, err := Pack(PackSpec{WorkingDir: wd, MaxSize: 2000}, tmp)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	// Files walk in name order: a..f are 2400 bytes, past 2000 at f.
	t.Log(err)
	msg := err.Error()
	for _, want := range []string{wd, "2000 bytes", "2400 bytes counted", "b.bin (700 B)", "d.bin (600 B)", "f.bin", "c.bin", "e.bin", "Excludes"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q: %s", want, msg)
		}
	}
	for _, not := range []string{"a.bin", "g.bin"} {
		if strings.Contains(msg, not) {
			t.Errorf("error lists %s, which is not among the 5 largest seen: %s", not, msg)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left %v in tmpDir", left)
	}
	if p, err := Pack(PackSpec{WorkingDir: wd, MaxSize: 2800}, tmp); err != nil || p.Content != 2800 {
		t.Fatalf("at the cap: %v, %v", p, err)
	}
}

func TestPackSymlinks(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]node{"secret": file("s")})
	cases := []struct {
		name string
		tree map[string]node
		ok   bool
		bad  string // the link an error must name
		spec func(wd string) PackSpec
	}{
		{name: "to a file", ok: true, tree: map[string]node{"f": file("x"), "d/l": link("../f")}},
		{name: "to a dir, not followed", ok: true, tree: map[string]node{"d/f": file("x"), "l": link("d")}},
		{name: "through a link", ok: true, tree: map[string]node{"d/e/f": file("x"), "d/l": link("e"), "m": link("d/l/f")}},
		{name: "absolute", bad: "l", tree: map[string]node{"l": link(filepath.Join(outside, "secret"))}},
		{name: "escaping", bad: "d/l", tree: map[string]node{"d/l": link("../../secret")}},
		{name: "dangling", bad: "l", tree: map[string]node{"l": link("nowhere")}},
		{name: "to an excluded file", bad: "l", tree: map[string]node{"x.log": file("x"), "l": link("x.log")},
			spec: func(wd string) PackSpec { return PackSpec{WorkingDir: wd, Excludes: []string{"*.log"}} }},
		{name: "escaping through a link", bad: "d1/d2/s", tree: map[string]node{
			"x/f": file("x"), "d1/d2/a": link("../../x"), "d1/d2/s": link("a/../../.."),
		}},
		{name: "loop", bad: "a", tree: map[string]node{"a": link("b"), "b": link("a")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wd := t.TempDir()
			writeTree(t, wd, c.tree)
			spec := PackSpec{WorkingDir: wd}
			if c.spec != nil {
				spec = c.spec(wd)
			}
			p, err := Pack(spec, t.TempDir())
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				for _, h := range headers(t, p.Path) {
					n, isLink := c.tree[h.Name]
					if isLink && n.link != "" && (h.Typeflag != tar.TypeSymlink || h.Linkname != n.link) {
						t.Errorf("%s: type %c -> %q, want a link to %q", h.Name, h.Typeflag, h.Linkname, n.link)
					}
					if strings.HasPrefix(h.Name, "l/") {
						t.Errorf("%s: a link was followed", h.Name)
					}
				}
				return
			}
			if !errors.Is(err, ErrUnsupportedFile) || !strings.Contains(err.Error(), filepath.Join(wd, c.bad)) {
				t.Fatalf("err = %v, want ErrUnsupportedFile naming %s", err, c.bad)
			}
			t.Log(err)
		})
	}

	// Links named in the spec are followed: the caller asked for them.
	wd := t.TempDir()
	writeTree(t, wd, map[string]node{"real/main.go": file("package main"), "wd": link("real"), "f": link("real/main.go")})
	p := mustPack(t, PackSpec{WorkingDir: filepath.Join(wd, "wd"), Files: []string{filepath.Join(wd, "f")}})
	if got, want := names(t, p.Path), []string{"f", "main.go"}; !slices.Equal(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
}

func TestPackUnsupportedFile(t *testing.T) {
	wd := t.TempDir()
	writeTree(t, wd, map[string]node{"main.go": file("package main")})
	fifo := filepath.Join(wd, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Pack(PackSpec{WorkingDir: wd}, t.TempDir())
	if !errors.Is(err, ErrUnsupportedFile) || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "Excludes") {
		t.Fatalf("fifo: err = %v, want ErrUnsupportedFile naming %s and Excludes", err, fifo)
	}
	t.Log(err)
	if _, err := Pack(PackSpec{WorkingDir: wd, Excludes: []string{"pipe"}}, t.TempDir()); err != nil {
		t.Fatalf("fifo excluded: %v", err)
	}

	sockDir, err := os.MkdirTemp("", "sock") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("unix socket: %v", err)
	}
	defer l.Close()
	_, err = Pack(PackSpec{WorkingDir: sockDir}, t.TempDir())
	if !errors.Is(err, ErrUnsupportedFile) || !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "socket") {
		t.Fatalf("socket: err = %v, want ErrUnsupportedFile naming %s", err, sock)
	}
}

func TestPackErrors(t *testing.T) {
	wd := t.TempDir()
	writeTree(t, wd, map[string]node{"f": file("x")})
	for name, spec := range map[string]PackSpec{
		"missing working dir": {WorkingDir: filepath.Join(wd, "missing")},
		"working dir a file":  {WorkingDir: filepath.Join(wd, "f")},
		"missing file":        {Files: []string{filepath.Join(wd, "missing")}},
		"root as a file":      {Files: []string{"/"}},
	} {
		if _, err := Pack(spec, t.TempDir()); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Nothing at all is an empty package, not an error.
	p := mustPack(t, PackSpec{})
	if p.Files != 0 || len(names(t, p.Path)) != 0 {
		t.Fatalf("empty spec: %+v", p)
	}
}

func TestPackSpecKey(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	key := func(s PackSpec) string {
		k, err := s.Key()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	base := key(PackSpec{WorkingDir: ".", Files: []string{"x"}})
	if k := key(PackSpec{WorkingDir: wd, Files: []string{filepath.Join(wd, "x")}, MaxSize: DefaultMaxSize}); k != base {
		t.Fatalf("same spec, absolute and with the default cap: %q != %q", k, base)
	}
	for name, s := range map[string]PackSpec{
		"other dir":      {WorkingDir: "..", Files: []string{"x"}},
		"other files":    {WorkingDir: ".", Files: []string{"y"}},
		"no files":       {WorkingDir: "."},
		"other excludes": {WorkingDir: ".", Files: []string{"x"}, Excludes: []string{"*.log"}},
		"other cap":      {WorkingDir: ".", Files: []string{"x"}, MaxSize: 1},
	} {
		if key(s) == base {
			t.Errorf("%s: same key %q", name, base)
		}
	}
}

func TestHuman(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 512 << 20: "512.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := human(n); got != want {
			t.Errorf("human(%d) = %q, want %q", n, got, want)
		}
	}
}
