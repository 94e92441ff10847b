// Package shmtest gives tests a real, small shared-memory directory: a
// tmpfs of a chosen size, which runs out of space as a container's small
// /dev/shm does (Docker's default is 64 MiB).
package shmtest

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// MountTmpfs mounts a tmpfs of size bytes on a fresh directory for the
// duration of the test and returns the directory. Mounting needs root; the
// test is skipped, saying so, without it.
func MountTmpfs(t testing.TB, size uint64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}
