package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goray/goray/sdk"
)

// The head daemon records itself in two files next to each other:
// sdk.CurrentClusterFile() holds its address (what sdk.Address("auto")
// reads), and the pid file its process id and start time, so that `goray
// stop` can wait for it and never mistakes a recycled pid for it.

func addressFile() string { return sdk.CurrentClusterFile() }

func pidFile() string { return sdk.CurrentClusterFile() + ".pid" }

// daemonRecord is what the two files say about the running head.
type daemonRecord struct {
	Address string
	PID     int
	// Start is the process start time in clock ticks since boot
	// (/proc/PID/stat field 22); 0 if unknown.
	Start uint64
}

// readRecord reads the files. ok is false when there is no address file;
// a missing or malformed pid file leaves PID 0.
func readRecord() (rec daemonRecord, ok bool, err error) {
	b, err := os.ReadFile(addressFile())
	if errors.Is(err, os.ErrNotExist) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	rec.Address = strings.TrimSpace(string(b))
	if b, err := os.ReadFile(pidFile()); err == nil {
		lines := strings.Fields(string(b))
		if len(lines) > 0 {
			rec.PID, _ = strconv.Atoi(lines[0])
		}
		if len(lines) > 1 {
			rec.Start, _ = strconv.ParseUint(lines[1], 10, 64)
		}
	}
	return rec, true, nil
}

// alive reports whether the recorded head process still runs.
func (r daemonRecord) alive() bool {
	if r.PID <= 0 {
		return false
	}
	st, ok := procStat(r.PID)
	if !ok || st.state == "Z" || st.state == "X" {
		return false
	}
	if r.Start != 0 && st.start != r.Start {
		return false // the pid now belongs to another process
	}
	err := syscall.Kill(r.PID, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// writeRecord records this process as the head at addr: the pid file
// first, then the address, each written whole (temp file and rename).
func writeRecord(addr string) error {
	if err := os.MkdirAll(filepath.Dir(addressFile()), 0o755); err != nil {
		return err
	}
	pid := os.Getpid()
	var start uint64
	if st, ok := procStat(pid); ok {
		start = st.start
	}
	if err := writeFileAtomic(pidFile(), fmt.Sprintf("%d\n%d\n", pid, start)); err != nil {
		return err
	}
	return writeFileAtomic(addressFile(), addr+"\n")
}

// removeRecord deletes the files if they still describe rec (a newer head
// may have replaced them). It reports whether it removed anything.
func removeRecord(rec daemonRecord) bool {
	cur, ok, err := readRecord()
	if err != nil || !ok {
		return false
	}
	if cur.Address != rec.Address || (rec.PID != 0 && cur.PID != 0 && cur.PID != rec.PID) {
		return false
	}
	removed := os.Remove(addressFile()) == nil
	if cur.PID == 0 || rec.PID == 0 || cur.PID == rec.PID {
		if os.Remove(pidFile()) == nil {
			removed = true
		}
	}
	return removed
}

func writeFileAtomic(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

type procInfo struct {
	state string
	start uint64
}

// procStat reads a process's state and start time from /proc.
func procStat(pid int) (procInfo, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procInfo{}, false
	}
	// "pid (comm) state ...": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procInfo{}, false
	}
	start, _ := strconv.ParseUint(f[19], 10, 64) // field 22
	return procInfo{state: f[0], start: start}, true
}

// waitGone waits up to d for the recorded process to exit.
func waitGone(rec daemonRecord, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for rec.alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
