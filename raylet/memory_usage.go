package raylet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MemoryUsage is a reading of the memory the node's processes may use and
// use: the limit of the memory cgroup the raylet runs in when it has one
// below the machine's memory, else the machine's (/proc/meminfo).
type MemoryUsage struct {
	// Used bytes: the cgroup's usage less its inactive file cache (pages
	// the kernel reclaims before it kills anything, as Ray counts), or
	// MemTotal - MemAvailable.
	Used uint64
	// Total bytes: the cgroup's limit or MemTotal.
	Total uint64
	// Source says where the figures come from, e.g. "cgroup v1
	// /sys/fs/cgroup/memory/foo" or "/proc/meminfo".
	Source string
}

// Fraction is Used / Total.
func (u MemoryUsage) Fraction() float64 {
	if u.Total == 0 {
		return 0
	}
	return float64(u.Used) / float64(u.Total)
}

// ReadMemoryUsage reads the node's memory as the raylet's memory monitor
// does (see docs/memory.md, "The memory monitor").
func ReadMemoryUsage() (MemoryUsage, error) {
	return detectMemorySource("/").read()
}

// memorySource is where the monitor reads memory: a cgroup directory that
// limits the raylet's memory (v1 or v2), or /proc/meminfo.
type memorySource struct {
	// root prefixes every path ("/" but in tests).
	root string
	// dir is the limiting cgroup's directory; "" reads /proc/meminfo.
	dir string
	v2  bool
	// oomDir is the raylet's own memory cgroup, whose OOM kill counter
	// counts the kills of its workers (they start in it).
	oomDir string
}

func (m *memorySource) path(p string) string { return filepath.Join(m.root, p) }

// cgroupUnlimited is the least limit read as none: cgroup v1 writes
// "unlimited" as a page-rounded 2^63-1.
const cgroupUnlimited = 1 << 62

// detectMemorySource finds the memory cgroup of this process (cgroup v2's
// unified hierarchy, or v1's memory controller) through /proc/self/cgroup
// and /proc/self/mountinfo, and, walking up from it to its mount's root,
// the one with the lowest limit. With no limit below MemTotal it reads
// /proc/meminfo.
func detectMemorySource(root string) *memorySource {
	m := &memorySource{root: root}
	total, _, err := readMeminfo(m.path("/proc/meminfo"))
	if err != nil {
		total = 0
	}
	dir, mount, v2 := ownMemoryCgroup(root)
	if dir == "" {
		return m
	}
	m.oomDir, m.v2 = dir, v2
	best := uint64(0)
	for d := dir; ; d = filepath.Dir(d) {
		if lim, ok := m.cgroupLimit(d); ok && (best == 0 || lim < best) {
			best, m.dir = lim, d
		}
		if d == mount || len(d) <= len(mount) || d == "/" {
			break
		}
	}
	if best == 0 || (total > 0 && best >= total) {
		m.dir = ""
	}
	return m
}

// cgroupLimit reads a cgroup directory's memory limit; false if it has
// none (or no such file).
func (m *memorySource) cgroupLimit(dir string) (uint64, bool) {
	name := "memory.limit_in_bytes"
	if m.v2 {
		name = "memory.max"
	}
	b, err := os.ReadFile(m.path(filepath.Join(dir, name)))
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 || v >= cgroupUnlimited {
		return 0, false
	}
	return v, true
}

// ownMemoryCgroup returns the directory of this process's memory cgroup
// (relative to root), the mount point of its hierarchy and whether it is
// cgroup v2; "" if there is none. A v1 memory controller wins over v2's
// unified hierarchy, which then holds no memory controller.
func ownMemoryCgroup(root string) (dir, mount string, v2 bool) {
	cg, err := os.ReadFile(filepath.Join(root, "/proc/self/cgroup"))
	if err != nil {
		return "", "", false
	}
	var v1Path, v2Path string
	hasV2 := false
	for _, line := range strings.Split(string(cg), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2Path, hasV2 = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				v1Path = parts[2]
			}
		}
	}
	mi, err := os.ReadFile(filepath.Join(root, "/proc/self/mountinfo"))
	if err != nil {
		return "", "", false
	}
	var v1Mount, v1Root, v2Mount, v2Root string
	for _, line := range strings.Split(string(mi), "\n") {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		switch g[0] {
		case "cgroup":
			for _, o := range strings.Split(g[2], ",") {
				if o == "memory" {
					v1Root, v1Mount = f[3], f[4]
				}
			}
		case "cgroup2":
			v2Root, v2Mount = f[3], f[4]
		}
	}
	join := func(mount, mroot, p string) string {
		rel, ok := strings.CutPrefix(p, mroot)
		if !ok || mroot == "/" {
			rel = p
		}
		d := filepath.Join(mount, rel)
		if _, err := os.Stat(filepath.Join(root, d)); err != nil {
			// A namespaced mount shows the process's own cgroup at
			// its root.
			return mount
		}
		return d
	}
	switch {
	case v1Path != "" && v1Mount != "":
		return join(v1Mount, v1Root, v1Path), v1Mount, false
	case hasV2 && v2Mount != "":
		d := join(v2Mount, v2Root, v2Path)
		if _, err := os.Stat(filepath.Join(root, d, "memory.current")); err != nil {
			return "", "", false
		}
		return d, v2Mount, true
	}
	return "", "", false
}

