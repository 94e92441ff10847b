package raylet

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/internal/shmtest"

	"github.com/rs/zerolog"

	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

func shmConfig(t *testing.T, dir string, store uint64, log zerolog.Logger) Config {
	return Config{
		Credentials:       testCreds,
		SessionDir:        t.TempDir(),
		Resources:         res(t, map[string]float64{CPU: 1}),
		ObjectStoreMemory: store,
		ShmDir:            dir,
		Logger:            log,
		ReportInterval:    time.Hour,
	}
}

// A node whose store does not fit its shm directory does not start, and
// says where, how much, and what to change.
func TestStartShmTooSmall(t *testing.T) {
	dir := shmtest.MountTmpfs(t, 8<<20)
	r, err := New(shmConfig(t, dir, 16<<20, zerolog.Nop()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	err = r.Start()
	if !errors.Is(err, objstore.ErrShmTooSmall) {
		t.Fatalf("Start with a 16 MiB store in an 8 MiB tmpfs: %v, want ErrShmTooSmall", err)
	}
	for _, want := range []string{dir, "16777216 bytes", "8388608 bytes (8.0 MiB) free", "--object-store-memory", "sdk.ObjectStoreMemory", "--shm-size", "sdk.ShmDir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if cerr := CheckShm(dir, 16<<20); !errors.Is(cerr, objstore.ErrShmTooSmall) || !strings.Contains(cerr.Error(), "--object-store-memory") {
		t.Errorf("CheckShm = %v, want Start's error", cerr)
	}
	if err := CheckShm(dir, 4<<20); err != nil {
		t.Errorf("CheckShm of a store that fits: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("the refused start left %v in %s", entries, dir)
	}
}

// When the directory fills up after the start, a worker's create fails
// with store_full naming the directory, instead of handing it a block
// whose first write would kill it with SIGBUS.
func TestCreateObjectBeyondShm(t *testing.T) {
	dir := shmtest.MountTmpfs(t, 16<<20)
	r, err := New(shmConfig(t, dir, 12<<20, zerolog.Nop()))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Shutdown)
	// Another tenant of the tmpfs leaves 2 MiB of it.
	if err := os.WriteFile(filepath.Join(dir, "other"), make([]byte, 14<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dialRaylet(t, r)
	ctx := t.Context()
	create := func(i uint32, size uint64) error {
		id := protos.ObjectIDFor(protos.TaskID{9}, i)
		return c.Call(ctx, protos.Method_CREATE_OBJECT, &protos.CreateObjectRequest{ObjectId: id.Bytes(), Size: size}, &protos.CreateObjectReply{})
	}
	err = create(1, 4<<20)
	var re *wire.RemoteError
	if !errors.As(err, &re) || re.Code != "store_full" || !strings.Contains(re.Message, dir) {
		t.Fatalf("create of 4 MiB with 2 MiB left in %s: %v, want store_full naming the directory", dir, err)
	}
	if err := create(2, 1<<20); err != nil {
		t.Fatalf("create of 1 MiB with 2 MiB left: %v", err)
	}
}

// logBuffer collects a logger's output; the raylet logs from several
// goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// deadPID is the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// A raylet starting removes (and logs) the segments of raylets that died
// without removing theirs, and keeps those of live ones; so does a
// running raylet when it hears that a node left.
func TestStaleSegmentsRemoved(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, objstore.SegmentName(deadPID(t), "0123abcd"))
	if err := os.WriteFile(stale, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	live, err := objstore.CreateSegment(filepath.Join(dir, objstore.SegmentName(os.Getpid(), "feedbeef")), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Remove()
	defer live.Close()

	var logs logBuffer
	r, err := New(shmConfig(t, dir, 16<<20, zerolog.New(&logs)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Shutdown)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale segment %s still there after a start (%v)", stale, err)
	}
	if !strings.Contains(logs.String(), stale) || !strings.Contains(logs.String(), "removed the shm segment") {
		t.Errorf("the removal was not logged:\n%s", logs.String())
	}
	for _, p := range []string{live.Path(), StorePath(dir, r.NodeID())} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("live segment %s: %v", p, err)
		}
	}

	again := filepath.Join(dir, objstore.SegmentName(deadPID(t), "0badf00d"))
	if err := os.WriteFile(again, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r.RemovePeer(protos.NewUniqueID())
	waitFor(t, "the segment of a dead raylet to go after a node left", func() bool {
		_, err := os.Stat(again)
		return os.IsNotExist(err)
	})
}
