package serve

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goray/goray/sdk"
)

// The HTTP proxy: an actor per node that listens for HTTP, matches a
// request's path against the applications' route prefixes (longest
// first), and passes it to a replica of the application's ingress,
// chosen as handle calls choose. A request whose replica died on the way
// is sent again to another when it is idempotent (GET, HEAD, OPTIONS);
// otherwise it fails with 503 and says why.

// maxRequestBody bounds the body a proxy reads from one request.
const maxRequestBody = 16 << 20

// ProxyConfig places a proxy.
type ProxyConfig struct {
	Node string // hex node id
	Host string
	Port int // 0: a free port
}

type proxy struct {
	cfg    ProxyConfig
	ln     net.Listener
	srv    *http.Server
	mu     sync.RWMutex
	routes []Route
}

var (
	proxyClass = sdk.RegisterActor1("serve.Proxy", newProxy)
	proxyAddr  = sdk.NewMethod0(proxyClass, "Addr", func(p *proxy, ctx context.Context) (string, error) { return p.ln.Addr().String(), nil })
)

func newProxy(ctx context.Context, cfg ProxyConfig) (*proxy, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("serve proxy on node %.8s: listen: %w", cfg.Node, err)
	}
	p := &proxy{cfg: cfg, ln: ln}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	go p.follow()
	return p, nil
}

// follow registers the proxy with the controller and keeps its routes.
func (p *proxy) follow() {
	registered := false
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := controllerHandle(ctx)
		if err == nil && !registered {
			_, err = ctrlRegisterProxy.Remote(ctx, c, ProxyInfo{Node: p.cfg.Node, Addr: p.ln.Addr().String()}).Get(ctx)
			registered = err == nil
		}
		if err == nil {
			var rs []Route
			if rs, err = ctrlRoutes.Remote(ctx, c).Get(ctx); err == nil {
				p.mu.Lock()
				p.routes = rs
				p.mu.Unlock()
			}
		}
		cancel()
		if err != nil {
			log.Printf("serve proxy: %v", err)
		}
		time.Sleep(time.Second)
	}
}

func (p *proxy) route(path string) (Route, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, r := range p.routes {
		if path == r.Prefix || strings.HasPrefix(path, strings.TrimSuffix(r.Prefix, "/")+"/") || r.Prefix == "/" {
			return r, true
		}
	}
	return Route{}, false
}

func idempotent(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := p.route(r.URL.Path)
	if !ok {
		http.Error(w, fmt.Sprintf("serve: no application serves %s", r.URL.Path), http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		http.Error(w, "serve: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	ops, err := registry.get(rt.Ingress)
	if err != nil {
		http.Error(w, "serve: "+err.Error(), http.StatusInternalServerError)
		return
	}
	req := HTTPRequest{Method: r.Method, URL: r.URL.RequestURI(), Header: r.Header, Body: body, RemoteAddr: r.RemoteAddr, Host: r.Host}
	tries := 1
	if idempotent(r.Method) {
		tries = 3
	}
	var rep HTTPResponse
	for try := 1; ; try++ {
		var ref replicaRef
		var done func(bool)
		if ref, done, err = routes.pick(r.Context(), rt.App, rt.Ingress); err == nil {
			rep, err = ops.callHTTP(r.Context(), ref, req)
			done(missingReplica(err))
		}
		// A replica that died under the request: an idempotent one goes
		// to another (the failed one is passed over a while).
		if err == nil || try >= tries || !missingReplica(err) {
			break
		}
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("serve: application %s, deployment %s: %v", rt.App, rt.Ingress, err), http.StatusServiceUnavailable)
		return
	}
	for k, vs := range rep.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(rep.Status)
	_, _ = w.Write(rep.Body)
}
