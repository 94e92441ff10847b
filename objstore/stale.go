package objstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SegmentName is the file name of a node's segment: goray-<pid>-<node>,
// where pid is the process that creates it and node the node's short id
// (8 hex digits). RemoveStaleSegments removes only files named so.
func SegmentName(pid int, node string) string {
	return fmt.Sprintf("goray-%d-%s", pid, node)
}

var segmentName = regexp.MustCompile(`^goray-([1-9][0-9]{0,9})-[0-9a-f]{8}$`)

// StaleSegment is a segment file RemoveStaleSegments removed.
type StaleSegment struct {
	Path string
	PID  int // the creator, from the name
	// Reason says how the creator was found gone: "process gone",
	// "process is a zombie" or "pid reused" (the process with that pid
	// started after the file was created).
	Reason string
	// Size is the segment's capacity; Allocated the bytes of memory its
	// pages held, which removing it gave back.
	Size, Allocated int64
}

// RemoveStaleSegments removes the segments in dir left by processes that
// died without removing them (killed with SIGKILL, say), which would
// otherwise hold their tmpfs memory until the machine reboots. It returns
// what it removed; errors reading dir are returned, a file it cannot judge
// is left alone.
//
// A segment is removed only if all of these hold, so that a live store's
// segment is never taken even when its pid has been reused or the creator
// runs in another pid namespace:
//   - its name is SegmentName's, and it is a regular file of this user;
//   - no process holds its flock: the creator holds it from creation to
//     Close, and the kernel drops it when the creator dies however it
//     dies;
//   - the pid in its name is not a live process that could have created
//     it: there is no such process, it is a zombie, or it started after
//     the file's last status change (a reused pid). This covers the
//     moment between the creator's open and its flock.
func RemoveStaleSegments(dir string) ([]StaleSegment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("objstore: remove stale segments: %w", err)
	}
	var removed []StaleSegment
	for _, e := range entries {
		m := segmentName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		if st, ok := removeIfStale(filepath.Join(dir, e.Name()), pid); ok {
			removed = append(removed, st)
		}
	}
	return removed, nil
}

func removeIfStale(path string, pid int) (StaleSegment, bool) {
	// O_NOFOLLOW and O_NONBLOCK: a symlink or a FIFO someone put there
	// must not be followed nor block the node's start.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return StaleSegment{}, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		return StaleSegment{}, false
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return StaleSegment{}, false // held: its creator is alive
	}
	reason, gone := creatorGone(pid, time.Unix(st.Ctim.Unix()))
	if !gone {
		return StaleSegment{}, false
	}
	// The name must still be the file judged: unlink goes by name.
	var now unix.Stat_t
	if unix.Lstat(path, &now) != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		return StaleSegment{}, false
	}
	if unix.Unlink(path) != nil {
		return StaleSegment{}, false
	}
	return StaleSegment{Path: path, PID: pid, Reason: reason, Size: st.Size, Allocated: st.Blocks * 512}, true
}

// pidReuseSlack absorbs the imprecision of comparing a process's start,
// counted in clock ticks since boot, with a file's wall-clock ctime: a pid
// reused within it keeps its segment until a later sweep.
const pidReuseSlack = time.Second

// creatorGone tells whether the process that created a segment at or
// before created is certainly gone, and why.
func creatorGone(pid int, created time.Time) (reason string, gone bool) {
	state, start, ok := procStart(pid)
	if !ok {
		// No /proc entry, or one we cannot read (hidepid): ask the
		// kernel whether the pid exists at all.
		if errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
			return "process gone", true
		}
		return "", false
	}
	switch {
	case state == "Z" || state == "X":
		return "process is a zombie", true
	case !start.IsZero() && start.After(created.Add(pidReuseSlack)):
		return "pid reused", true
	}
	return "", false
}

// procStart reads a process's state and its start as wall-clock time (zero
// if it cannot be worked out) from /proc/PID/stat.
func procStart(pid int) (state string, start time.Time, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", time.Time{}, false
	}
	// "pid (comm) state ...": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", time.Time{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", time.Time{}, false
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64) // field 22: starttime
	if err != nil {
		return f[0], time.Time{}, true
	}
	// starttime counts clock ticks of the boot-time clock, which goes on
	// through suspend; the wall clock now minus the time elapsed since
	// is the start.
	var boot unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot) != nil {
		return f[0], time.Time{}, true
	}
	sinceBoot := time.Duration(ticks) * time.Second / time.Duration(clockTicks())
	return f[0], time.Now().Add(sinceBoot - time.Duration(boot.Nano())), true
}

// clockTicks is the kernel's USER_HZ, the unit of /proc's process times,
// from the auxiliary vector (AT_CLKTCK); 100, its value on every common
// architecture, if that cannot be read.
func clockTicks() uint64 {
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	word := func(b []byte) uint64 {
		if unsafe.Sizeof(uintptr(0)) == 4 {
			return uint64(binary.NativeEndian.Uint32(b))
		}
		return binary.NativeEndian.Uint64(b)
	}
	// Pairs of words: type, value.
	n := 2 * int(unsafe.Sizeof(uintptr(0)))
	for ; len(b) >= n; b = b[n:] {
		if word(b) == atClkTck {
			if v := word(b[n/2:]); v > 0 {
				return v
			}
		}
	}
	return 100
}
