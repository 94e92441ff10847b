package core

import (
	"fmt"
	"unsafe"

	"github.com/goray/goray/protos"
)

// Numeric slices travel as their raw little-endian elements (every platform
// goray builds for is little-endian), so a large []float64 in the object
// store is read as a view of the shared memory, exactly like []byte. Store
// blocks are 64-byte aligned; inline bytes that are not aligned for the
// element type are copied first.

// numericBytes returns the bytes of a numeric slice without copying.
func numericBytes(v any) (protos.NumericKind, []byte, bool) {
	switch x := v.(type) {
	case []int8:
		return protos.NumericKind_NUMERIC_KIND_INT8, sliceBytes(x), true
	case []int16:
		return protos.NumericKind_NUMERIC_KIND_INT16, sliceBytes(x), true
	case []uint16:
		return protos.NumericKind_NUMERIC_KIND_UINT16, sliceBytes(x), true
	case []int32:
		return protos.NumericKind_NUMERIC_KIND_INT32, sliceBytes(x), true
	case []uint32:
		return protos.NumericKind_NUMERIC_KIND_UINT32, sliceBytes(x), true
	case []int64:
		return protos.NumericKind_NUMERIC_KIND_INT64, sliceBytes(x), true
	case []uint64:
		return protos.NumericKind_NUMERIC_KIND_UINT64, sliceBytes(x), true
	case []float32:
		return protos.NumericKind_NUMERIC_KIND_FLOAT32, sliceBytes(x), true
	case []float64:
		return protos.NumericKind_NUMERIC_KIND_FLOAT64, sliceBytes(x), true
	case []int:
		return protos.NumericKind_NUMERIC_KIND_INT, sliceBytes(x), true
	case []uint:
		return protos.NumericKind_NUMERIC_KIND_UINT, sliceBytes(x), true
	}
	return 0, nil, false
}

func sliceBytes[E any](s []E) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var e E
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(e)))
}

// numericValue returns data as a slice of kind's element type, aliasing data
// when it is suitably aligned.
func numericValue(kind protos.NumericKind, data []byte) (any, error) {
	switch kind {
	case protos.NumericKind_NUMERIC_KIND_INT8:
		return viewAs[int8](data)
	case protos.NumericKind_NUMERIC_KIND_INT16:
		return viewAs[int16](data)
	case protos.NumericKind_NUMERIC_KIND_UINT16:
		return viewAs[uint16](data)
	case protos.NumericKind_NUMERIC_KIND_INT32:
		return viewAs[int32](data)
	case protos.NumericKind_NUMERIC_KIND_UINT32:
		return viewAs[uint32](data)
	case protos.NumericKind_NUMERIC_KIND_INT64:
		return viewAs[int64](data)
	case protos.NumericKind_NUMERIC_KIND_UINT64:
		return viewAs[uint64](data)
	case protos.NumericKind_NUMERIC_KIND_FLOAT32:
		return viewAs[float32](data)
	case protos.NumericKind_NUMERIC_KIND_FLOAT64:
		return viewAs[float64](data)
	case protos.NumericKind_NUMERIC_KIND_INT:
		return viewAs[int](data)
	case protos.NumericKind_NUMERIC_KIND_UINT:
		return viewAs[uint](data)
	}
	return nil, fmt.Errorf("unknown numeric element kind %v", kind)
}

func viewAs[E any](data []byte) ([]E, error) {
	var e E
	size := int(unsafe.Sizeof(e))
	if len(data)%size != 0 {
		return nil, fmt.Errorf("numeric value of %d bytes is not a whole number of %T (%d bytes each)", len(data), e, size)
	}
	if len(data) == 0 {
		return []E{}, nil
	}
	if uintptr(unsafe.Pointer(&data[0]))%unsafe.Alignof(e) != 0 {
		out := make([]E, len(data)/size)
		copy(sliceBytes(out), data)
		return out, nil
	}
	return unsafe.Slice((*E)(unsafe.Pointer(&data[0])), len(data)/size), nil
}
