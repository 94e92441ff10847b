package raylet

import (
	"testing"
	"time"
)

func TestParseCPULine(t *testing.T) {
	busy, idle, ok := parseCPULine("cpu  100 5 50 800 20 3 2 10 7 0")
	if !ok || busy != 100+5+50+3+2+10 || idle != 820 {
		t.Fatalf("busy %d idle %d ok %v", busy, idle, ok)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5", "cpu 1 2 x 4 5", "intr 1 2 3 4"} {
		if _, _, ok := parseCPULine(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestCPUMeter(t *testing.T) {
	reads := [][2]uint64{{100, 900}, {175, 925}, {175, 925}}
	m := &cpuMeter{}
	i := 0
	m.read = func() (uint64, uint64, bool) {
		r := reads[min(i, len(reads)-1)]
		i++
		return r[0], r[1], true
	}
	t0 := time.Unix(1_800_000_000, 0)
	if f := m.busyFraction(t0); f != 0 {
		t.Fatalf("first read: %v, want 0", f)
	}
	if f := m.busyFraction(t0.Add(100 * time.Millisecond)); f != 0 || i != 1 {
		t.Fatalf("a read too soon read /proc/stat again (%d reads) or moved: %v", i, f)
	}
	if f := m.busyFraction(t0.Add(time.Second)); f != 0.75 {
		t.Fatalf("75 busy of 100 ticks: %v", f)
	}
	if f := m.busyFraction(t0.Add(2 * time.Second)); f != 0.75 {
		t.Fatalf("no ticks since: %v, want the previous figure", f)
	}
}
