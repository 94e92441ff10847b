package raylet

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Per-process CPU time and memory from /proc, for the per-worker metrics.

// userHZ is the kernel's clock tick for /proc times (USER_HZ, 100 on
// every Linux platform Go supports).
const userHZ = 100

// procStats are a process's CPU seconds (user and system) and resident
// bytes.
type procStats struct {
	cpuSeconds float64
	rssBytes   uint64
}

// readProcStats reads pid's /proc/<pid>/stat and statm.
func readProcStats(pid int) (procStats, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStats{}, err
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// fields are counted from after its closing parenthesis.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStats{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// After the name: state (3), ..., utime (14), stime (15).
	if len(f) < 13 {
		return procStats{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procStats{}, fmt.Errorf("/proc/%d/stat: bad times %q %q", pid, f[11], f[12])
	}
	statm, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return procStats{}, err
	}
	m := strings.Fields(string(statm))
	if len(m) < 2 {
		return procStats{}, fmt.Errorf("/proc/%d/statm: %q", pid, statm)
	}
	pages, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return procStats{}, fmt.Errorf("/proc/%d/statm: %w", pid, err)
	}
	return procStats{cpuSeconds: float64(utime+stime) / userHZ, rssBytes: pages * uint64(os.Getpagesize())}, nil
}
