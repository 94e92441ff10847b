package raylet

import (
	"os"
	"testing"
)

func TestReadProcStats(t *testing.T) {
	// Burn a little CPU so the count is not zero.
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	_ = x
	st, err := readProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.cpuSeconds <= 0 || st.rssBytes < 1<<20 {
		t.Errorf("this process: %+v", st)
	}
	if _, err := readProcStats(1 << 30); err == nil {
		t.Error("a pid that does not exist was read")
	}
}
