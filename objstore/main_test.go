package objstore

import (
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/goray/goray/protos"
)

// childEnv switches the test binary into the child half of
// TestCrossProcess. Its value is "path,readOff,readSize,writeOff,writeSize".
const childEnv = "GORAY_OBJSTORE_TEST_CHILD"

// holderEnv switches the test binary into a process that creates a
// segment in the directory named by its value, as a raylet does, says
// "ready" on stdout and holds the segment until stdin closes or it is
// killed.
const holderEnv = "GORAY_OBJSTORE_TEST_HOLDER"

func TestMain(m *testing.M) {
	if dir, ok := os.LookupEnv(holderEnv); ok {
		seg, err := CreateSegment(filepath.Join(dir, SegmentName(os.Getpid(), holderNode)), 1<<20)
		if err != nil {
			fmt.Fprintln(os.Stderr, "holder:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = seg.Close()
		_ = seg.Remove()
		os.Exit(0)
	}
	if arg, ok := os.LookupEnv(childEnv); ok {
		if err := runChild(arg); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	// Every test cleans up after itself; a leftover file is a bug in the
	// package (a Remove that did not happen) or in a test.
	if left, _ := filepath.Glob(segmentPrefix() + "*"); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "segment files left behind:", left)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func segmentPrefix() string {
	return fmt.Sprintf("/dev/shm/goray-objstore-test-%d-", os.Getpid())
}

// segmentPath is unique per process and test so parallel test binaries and
// parallel tests never collide.
func segmentPath(tb testing.TB) string {
	h := fnv.New64a()
	h.Write([]byte(tb.Name()))
	return fmt.Sprintf("%s%016x", segmentPrefix(), h.Sum64())
}

// newSegment creates a segment that is unmapped and unlinked when the test
// ends, and checks that the file is really gone.
func newSegment(tb testing.TB, capacity uint64) *Segment {
	tb.Helper()
	path := segmentPath(tb)
	seg, err := CreateSegment(path, capacity)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := seg.Close(); err != nil {
			tb.Error(err)
		}
		if err := seg.Remove(); err != nil {
			tb.Error(err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			tb.Errorf("segment file %s still exists after Remove (stat: %v)", path, err)
		}
	})
	return seg
}

func newStore(tb testing.TB, capacity uint64) *Store {
	tb.Helper()
	return NewStore(newSegment(tb, capacity))
}

func oid(i uint32) protos.ObjectID {
	return protos.ObjectIDFor(protos.TaskID{1, 2, 3}, i)
}

// fill writes a pattern that depends on seed and position, so a misplaced
// or truncated copy does not go unnoticed.
func fill(b []byte, seed byte) {
	for i := range b {
		b[i] = byte(i*7) ^ byte(i>>9) ^ seed
	}
}

func checkFill(b []byte, seed byte) error {
	for i := range b {
		if want := byte(i*7) ^ byte(i>>9) ^ seed; b[i] != want {
			return fmt.Errorf("byte %d = %#x, want %#x", i, b[i], want)
		}
	}
	return nil
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	fill(b, seed)
	return b
}

const (
	parentSeed = 0x5a
	childSeed  = 0xc3
)

// runChild maps the parent's segment, verifies the object the parent wrote
// and writes another one into a block the parent reserved.
func runChild(arg string) error {
	f := strings.Split(arg, ",")
	if len(f) != 5 {
		return fmt.Errorf("bad %s=%q", childEnv, arg)
	}
	var n [4]uint64
	for i := range n {
		v, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return err
		}
		n[i] = v
	}
	seg, err := OpenSegment(f[0])
	if err != nil {
		return err
	}
	defer seg.Close()
	in, err := seg.CheckedSlice(n[0], n[1])
	if err != nil {
		return err
	}
	if err := checkFill(in, parentSeed); err != nil {
		return fmt.Errorf("parent's object: %w", err)
	}
	out, err := seg.CheckedSlice(n[2], n[3])
	if err != nil {
		return err
	}
	fill(out, childSeed)
	return nil
}
