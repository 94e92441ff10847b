package raylet

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cpuMeter measures how busy the machine's CPUs were between two reads of
// /proc/stat, for the node's report (NodeInfo.cpu_busy: the dashboard's
// CPU chart). Reads closer than cpuMeterMin to the previous one return the
// previous figure, so any caller may ask.
type cpuMeter struct {
	mu         sync.Mutex
	at         time.Time
	busy, idle uint64
	last       float64
	read       func() (busy, idle uint64, ok bool)
}

const cpuMeterMin = 500 * time.Millisecond

func newCPUMeter() *cpuMeter { return &cpuMeter{read: readProcStat} }

// busyFraction returns the fraction of CPU time busy since the previous
// measurement (0 before the second).
func (m *cpuMeter) busyFraction(now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.at.IsZero() && now.Sub(m.at) < cpuMeterMin {
		return m.last
	}
	busy, idle, ok := m.read()
	if !ok {
		return m.last
	}
	if !m.at.IsZero() && busy >= m.busy && idle >= m.idle {
		if d := (busy - m.busy) + (idle - m.idle); d > 0 {
			m.last = float64(busy-m.busy) / float64(d)
		}
	}
	m.at, m.busy, m.idle = now, busy, idle
	return m.last
}

// readProcStat sums the first line of /proc/stat ("cpu user nice system
// idle iowait irq softirq steal ..."): idle and iowait are idle time, the
// rest busy (guest time is already in user).
func readProcStat() (busy, idle uint64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, false
	}
	return parseCPULine(sc.Text())
}

func parseCPULine(line string) (busy, idle uint64, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, false
	}
	for i, f := range fields[1:] {
		if i >= 8 { // guest and guest_nice are counted in user and nice
			break
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i == 3 || i == 4 {
			idle += v
		} else {
			busy += v
		}
	}
	return busy, idle, true
}
