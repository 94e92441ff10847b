package serve

import (
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestHTTPCodecRoundTrip(t *testing.T) {
	q := HTTPRequest{Method: "POST", URL: "/score?x=1", Header: map[string][]string{"Content-Type": {"application/json"}, "X-Many": {"a", "b"}},
		Body: []byte(`{"features":[1,2]}`), RemoteAddr: "127.0.0.1:5555", Host: "example"}
	b, err := msgpack.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	var got HTTPRequest
	if err := msgpack.Unmarshal(b, &got); err != nil || !reflect.DeepEqual(got, q) {
		t.Fatalf("request: %+v %v", got, err)
	}
	p := HTTPResponse{Status: 418, Header: map[string][]string{"A": {"1"}}, Body: []byte("teapot")}
	if b, err = msgpack.Marshal(p); err != nil {
		t.Fatal(err)
	}
	var gotp HTTPResponse
	if err := msgpack.Unmarshal(b, &gotp); err != nil || !reflect.DeepEqual(gotp, p) {
		t.Fatalf("response: %+v %v", gotp, err)
	}
	// Every cut of the flat layout is an error, never a panic.
	flat := encodeFlat(p)
	for n := range len(flat) {
		r := reader{b: flat[:n]}
		r.uvarint()
		r.header()
		r.bytes()
		if r.err == nil {
			t.Fatalf("a cut at %d of %d bytes read without error", n, len(flat))
		}
	}
	// A count claiming more entries than bytes is refused.
	r := reader{b: []byte{0xff, 0xff, 0x03}}
	if r.header(); r.err == nil {
		t.Fatal("a huge header count was accepted")
	}
}

func encodeFlat(p HTTPResponse) []byte {
	b, _ := msgpack.Marshal(p)
	var flat []byte
	_ = msgpack.Unmarshal(b, &flat)
	return flat
}

func BenchmarkHTTPRequestCodec(b *testing.B) {
	q := HTTPRequest{Method: "GET", URL: "/", Header: map[string][]string{"User-Agent": {"Go-http-client/1.1"}, "Accept-Encoding": {"gzip"}}, RemoteAddr: "127.0.0.1:5555", Host: "h"}
	b.ReportAllocs()
	for b.Loop() {
		data, _ := msgpack.Marshal(q)
		var got HTTPRequest
		if err := msgpack.Unmarshal(data, &got); err != nil {
			b.Fatal(err)
		}
	}
}
