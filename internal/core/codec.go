package core

import (
	"bytes"
	"fmt"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
)

// Values cross processes in one of three encodings: []byte as raw bytes
// (so large byte slices are read zero-copy from the object store), protobuf
// messages as protobuf, and every other Go value as msgpack, the codec Ray's
// C++ API uses.

var (
	bytesType    = reflect.TypeOf([]byte(nil))
	protoMsgType = reflect.TypeOf((*proto.Message)(nil)).Elem()
)

// encoded is a value ready to travel: its encoding, its bytes and the refs
// nested inside it, which the runtime must keep alive for the receiver
// (see objects.go).
type encoded struct {
	enc  protos.Encoding
	kind protos.NumericKind
	data []byte
	refs []ObjectRef
}

func (e encoded) objectData() *protos.ObjectData {
	return &protos.ObjectData{Encoding: e.enc, NumericKind: e.kind, Data: e.data}
}

// refBuffer is the msgpack encoder's output; ObjectRef.EncodeMsgpack finds
// it through Encoder.Writer and records itself, which is how the runtime
// learns which refs a value carries.
type refBuffer struct {
	bytes.Buffer
	refs []ObjectRef
}

// encodeValue encodes v. []byte and numeric slices are not copied: data
// aliases v.
func encodeValue(v any) (encoded, error) {
	switch x := v.(type) {
	case []byte:
		return encoded{enc: protos.Encoding_ENCODING_RAW, data: x}, nil
	case proto.Message:
		b, err := proto.Marshal(x)
		if err != nil {
			return encoded{}, fmt.Errorf("protobuf encode %T: %w", v, err)
		}
		return encoded{enc: protos.Encoding_ENCODING_PROTOBUF, data: b}, nil
	}
	if kind, data, ok := numericBytes(v); ok {
		return encoded{enc: protos.Encoding_ENCODING_NUMERIC, kind: kind, data: data}, nil
	}
	enc := msgpack.GetEncoder()
	var buf refBuffer
	enc.Reset(&buf)
	err := enc.Encode(v)
	msgpack.PutEncoder(enc)
	if err != nil {
		return encoded{}, fmt.Errorf("msgpack encode %T: %w", v, err)
	}
	return encoded{enc: protos.Encoding_ENCODING_MSGPACK, data: buf.Bytes(), refs: dedupRefs(buf.refs)}, nil
}

func dedupRefs(refs []ObjectRef) []ObjectRef {
	if len(refs) < 2 {
		return refs
	}
	seen := make(map[protos.ObjectID]bool, len(refs))
	out := refs[:0]
	for _, r := range refs {
		if !seen[r.h.id] {
			seen[r.h.id] = true
			out = append(out, r)
		}
	}
	return out
}

// decodeInto decodes data (in encoding enc) into *T. For []byte with the raw
// encoding and numeric slices, the result aliases data: no copy is made.
func decodeInto[T any](d *protos.ObjectData, data []byte, out *T) error {
	enc := d.GetEncoding()
	switch enc {
	case protos.Encoding_ENCODING_NUMERIC:
		v, err := numericValue(d.GetNumericKind(), data)
		if err != nil {
			return err
		}
		if p, ok := any(out).(*any); ok {
			*p = v
			return nil
		}
		x, ok := v.(T)
		if !ok {
			return fmt.Errorf("value is %T, cannot decode into %s", v, typeName[T]())
		}
		*out = x
		return nil
	case protos.Encoding_ENCODING_RAW:
		if p, ok := any(out).(*[]byte); ok {
			*p = data
			return nil
		}
		if p, ok := any(out).(*any); ok {
			*p = data
			return nil
		}
		return fmt.Errorf("value is []byte, cannot decode into %s", typeName[T]())
	case protos.Encoding_ENCODING_PROTOBUF:
		t := reflect.TypeOf(out).Elem()
		if !t.Implements(protoMsgType) || t.Kind() != reflect.Pointer {
			return fmt.Errorf("value is a protobuf message, cannot decode into %s", typeName[T]())
		}
		msg := reflect.New(t.Elem()).Interface().(proto.Message)
		if err := proto.Unmarshal(data, msg); err != nil {
			return fmt.Errorf("protobuf decode into %s: %w", typeName[T](), err)
		}
		*out = msg.(T)
		return nil
	case protos.Encoding_ENCODING_MSGPACK:
		if err := msgpack.Unmarshal(data, out); err != nil {
			return fmt.Errorf("msgpack decode into %s: %w", typeName[T](), err)
		}
		return nil
	}
	return fmt.Errorf("unknown value encoding %v", enc)
}

// decodeReflect decodes into a value of type t (used by the function
// registry, which knows parameter types only at run time).
func decodeReflect(t reflect.Type, d *protos.ObjectData, data []byte) (reflect.Value, error) {
	ptr := reflect.New(t)
	switch enc := d.GetEncoding(); enc {
	case protos.Encoding_ENCODING_NUMERIC:
		v, err := numericValue(d.GetNumericKind(), data)
		if err != nil {
			return reflect.Value{}, err
		}
		rv := reflect.ValueOf(v)
		if !rv.Type().AssignableTo(t) {
			return reflect.Value{}, fmt.Errorf("value is %s, cannot decode into %s", rv.Type(), t)
		}
		ptr.Elem().Set(rv)
	case protos.Encoding_ENCODING_RAW:
		if t != bytesType && t.Kind() != reflect.Interface {
			return reflect.Value{}, fmt.Errorf("value is []byte, cannot decode into %s", t)
		}
		ptr.Elem().Set(reflect.ValueOf(data))
	case protos.Encoding_ENCODING_PROTOBUF:
		if t.Kind() != reflect.Pointer || !t.Implements(protoMsgType) {
			return reflect.Value{}, fmt.Errorf("value is a protobuf message, cannot decode into %s", t)
		}
		msg := reflect.New(t.Elem())
		if err := proto.Unmarshal(data, msg.Interface().(proto.Message)); err != nil {
			return reflect.Value{}, fmt.Errorf("protobuf decode into %s: %w", t, err)
		}
		return msg, nil
	case protos.Encoding_ENCODING_MSGPACK:
		if err := msgpack.Unmarshal(data, ptr.Interface()); err != nil {
			return reflect.Value{}, fmt.Errorf("msgpack decode into %s: %w", t, err)
		}
	default:
		return reflect.Value{}, fmt.Errorf("unknown value encoding %v", d.GetEncoding())
	}
	return ptr.Elem(), nil
}

func typeName[T any]() string {
	return reflect.TypeOf((*T)(nil)).Elem().String()
}
