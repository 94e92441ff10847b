package raylet

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// defaultStoreMemory is 30% of the machine's memory, as Ray's default
// object_store_memory, read from /proc/meminfo.
func defaultStoreMemory() uint64 {
	const fallback = 2 << 30
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return fallback
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return fallback
			}
			return kb * 1024 * 3 / 10 &^ 4095
		}
	}
	return fallback
}
