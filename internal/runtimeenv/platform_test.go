package runtimeenv

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestPlatformOfTestBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	goos, goarch, err := Platform(exe)
	if err != nil {
		t.Fatal(err)
	}
	if got := goos + "/" + goarch; got != HostPlatform() || got != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("Platform(test binary) = %s, HostPlatform() = %s, runtime says %s/%s", got, HostPlatform(), runtime.GOOS, runtime.GOARCH)
	}
}

// patchedExecutable copies the test binary, which must be a
// little-endian ELF file, and lets patch change its bytes.
func patchedExecutable(t *testing.T, patch func(b []byte)) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(elf.ELFMAG)) || elf.Data(b[elf.EI_DATA]) != elf.ELFDATA2LSB {
		t.Skip("the test binary is not a little-endian ELF file")
	}
	patch(b)
	p := filepath.Join(t.TempDir(), "patched")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlatformPatchedELF(t *testing.T) {
	cases := []struct {
		name         string
		patch        func(b []byte)
		goos, goarch string
	}{
		{"arm64", func(b []byte) { binary.LittleEndian.PutUint16(b[18:], uint16(elf.EM_AARCH64)) }, "linux", "arm64"},
		{"riscv64", func(b []byte) { binary.LittleEndian.PutUint16(b[18:], uint16(elf.EM_RISCV)) }, "linux", "riscv64"},
		{"freebsd", func(b []byte) { b[elf.EI_OSABI] = byte(elf.ELFOSABI_FREEBSD) }, "freebsd", runtime.GOARCH},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := patchedExecutable(t, c.patch)
			goos, goarch, err := Platform(p)
			if err != nil {
				t.Fatal(err)
			}
			if goos != c.goos || goarch != c.goarch {
				t.Fatalf("Platform = %s/%s, want %s/%s", goos, goarch, c.goos, c.goarch)
			}
		})
	}
	t.Run("unknown machine", func(t *testing.T) {
		p := patchedExecutable(t, func(b []byte) { binary.LittleEndian.PutUint16(b[18:], uint16(elf.EM_SPARCV9)) })
		if _, _, err := Platform(p); !errors.Is(err, ErrUnknownPlatform) || !strings.Contains(err.Error(), p) {
			t.Fatalf("err = %v, want ErrUnknownPlatform naming %s", err, p)
		}
	})
}

func TestELFArch(t *testing.T) {
	le, be := binary.ByteOrder(binary.LittleEndian), binary.ByteOrder(binary.BigEndian)
	cases := []struct {
		machine elf.Machine
		class   elf.Class
		order   binary.ByteOrder
		want    string
	}{
		{elf.EM_X86_64, elf.ELFCLASS64, le, "amd64"},
		{elf.EM_AARCH64, elf.ELFCLASS64, le, "arm64"},
		{elf.EM_386, elf.ELFCLASS32, le, "386"},
		{elf.EM_ARM, elf.ELFCLASS32, le, "arm"},
		{elf.EM_RISCV, elf.ELFCLASS64, le, "riscv64"},
		{elf.EM_RISCV, elf.ELFCLASS32, le, ""},
		{elf.EM_PPC64, elf.ELFCLASS64, be, "ppc64"},
		{elf.EM_PPC64, elf.ELFCLASS64, le, "ppc64le"},
		{elf.EM_S390, elf.ELFCLASS64, be, "s390x"},
		{elf.EM_LOONGARCH, elf.ELFCLASS64, le, "loong64"},
		{elf.EM_MIPS, elf.ELFCLASS32, be, "mips"},
		{elf.EM_MIPS, elf.ELFCLASS32, le, "mipsle"},
		{elf.EM_MIPS, elf.ELFCLASS64, be, "mips64"},
		{elf.EM_MIPS, elf.ELFCLASS64, le, "mips64le"},
		{elf.EM_SPARCV9, elf.ELFCLASS64, be, ""},
	}
	for _, c := range cases {
		if got := elfArch(elf.FileHeader{Machine: c.machine, Class: c.class, ByteOrder: c.order}); got != c.want {
			t.Errorf("%v %v %v: %q, want %q", c.machine, c.class, c.order, got, c.want)
		}
	}
	for abi, want := range map[elf.OSABI]string{elf.ELFOSABI_NONE: "linux", elf.ELFOSABI_LINUX: "linux", elf.ELFOSABI_FREEBSD: "freebsd", elf.ELFOSABI_NETBSD: "netbsd", elf.ELFOSABI_OPENBSD: "openbsd"} {
		if got := elfOS(abi); got != want {
			t.Errorf("elfOS(%v) = %q, want %q", abi, got, want)
		}
	}
}

// TestPlatformMachOAndPE reads minimal headers: no load commands or
// sections, which is all Platform looks at.
func TestPlatformMachOAndPE(t *testing.T) {
	macho := func(cpu uint32) []byte {
		b := make([]byte, 32)
		binary.LittleEndian.PutUint32(b[0:], 0xfeedfacf) // MH_MAGIC_64
		binary.LittleEndian.PutUint32(b[4:], cpu)
		binary.LittleEndian.PutUint32(b[12:], 2) // MH_EXECUTE
		return b
	}
	pe := func(machine uint16) []byte {
		b := make([]byte, 0x80+24)
		copy(b, "MZ")
		binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
		copy(b[0x80:], "PE\x00\x00")
		binary.LittleEndian.PutUint16(b[0x84:], machine)
		return b
	}
	cases := []struct {
		name         string
		content      []byte
		goos, goarch string
	}{
		{"darwin arm64", macho(0x0100000c), "darwin", "arm64"},
		{"darwin amd64", macho(0x01000007), "darwin", "amd64"},
		{"windows amd64", pe(0x8664), "windows", "amd64"},
		{"windows arm64", pe(0xaa64), "windows", "arm64"},
		{"darwin ppc", macho(0x12), "", ""},
		{"windows mips", pe(0x166), "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bin")
			if err := os.WriteFile(p, c.content, 0o755); err != nil {
				t.Fatal(err)
			}
			goos, goarch, err := Platform(p)
			if c.goos == "" {
				if !errors.Is(err, ErrUnknownPlatform) {
					t.Fatalf("err = %v, want ErrUnknownPlatform", err)
				}
				return
			}
			if err != nil || goos != c.goos || goarch != c.goarch {
				t.Fatalf("Platform = %s/%s, %v; want %s/%s", goos, goarch, err, c.goos, c.goarch)
			}
		})
	}
}

func TestPlatformNotABinary(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho not a binary\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{text, filepath.Join(dir, "empty")} {
		if p != text {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, _, err := Platform(p)
		if !errors.Is(err, ErrUnknownPlatform) || !strings.Contains(err.Error(), p) {
			t.Errorf("Platform(%s): %v, want ErrUnknownPlatform naming the path", p, err)
		}
	}
	// A missing file is that, not an unknown platform.
	if _, _, err := Platform(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
