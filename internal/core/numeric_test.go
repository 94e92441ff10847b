package core

import (
	"testing"
	"unsafe"

	"github.com/goray/goray/protos"
)

func TestNumericRoundTrip(t *testing.T) {
	cases := []any{
		[]int8{-1, 2}, []int16{-3, 4}, []uint16{5}, []int32{-6, 7}, []uint32{8},
		[]int64{-9}, []uint64{10}, []float32{1.5}, []float64{2.25, -1}, []int{11, -12}, []uint{13},
		[]float64{},
	}
	for _, c := range cases {
		v, err := encodeValue(c)
		if err != nil || v.enc != protos.Encoding_ENCODING_NUMERIC {
			t.Fatalf("%T: encoding %v, %v", c, v.enc, err)
		}
		got, err := numericValue(v.kind, v.data)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if a, b := sliceBytesAny(t, c), sliceBytesAny(t, got); string(a) != string(b) {
			t.Fatalf("%T round trip: %v != %v", c, got, c)
		}
	}
}

func sliceBytesAny(t *testing.T, v any) []byte {
	_, b, ok := numericBytes(v)
	if !ok {
		t.Fatalf("%T is not numeric", v)
	}
	return b
}

func TestNumericViewAliasesAlignedData(t *testing.T) {
	buf := make([]float64, 4)
	b := sliceBytes(buf)
	got, err := viewAs[float64](b)
	if err != nil || &got[0] != &buf[0] {
		t.Fatalf("aligned data should be aliased: %v", err)
	}
	// Misaligned bytes are copied rather than read unaligned.
	raw := sliceBytes(make([]float64, 5)) // 8-aligned
	mis := raw[1:33]
	got, err = viewAs[float64](mis)
	if err != nil || len(got) != 4 || uintptr(unsafe.Pointer(&got[0]))%8 != 0 {
		t.Fatalf("misaligned data: %v", err)
	}
	if _, err := viewAs[float64](raw[:7]); err == nil {
		t.Fatal("7 bytes decoded as float64s")
	}
}
