package runtimeenv

import (
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
)

// HostPlatform returns this process's platform as GOOS/GOARCH, the form
// job binaries are matched against.
func HostPlatform() string { return runtime.GOOS + "/" + runtime.GOARCH }

// Platform returns the GOOS and GOARCH of the binary at path, read from
// its header, so that a job can ship builds for several platforms and
// each node picks its own without running any of them. A file that is not
// an executable of a platform Go builds for fails with ErrUnknownPlatform.
func Platform(path string) (goos, goarch string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("platform: %w", err)
	}
	defer f.Close()
	if ef, err := elf.NewFile(f); err == nil {
		arch := elfArch(ef.FileHeader)
		if arch == "" {
			return "", "", fmt.Errorf("%w: %s: ELF machine %v", ErrUnknownPlatform, path, ef.Machine)
		}
		return elfOS(ef.OSABI), arch, nil
	}
	if mf, err := macho.NewFile(f); err == nil {
		switch mf.Cpu {
		case macho.CpuAmd64:
			return "darwin", "amd64", nil
		case macho.CpuArm64:
			return "darwin", "arm64", nil
		}
		return "", "", fmt.Errorf("%w: %s: Mach-O CPU %v", ErrUnknownPlatform, path, mf.Cpu)
	}
	if pf, err := pe.NewFile(f); err == nil {
		switch pf.Machine {
		case pe.IMAGE_FILE_MACHINE_AMD64:
			return "windows", "amd64", nil
		case pe.IMAGE_FILE_MACHINE_ARM64:
			return "windows", "arm64", nil
		case pe.IMAGE_FILE_MACHINE_I386:
			return "windows", "386", nil
		case pe.IMAGE_FILE_MACHINE_ARMNT:
			return "windows", "arm", nil
		}
		return "", "", fmt.Errorf("%w: %s: PE machine %#x", ErrUnknownPlatform, path, pf.Machine)
	}
	return "", "", fmt.Errorf("%w: %s is not an ELF, Mach-O or PE executable", ErrUnknownPlatform, path)
}

// elfOS reads the OS from the ELF header's OSABI byte. Go's linker sets it
// for FreeBSD, NetBSD and OpenBSD only; every other ELF system (Linux,
// Android, DragonFly, illumos...) reads as linux. That is good enough:
// goray's nodes run Linux, and the others would need a note section read
// to tell apart.
func elfOS(abi elf.OSABI) string {
	switch abi {
	case elf.ELFOSABI_FREEBSD:
		return "freebsd"
	case elf.ELFOSABI_NETBSD:
		return "netbsd"
	case elf.ELFOSABI_OPENBSD:
		return "openbsd"
	}
	return "linux"
}

// elfArch maps an ELF header to a GOARCH, or "" for a machine Go does not
// build for.
func elfArch(h elf.FileHeader) string {
	little := h.ByteOrder == binary.LittleEndian
	is64 := h.Class == elf.ELFCLASS64
	byOrder := func(big, le string) string {
		if little {
			return le
		}
		return big
	}
	switch h.Machine {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_386:
		return "386"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_RISCV:
		if is64 {
			return "riscv64"
		}
	case elf.EM_PPC64:
		return byOrder("ppc64", "ppc64le")
	case elf.EM_S390:
		return "s390x"
	case elf.EM_LOONGARCH:
		return "loong64"
	case elf.EM_MIPS:
		if is64 {
			return byOrder("mips64", "mips64le")
		}
		return byOrder("mips", "mipsle")
	}
	return ""
}
