package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goray/goray/sdk"
)

// smallShm mounts a tmpfs of size bytes for the test, a stand-in for the
// small /dev/shm of a container (Docker's default is 64 MiB).
func smallShm(t *testing.T, size uint64) string {
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

func shmFree(t *testing.T, dir string) uint64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize)
}

// TestSmallShm: a store larger than its shm directory is refused at Init
// with a message saying how to fix it, and a directory that fills up while
// the cluster runs makes puts and task results fail with
// ErrObjectStoreFull, where they used to kill the worker, and then the
// driver holding the raylet and GCS, with SIGBUS.
func TestSmallShm(t *testing.T) {
	shm := smallShm(t, 32<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	err := sdk.Init(ctx, sdk.SessionDir(t.TempDir()), sdk.ShmDir(shm), sdk.ObjectStoreMemory(64<<20))
	if err == nil {
		sdk.Shutdown()
		t.Fatal("Init with a 64 MiB store in a 32 MiB shm directory succeeded")
	}
	for _, want := range []string{shm, "67108864 bytes", "--object-store-memory", "sdk.ObjectStoreMemory", "sdk.ShmDir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Init's error %q does not say %q", err, want)
		}
	}
	if entries, _ := os.ReadDir(shm); len(entries) > 0 {
		t.Errorf("the refused Init left %v in %s", entries, shm)
	}
	if _, err := sdk.ClusterStatus(ctx); !errors.Is(err, sdk.ErrNotInitialized) {
		t.Fatalf("ClusterStatus after the refusal: %v; want ErrNotInitialized", err)
	}

	session := t.TempDir()
	if err := sdk.Init(ctx, sdk.SessionDir(session), sdk.ShmDir(shm), sdk.ObjectStoreMemory(24<<20)); err != nil {
		t.Fatalf("Init with a 24 MiB store in a 32 MiB shm directory: %v", err)
	}
	t.Cleanup(func() {
		sdk.Shutdown()
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if segs, _ := filepath.Glob(filepath.Join(shm, "goray-*")); len(segs) > 0 {
				return errorf("segments left behind: %v", segs)
			}
			if pids := workerPIDs(session); len(pids) > 0 {
				return errorf("worker processes left behind: %v", pids)
			}
			return nil
		})
	})
	segs, _ := filepath.Glob(filepath.Join(shm, fmt.Sprintf("goray-%d-*", os.Getpid())))
	if len(segs) != 1 {
		t.Fatalf("segments in %s: %v, want the node's one", shm, segs)
	}
	if b, err := MakeBytes.Remote(ctx, 1<<20, 1).Get(ctx); err != nil || len(b) != 1<<20 {
		t.Fatalf("a 1 MiB result before the directory filled up: %d bytes, %v", len(b), err)
	}

	// Another tenant of the directory leaves 2 MiB of it.
	filler := filepath.Join(shm, "other-tenant")
	if err := os.WriteFile(filler, make([]byte, shmFree(t, shm)-2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = MakeBytes.Remote(ctx, 8<<20, 2).Get(ctx)
	if !errors.Is(err, sdk.ErrObjectStoreFull) || !strings.Contains(err.Error(), shm) {
		t.Fatalf("an 8 MiB result with 2 MiB left in the directory: %v; want ErrObjectStoreFull naming %s", err, shm)
	}
	_, err = sdk.Put(ctx, make([]byte, 8<<20))
	if !errors.Is(err, sdk.ErrObjectStoreFull) || !strings.Contains(err.Error(), shm) {
		t.Fatalf("an 8 MiB put with 2 MiB left in the directory: %v; want ErrObjectStoreFull naming %s", err, shm)
	}
	// Nobody died: the driver's cluster and its workers go on.
	if v, err := Add.Remote(ctx, 1, 2).Get(ctx); err != nil || v != 3 {
		t.Fatalf("a task after the failures: %v, %v", v, err)
	}

	// With the space back, the same result fits.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	ref := MakeBytes.Remote(ctx, 8<<20, 2)
	if n, err := SumBytes.RemoteArgs(ctx, ref).Get(ctx); err != nil || n == 0 {
		t.Fatalf("an 8 MiB result once the directory had room again: %v, %v", n, err)
	}
}
