package wire

import (
	"sync"
	"sync/atomic"

	"github.com/goray/goray/protos"
)

// Request is one incoming request or notification.
type Request struct {
	Method protos.Method
	// ID identifies the request for Reply; zero for one-way messages.
	ID uint64
	// Payload is the marshaled request message. It aliases the
	// connection's read buffer and is only valid until ServeWire returns
	// (it is set to nil then); Unmarshal or copy it before.
	Payload []byte
	// OneWay is set for notifications (Notify); they take no reply.
	OneWay bool
}

// Handler serves requests arriving on a connection.
//
// ServeWire runs on the connection's reader goroutine, so requests on one
// connection are served one at a time, in arrival order, and nothing else is
// read from the connection until it returns. It must not block: in
// particular it must not Call on the same connection (the response could
// never be read). Long-running work should be handed to another goroutine
// that answers later with c.Reply(req, ...); req stays valid for that.
type Handler interface {
	ServeWire(c *Conn, req *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c *Conn, req *Request)

// ServeWire calls f(c, req).
func (f HandlerFunc) ServeWire(c *Conn, req *Request) { f(c, req) }

// Mux dispatches requests to handlers by method. Requests for methods with
// no handler are answered with a CodeUnimplemented error (and dropped if
// one-way). Handle may be called at any time; lookups take no lock.
type Mux struct {
	mu sync.Mutex // serialises writers of m
	m  atomic.Pointer[map[protos.Method]Handler]
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{} }

// Handle registers h for method, replacing any previous handler.
func (x *Mux) Handle(method protos.Method, h Handler) {
	x.mu.Lock()
	defer x.mu.Unlock()
	// Copy-on-write keeps the per-request lookup lock-free; registration
	// is rare and happens mostly at startup.
	next := make(map[protos.Method]Handler)
	if cur := x.m.Load(); cur != nil {
		for k, v := range *cur {
			next[k] = v
		}
	}
	next[method] = h
	x.m.Store(&next)
}

// HandleFunc registers f for method.
func (x *Mux) HandleFunc(method protos.Method, f func(c *Conn, req *Request)) {
	x.Handle(method, HandlerFunc(f))
}

// ServeWire implements Handler.
func (x *Mux) ServeWire(c *Conn, req *Request) {
	if m := x.m.Load(); m != nil {
		if h, ok := (*m)[req.Method]; ok {
			h.ServeWire(c, req)
			return
		}
	}
	if !req.OneWay {
		_ = c.ReplyError(req, &RemoteError{Code: CodeUnimplemented, Message: "no handler for method " + req.Method.String()})
	}
}
