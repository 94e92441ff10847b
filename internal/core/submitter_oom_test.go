package core

import (
	"testing"
	"time"
)

func TestOOMRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		attempt int32
		want    time.Duration
	}{
		{-1, time.Second}, {0, time.Second}, {1, 2 * time.Second}, {2, 4 * time.Second},
		{5, 32 * time.Second}, {6, time.Minute}, {40, time.Minute},
	} {
		if got := oomRetryDelay(tc.attempt); got != tc.want {
			t.Errorf("oomRetryDelay(%d) = %v, want %v", tc.attempt, got, tc.want)
		}
	}
}
