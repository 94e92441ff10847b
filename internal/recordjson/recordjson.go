// Package recordjson writes goray's stored records and published events
// as JSON an operator can read with the stock nats CLI (`nats kv get`,
// `nats sub`): protobuf's JSON mapping (proto field names, enums by name,
// 64-bit integers as strings), except that ids (bytes fields named *_id,
// *_ids, or bundle_nodes) are lowercase hex, as goray prints them
// everywhere, rather than base64.
//
//	data, err := recordjson.Marshal(job)      // {"job_id":"5103776002d0...","driver_pid":4777,...}
//	err = recordjson.Unmarshal(data, &job)    // JSON, or the binary protobuf of older records
//
// Marshal walks the message once and writes the JSON itself: records are
// written at the rate actors and placement groups change, and a detour
// through protojson and a second rewrite pass would cost several times
// more. Unmarshal, which runs when a manager loads its bucket or a
// subscriber reads an event, rewrites the ids back and leaves the rest to
// protojson.
package recordjson

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// isID reports whether a bytes field holds ids, written as hex.
func isID(fd protoreflect.FieldDescriptor) bool {
	if fd.Kind() != protoreflect.BytesKind {
		return false
	}
	n := string(fd.Name())
	return strings.HasSuffix(n, "_id") || strings.HasSuffix(n, "_ids") || n == "bundle_nodes"
}

// Marshal returns m as JSON.
func Marshal(m proto.Message) ([]byte, error) {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	defer bufPool.Put(b)
	if err := writeMessage(b, m.ProtoReflect()); err != nil {
		return nil, err
	}
	return bytes.Clone(b.Bytes()), nil
}

// MarshalSpliced is Marshal with the top-level field named field written
// as raw, JSON the caller encoded before (a part of a record that does not
// change between writes, such as an actor's spec).
func MarshalSpliced(m proto.Message, field protoreflect.Name, raw []byte) ([]byte, error) {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	defer bufPool.Put(b)
	if err := writeMessageSplicing(b, m.ProtoReflect(), field, raw); err != nil {
		return nil, err
	}
	return bytes.Clone(b.Bytes()), nil
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// keys holds, per message type, each field's quoted name and colon,
// indexed by the field's index: worked out once per type, not per record.
var keys sync.Map // protoreflect.MessageDescriptor -> [][]byte

func keysOf(md protoreflect.MessageDescriptor) [][]byte {
	if k, ok := keys.Load(md); ok {
		return k.([][]byte)
	}
	fields := md.Fields()
	k := make([][]byte, fields.Len())
	for i := range k {
		var b bytes.Buffer
		writeString(&b, string(fields.Get(i).Name()))
		b.WriteByte(':')
		k[i] = b.Bytes()
	}
	keys.Store(md, k)
	return k
}

// collector gathers a message's populated fields. Range visits only those
// (Has on every field of the type costs more than the writing), and a
// pooled collector with its method value made once spares Range's
// callback an allocation per message.
type collector struct {
	set []setField
	fn  func(protoreflect.FieldDescriptor, protoreflect.Value) bool
}

type setField struct {
	fd protoreflect.FieldDescriptor
	v  protoreflect.Value
}

func (c *collector) add(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
	c.set = append(c.set, setField{fd, v})
	return true
}

var collectors = sync.Pool{New: func() any {
	c := &collector{}
	c.fn = c.add
	return c
}}

func writeMessage(b *bytes.Buffer, m protoreflect.Message) error {
	return writeMessageSplicing(b, m, "", nil)
}

func writeMessageSplicing(b *bytes.Buffer, m protoreflect.Message, splice protoreflect.Name, raw []byte) error {
	c := collectors.Get().(*collector)
	defer func() {
		clear(c.set)
		c.set = c.set[:0]
		collectors.Put(c)
	}()
	m.Range(c.fn)
	set := c.set
	// In number order, as protojson writes them, so that records read the
	// same from one write to the next.
	for i := 1; i < len(set); i++ {
		for j := i; j > 0 && set[j].fd.Number() < set[j-1].fd.Number(); j-- {
			set[j], set[j-1] = set[j-1], set[j]
		}
	}
	k := keysOf(m.Descriptor())
	b.WriteByte('{')
	var err error
	for i, f := range set {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(k[f.fd.Index()])
		switch {
		case splice != "" && f.fd.Name() == splice:
			b.Write(raw)
		case f.fd.IsList():
			err = writeList(b, f.fd, f.v.List())
		case f.fd.IsMap():
			err = writeMap(b, f.fd, f.v.Map())
		default:
			err = writeValue(b, f.fd, f.v)
		}
		if err != nil {
			return err
		}
	}
	b.WriteByte('}')
	return nil
}

func writeList(b *bytes.Buffer, fd protoreflect.FieldDescriptor, l protoreflect.List) error {
	b.WriteByte('[')
	for i := 0; i < l.Len(); i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := writeValue(b, fd, l.Get(i)); err != nil {
			return err
		}
	}
	b.WriteByte(']')
	return nil
}

func writeMap(b *bytes.Buffer, fd protoreflect.FieldDescriptor, m protoreflect.Map) error {
	b.WriteByte('{')
	if fd.MapKey().Kind() == protoreflect.StringKind {
		// The common case (resources, labels): string keys, sorted as
		// protojson's deterministic output.
		keys := make([]string, 0, m.Len())
		m.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
			keys = append(keys, k.String())
			return true
		})
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k)
			b.WriteByte(':')
			if err := writeValue(b, fd.MapValue(), m.Get(protoreflect.ValueOfString(k).MapKey())); err != nil {
				return err
			}
		}
		b.WriteByte('}')
		return nil
	}
	keys := make([]protoreflect.MapKey, 0, m.Len())
	m.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	sortKeys(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(b, k.String())
		b.WriteByte(':')
		if err := writeValue(b, fd.MapValue(), m.Get(k)); err != nil {
			return err
		}
	}
	b.WriteByte('}')
	return nil
}

