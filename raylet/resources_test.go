package raylet

import (
	"testing"

	"github.com/goray/goray/protos"
)

func TestResourceSetArithmetic(t *testing.T) {
	total, err := FromMap(map[string]float64{CPU: 1, "TPU": 2})
	if err != nil {
		t.Fatal(err)
	}
	half, _ := FromMap(map[string]float64{CPU: 0.5})
	avail := total.Clone()
	for i := 0; i < 2; i++ {
		if !avail.Fits(half) {
			t.Fatalf("step %d: %v does not fit in %v", i, half, avail)
		}
		avail.Sub(half)
	}
	if avail.Fits(half) {
		t.Fatalf("third half CPU fits in %v", avail)
	}
	if got := avail.Get(CPU); got != 0 {
		t.Fatalf("CPU left = %v, want exactly 0 (fixed point)", got)
	}
	tenth, _ := FromMap(map[string]float64{CPU: 0.1})
	avail = total.Clone()
	for i := 0; i < 10; i++ {
		avail.Sub(tenth)
	}
	if avail[CPU] != 0 {
		t.Fatalf("ten tenths left %d units", avail[CPU])
	}
}

func TestResourceSetRejectsBadInput(t *testing.T) {
	for _, tc := range []map[string]float64{{CPU: -1}, {"": 1}} {
		if _, err := FromMap(tc); err == nil {
			t.Errorf("FromMap(%v): no error", tc)
		}
	}
}

func TestResourceSetKeyAndProto(t *testing.T) {
	a, _ := FromMap(map[string]float64{CPU: 1, GPU: 0.25})
	b, _ := FromProto(&protos.Resources{Amounts: map[string]float64{GPU: 0.25, CPU: 1}})
	if a.Key() != b.Key() {
		t.Fatalf("keys differ: %q vs %q", a.Key(), b.Key())
	}
	if a.String() != "{CPU: 1, GPU: 0.25}" {
		t.Fatalf("String = %q", a.String())
	}
	if msg := a.Missing(ResourceSet{GPU: 10000}); msg == "" {
		t.Fatal("Missing found nothing")
	}
}

// An oversubscribed node (a blocked worker resumed) reports zero free, not
// a negative quantity its peers and the GCS would refuse.
func TestResourceSetFree(t *testing.T) {
	s := ResourceSet{CPU: -resourceUnit, "TPU": 2 * resourceUnit}
	free := s.Free()
	if free[CPU] != 0 || free["TPU"] != 2*resourceUnit {
		t.Fatalf("Free of %v = %v", s, free)
	}
	if s[CPU] != -resourceUnit {
		t.Fatalf("Free changed its receiver: %v", s)
	}
	if _, err := FromProto(free.Proto()); err != nil {
		t.Fatalf("the report of an oversubscribed node is refused: %v", err)
	}
	if _, err := FromProto(s.Proto()); err == nil {
		t.Fatal("a negative quantity was accepted")
	}
}
