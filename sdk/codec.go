package sdk

import (
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

// encodeValue encodes v, appending to buf when msgpack is used.
func encodeValue(v any) (protos.Encoding, []byte, error) {
	switch x := v.(type) {
	case []byte:
		return protos.Encoding_ENCODING_RAW, x, nil
	case proto.Message:
		b, err := proto.Marshal(x)
		if err != nil {
			return 0, nil, fmt.Errorf("protobuf encode %T: %w", v, err)
		}
		return protos.Encoding_ENCODING_PROTOBUF, b, nil
	}
	b, err := msgpack.Marshal(v)
	if err != nil {
		return 0, nil, fmt.Errorf("msgpack encode %T: %w", v, err)
	}
	return protos.Encoding_ENCODING_MSGPACK, b, nil
}

// decodeInto decodes data (in encoding enc) into *T. For []byte with the raw
// encoding, the result aliases data: no copy is made.
func decodeInto[T any](enc protos.Encoding, data []byte, out *T) error {
	switch enc {
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
func decodeReflect(t reflect.Type, enc protos.Encoding, data []byte) (reflect.Value, error) {
	ptr := reflect.New(t)
	switch enc {
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
		return reflect.Value{}, fmt.Errorf("unknown value encoding %v", enc)
	}
	return ptr.Elem(), nil
}

func typeName[T any]() string {
	return reflect.TypeOf((*T)(nil)).Elem().String()
}
