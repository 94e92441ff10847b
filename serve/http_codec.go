package serve

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// HTTPRequest and HTTPResponse cross from proxy to replica on every
// request, so they travel as one msgpack bin in a flat layout of
// length-prefixed fields, rather than through msgpack's reflection over
// a struct and a header map (a sixth of a replica's time).

var errShortHTTP = errors.New("serve: a truncated HTTP message")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendHeader(b []byte, h map[string][]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(h)))
	for k, vs := range h {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendString(b, v)
		}
	}
	return b
}

// reader reads the flat layout; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShortHTTP
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errShortHTTP
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes()) }

func (r *reader) header() map[string][]string {
	n := r.uvarint()
	// Each entry takes at least two bytes: a count cannot claim more.
	if r.err != nil || n > uint64(len(r.b)/2) {
		if r.err == nil {
			r.err = errShortHTTP
		}
		return nil
	}
	h := make(map[string][]string, n)
	for range n {
		k := r.string()
		m := r.uvarint()
		if r.err != nil || m > uint64(len(r.b)) {
			if r.err == nil {
				r.err = errShortHTTP
			}
			return nil
		}
		vs := make([]string, m)
		for i := range vs {
			vs[i] = r.string()
		}
		h[k] = vs
	}
	return h
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (q HTTPRequest) EncodeMsgpack(enc *msgpack.Encoder) error {
	b := make([]byte, 0, 64+len(q.URL)+len(q.Body))
	b = appendString(b, q.Method)
	b = appendString(b, q.URL)
	b = appendString(b, q.RemoteAddr)
	b = appendString(b, q.Host)
	b = appendHeader(b, q.Header)
	b = binary.AppendUvarint(b, uint64(len(q.Body)))
	b = append(b, q.Body...)
	return enc.EncodeBytes(b)
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (q *HTTPRequest) DecodeMsgpack(dec *msgpack.Decoder) error {
	b, err := dec.DecodeBytes()
	if err != nil {
		return err
	}
	r := reader{b: b}
	q.Method, q.URL, q.RemoteAddr, q.Host = r.string(), r.string(), r.string(), r.string()
	q.Header = r.header()
	q.Body = r.bytes()
	if r.err != nil {
		return fmt.Errorf("decode an HTTP request: %w", r.err)
	}
	return nil
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (p HTTPResponse) EncodeMsgpack(enc *msgpack.Encoder) error {
	b := make([]byte, 0, 32+len(p.Body))
	b = binary.AppendUvarint(b, uint64(p.Status))
	b = appendHeader(b, p.Header)
	b = binary.AppendUvarint(b, uint64(len(p.Body)))
	b = append(b, p.Body...)
	return enc.EncodeBytes(b)
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (p *HTTPResponse) DecodeMsgpack(dec *msgpack.Decoder) error {
	b, err := dec.DecodeBytes()
	if err != nil {
		return err
	}
	r := reader{b: b}
	p.Status = int(r.uvarint())
	p.Header = r.header()
	p.Body = r.bytes()
	if r.err != nil {
		return fmt.Errorf("decode an HTTP response: %w", r.err)
	}
	return nil
}
