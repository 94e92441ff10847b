package state

import "testing"

func TestShortObjectID(t *testing.T) {
	big := "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d000000001"
	spilled := "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d000000002"
	a, b := shortObjectID(big), shortObjectID(spilled)
	if a == b || a != "d0d0d0d0d0d0d0d0..00000001" {
		t.Errorf("short ids %q, %q; want distinct, keeping the index", a, b)
	}
	if got := shortObjectID("abc"); got != "abc" {
		t.Errorf("shortObjectID of a non-id = %q; want it unchanged", got)
	}
}
