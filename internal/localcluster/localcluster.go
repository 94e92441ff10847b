// Package localcluster keeps the record of the goray head that runs on
// this machine: `goray start --head` writes it, and goray commands and
// sdk.Address("auto") read it to find the cluster and its token.
//
// The record is two files next to each other in $TMPDIR/goray: the address
// file holds the head's address, the pid file its process id, start time
// and session directory (where its token file is), so that `goray stop`
// can wait for it and never mistakes a recycled pid for it.
package localcluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goray/goray/internal/auth"
)

// Dir is where the record's files live.
func Dir() string { return filepath.Join(os.TempDir(), "goray") }

// AddressFile holds the running head's address.
func AddressFile() string { return filepath.Join(Dir(), "current_cluster") }

// PIDFile holds the running head's pid, start time and session directory.
func PIDFile() string { return AddressFile() + ".pid" }

// Record is what the files say about the running head.
type Record struct {
	Address string
	PID     int
	// Start is the process start time in clock ticks since boot
	// (/proc/PID/stat field 22); 0 if unknown.
	Start uint64
	// SessionDir is the head's session directory ("" if unknown).
	SessionDir string
}

// TokenFile is the head's token file, or "" if the record does not say
// where the head keeps its session.
func (r Record) TokenFile() string {
	if r.SessionDir == "" {
		return ""
	}
	return filepath.Join(r.SessionDir, auth.TokenFileName)
}

// Read reads the record. ok is false when there is no address file; a
// missing or malformed pid file leaves PID 0.
func Read() (rec Record, ok bool, err error) {
	b, err := os.ReadFile(AddressFile())
	if errors.Is(err, os.ErrNotExist) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	rec.Address = strings.TrimSpace(string(b))
	if b, err := os.ReadFile(PIDFile()); err == nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 0 {
			rec.PID, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
		}
		if len(lines) > 1 {
			rec.Start, _ = strconv.ParseUint(strings.TrimSpace(lines[1]), 10, 64)
		}
		if len(lines) > 2 {
			rec.SessionDir = strings.TrimSpace(lines[2])
		}
	}
	return rec, true, nil
}

// Alive reports whether the recorded head process still runs.
func (r Record) Alive() bool {
	if r.PID <= 0 {
		return false
	}
	st, ok := ProcStat(r.PID)
	if !ok || st.State == "Z" || st.State == "X" {
		return false
	}
	if r.Start != 0 && st.Start != r.Start {
		return false // the pid now belongs to another process
	}
	err := syscall.Kill(r.PID, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Write records this process as the head at addr with its session in
// sessionDir: the pid file first, then the address, each written whole
// (temp file and rename). It returns the record written.
func Write(addr, sessionDir string) (Record, error) {
	rec := Record{Address: addr, PID: os.Getpid(), SessionDir: sessionDir}
	if err := os.MkdirAll(Dir(), 0o755); err != nil {
		return rec, err
	}
	if st, ok := ProcStat(rec.PID); ok {
		rec.Start = st.Start
	}
	if err := WriteFileAtomic(PIDFile(), fmt.Sprintf("%d\n%d\n%s\n", rec.PID, rec.Start, sessionDir)); err != nil {
		return rec, err
	}
	return rec, WriteFileAtomic(AddressFile(), addr+"\n")
}

// Remove deletes the files if they still describe rec (a newer head may
// have replaced them). It reports whether it removed anything.
func Remove(rec Record) bool {
	cur, ok, err := Read()
	if err != nil || !ok {
		return false
	}
	if cur.Address != rec.Address || (rec.PID != 0 && cur.PID != 0 && cur.PID != rec.PID) {
		return false
	}
	removed := os.Remove(AddressFile()) == nil
	if cur.PID == 0 || rec.PID == 0 || cur.PID == rec.PID {
		if os.Remove(PIDFile()) == nil {
			removed = true
		}
	}
	return removed
}

// WriteFileAtomic writes content to path (mode 0644) through a temporary
// file and a rename.
func WriteFileAtomic(path, content string) error {
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

// ProcInfo is a process's state and start time.
type ProcInfo struct {
	State string
	Start uint64
}

// ProcStat reads a process's state and start time from /proc.
func ProcStat(pid int) (ProcInfo, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ProcInfo{}, false
	}
	// "pid (comm) state ...": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ProcInfo{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ProcInfo{}, false
	}
	start, _ := strconv.ParseUint(f[19], 10, 64) // field 22
	return ProcInfo{State: f[0], Start: start}, true
}

// WaitGone waits up to d for the recorded process to exit.
func WaitGone(rec Record, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for rec.Alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// NormalizeAddress writes an address as a URL: "host:port" becomes
// "nats://host:port".
func NormalizeAddress(a string) string {
	a = strings.TrimSpace(a)
	if a != "" && !strings.Contains(a, "://") {
		a = "nats://" + a
	}
	return a
}

// TokenFileFor is the token file of the cluster at addr if that is the
// cluster recorded on this machine ("auto" means it), else "".
func TokenFileFor(addr string) string {
	rec, ok, err := Read()
	if err != nil || !ok {
		return ""
	}
	if addr != "auto" && NormalizeAddress(addr) != NormalizeAddress(rec.Address) {
		return ""
	}
	return rec.TokenFile()
}
