package serve

import (
	"bytes"
	"context"
	"net/http"
	"sync/atomic"
)

// Namespace is the goray namespace of Serve's actors (controller, proxies,
// replicas).
const Namespace = "serve"

// replicaInit is what the controller gives a replica's constructor.
type replicaInit struct {
	App        string
	Deployment string
	Replica    string
	Version    string
	Args       []byte
}

// replica is the actor that hosts one instance of a deployment's struct.
type replica[T any] struct {
	inner   *T
	init    replicaInit
	ongoing atomic.Int64
}

type replicaKey struct{}

// withReplica lets handles made inside the replica (by the deployment's
// constructor or methods) find their application.
func withReplica(ctx context.Context, init replicaInit) context.Context {
	return context.WithValue(ctx, replicaKey{}, init)
}

// appOf is the application of the replica ctx runs in ("" outside one).
func appOf(ctx context.Context) string {
	if init, ok := ctx.Value(replicaKey{}).(replicaInit); ok {
		return init.App
	}
	return currentApp.Load().(string)
}

// currentApp is the application of this process's replica (a replica's
// process hosts replicas of one application at a time; set by the first
// replica), for handles whose calls have no replica context.
var currentApp atomic.Value

func init() { currentApp.Store("") }

func (r *replica[T]) enter() func() {
	r.ongoing.Add(1)
	if r.init.App != "" {
		currentApp.CompareAndSwap("", r.init.App)
	}
	return func() { r.ongoing.Add(-1) }
}

// ping answers the controller's health check with the requests running.
func (r *replica[T]) ping(ctx context.Context) (int, error) { return int(r.ongoing.Load()), nil }

// HTTPRequest is an HTTP request as a proxy passes it to a replica.
type HTTPRequest struct {
	Method     string
	URL        string // path and query
	Header     map[string][]string
	Body       []byte
	RemoteAddr string
	Host       string
}

// HTTPResponse is a replica's answer.
type HTTPResponse struct {
	Status int
	Header map[string][]string
	Body   []byte
}

func (r *replica[T]) serveHTTP(ctx context.Context, req HTTPRequest) (HTTPResponse, error) {
	defer r.enter()()
	hr, err := http.NewRequestWithContext(withReplica(ctx, r.init), req.Method, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return HTTPResponse{Status: http.StatusBadRequest, Body: []byte("serve: " + err.Error())}, nil
	}
	hr.Header = req.Header
	if hr.Header == nil {
		hr.Header = http.Header{}
	}
	hr.RemoteAddr, hr.Host = req.RemoteAddr, req.Host
	hr.ContentLength = int64(len(req.Body))
	rec := &recorder{header: http.Header{}}
	any(r.inner).(http.Handler).ServeHTTP(rec, hr)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return HTTPResponse{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}, nil
}

// recorder is the http.ResponseWriter a replica's handler writes to.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}