func (m *memorySource) read() (MemoryUsage, error) {
	if m == nil {
		return MemoryUsage{}, errors.New("no memory source")
	}
	if m.dir == "" {
		total, avail, err := readMeminfo(m.path("/proc/meminfo"))
		if err != nil {
			return MemoryUsage{}, err
		}
		used := uint64(0)
		if total > avail {
			used = total - avail
		}
		return MemoryUsage{Used: used, Total: total, Source: "/proc/meminfo"}, nil
	}
	limit, ok := m.cgroupLimit(m.dir)
	if !ok {
		return MemoryUsage{}, fmt.Errorf("memory cgroup %s: no limit any more", m.dir)
	}
	usageFile, inactiveKey, version := "memory.usage_in_bytes", "total_inactive_file", "cgroup v1 "
	if m.v2 {
		usageFile, inactiveKey, version = "memory.current", "inactive_file", "cgroup v2 "
	}
	usage, err := readUint(m.path(filepath.Join(m.dir, usageFile)))
	if err != nil {
		return MemoryUsage{}, err
	}
	stat, err := readKeyed(m.path(filepath.Join(m.dir, "memory.stat")), inactiveKey)
	if err != nil {
		return MemoryUsage{}, err
	}
	if in := stat[inactiveKey]; in < usage {
		usage -= in
	} else {
		usage = 0
	}
	return MemoryUsage{Used: usage, Total: limit, Source: version + m.dir}, nil
}

// oomKills counts OOM kills the kernel made: in the raylet's memory cgroup
// (v1 memory.oom_control, v2 memory.events) and on the machine
// (/proc/vmstat). A worker that died of SIGKILL while either grew was
// killed by the kernel's OOM killer.
type oomKills struct{ cgroup, machine uint64 }

func (m *memorySource) oomKills() oomKills {
	var k oomKills
	if m == nil {
		return k
	}
	if m.oomDir != "" {
		name := "memory.oom_control"
		if m.v2 {
			name = "memory.events"
		}
		if v, err := readKeyed(m.path(filepath.Join(m.oomDir, name)), "oom_kill"); err == nil {
			k.cgroup = v["oom_kill"]
		}
	}
	if v, err := readKeyed(m.path("/proc/vmstat"), "oom_kill"); err == nil {
		k.machine = v["oom_kill"]
	}
	return k
}

// grew tells whether any counter grew since before.
func (k oomKills) grew(before oomKills) bool {
	return k.cgroup > before.cgroup || k.machine > before.machine
}

// readMeminfo returns MemTotal and MemAvailable in bytes.
func readMeminfo(path string) (total, avail uint64, err error) {
	v, err := readKeyed(path, "MemTotal:", "MemAvailable:")
	if err != nil {
		return 0, 0, err
	}
	total, okT := v["MemTotal:"]
	avail, okA := v["MemAvailable:"]
	if !okT || !okA {
		return 0, 0, fmt.Errorf("%s: no MemTotal or MemAvailable", path)
	}
	return total * 1024, avail * 1024, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
}

// readKeyed reads "key value" lines, returning the keys asked for that the
// file has.
func readKeyed(path string, keys ...string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make(map[string]uint64, len(keys))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		for _, k := range keys {
			if fields[0] == k {
				if v, err := strconv.ParseUint(fields[1], 10, 64); err == nil {
					out[k] = v
				}
			}
		}
		if len(out) == len(keys) {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New(path + ": none of " + strings.Join(keys, ", "))
	}
	return out, nil
}