func writeValue(b *bytes.Buffer, fd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		b.WriteString(strconv.FormatBool(v.Bool()))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		b.WriteString(strconv.FormatInt(v.Int(), 10))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		b.WriteString(strconv.FormatUint(v.Uint(), 10))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		b.WriteByte('"')
		b.WriteString(strconv.FormatInt(v.Int(), 10))
		b.WriteByte('"')
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		b.WriteByte('"')
		b.WriteString(strconv.FormatUint(v.Uint(), 10))
		b.WriteByte('"')
	case protoreflect.FloatKind:
		writeFloat(b, v.Float(), 32)
	case protoreflect.DoubleKind:
		writeFloat(b, v.Float(), 64)
	case protoreflect.StringKind:
		writeString(b, v.String())
	case protoreflect.BytesKind:
		b.WriteByte('"')
		if isID(fd) {
			b.WriteString(hex.EncodeToString(v.Bytes()))
		} else {
			b.WriteString(base64.StdEncoding.EncodeToString(v.Bytes()))
		}
		b.WriteByte('"')
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			writeString(b, string(ev.Name()))
		} else {
			b.WriteString(strconv.FormatInt(int64(v.Enum()), 10))
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if fd.Message().FullName().Parent() == "google.protobuf" {
			// Well-known types have JSON forms of their own.
			data, err := protojson.Marshal(v.Message().Interface())
			if err != nil {
				return err
			}
			b.Write(data)
			return nil
		}
		return writeMessage(b, v.Message())
	default:
		return fmt.Errorf("recordjson: field %s: kind %v", fd.FullName(), fd.Kind())
	}
	return nil
}

func writeFloat(b *bytes.Buffer, f float64, bits int) {
	switch {
	case math.IsNaN(f):
		b.WriteString(`"NaN"`)
	case math.IsInf(f, 1):
		b.WriteString(`"Infinity"`)
	case math.IsInf(f, -1):
		b.WriteString(`"-Infinity"`)
	default:
		b.WriteString(strconv.FormatFloat(f, 'g', -1, bits))
	}
}

// writeString writes s as a JSON string; invalid UTF-8 (a proto string
// never holds it) is replaced.
func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		b.WriteString(s[start:i])
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c >= utf8.RuneSelf {
				b.WriteString(`\ufffd`)
			} else {
				fmt.Fprintf(b, `\u%04x`, c)
			}
		}
		i++
		start = i
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

func sortKeys(keys []protoreflect.MapKey) {
	less := func(a, b protoreflect.MapKey) bool {
		switch a.Interface().(type) {
		case string:
			return a.String() < b.String()
		case bool:
			return !a.Bool() && b.Bool()
		case int32, int64:
			return a.Int() < b.Int()
		default:
			return a.Uint() < b.Uint()
		}
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && less(keys[j], keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
}

// Unmarshal reads data into m: JSON as Marshal writes it, or (data not
// starting with '{') the binary protobuf records were stored as before.
// Unknown JSON fields are ignored, so an older reader reads a newer
// record.
func Unmarshal(data []byte, m proto.Message) error {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return proto.Unmarshal(data, m)
	}
	var tree map[string]any
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return fmt.Errorf("recordjson: %w", err)
	}
	if err := idsToBase64(tree, m.ProtoReflect().Descriptor()); err != nil {
		return err
	}
	fixed, err := json.Marshal(tree)
	if err != nil {
		return fmt.Errorf("recordjson: %w", err)
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(fixed, m)
}

var errNotHex = errors.New("not hex")

// idsToBase64 rewrites the hex ids of a decoded JSON object of message md
// as base64, which protojson reads.
func idsToBase64(obj map[string]any, md protoreflect.MessageDescriptor) error {
	fields := md.Fields()
	for name, v := range obj {
		fd := fields.ByName(protoreflect.Name(name))
		if fd == nil {
			fd = fields.ByJSONName(name)
		}
		if fd == nil {
			continue
		}
		conv := func(x any) (any, error) {
			s, ok := x.(string)
			if !ok {
				return x, nil
			}
			raw, err := hex.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("recordjson: field %s: %q is %w", fd.FullName(), s, errNotHex)
			}
			return base64.StdEncoding.EncodeToString(raw), nil
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				if mm, ok := v.(map[string]any); ok {
					for _, mv := range mm {
						if o, ok := mv.(map[string]any); ok {
							if err := idsToBase64(o, fd.MapValue().Message()); err != nil {
								return err
							}
						}
					}
				}
			}
		case isID(fd):
			if l, ok := v.([]any); ok && fd.IsList() {
				for i, x := range l {
					y, err := conv(x)
					if err != nil {
						return err
					}
					l[i] = y
				}
			} else {
				y, err := conv(v)
				if err != nil {
					return err
				}
				obj[name] = y
			}
		case fd.Kind() == protoreflect.MessageKind && fd.Message().FullName().Parent() != "google.protobuf":
			items := []any{v}
			if l, ok := v.([]any); ok && fd.IsList() {
				items = l
			}
			for _, it := range items {
				if o, ok := it.(map[string]any); ok {
					if err := idsToBase64(o, fd.Message()); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
