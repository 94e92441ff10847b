package dashboard

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/jobs"
)

// DefaultPort is Ray's dashboard port.
const DefaultPort = 8265

// Options configure a dashboard.
type Options struct {
	// Addr is host:port to listen on; port 0 picks a free one. Default
	// 127.0.0.1:8265: loopback, unless the operator says otherwise.
	Addr string
	// Credentials are the cluster's: with a token, the dashboard asks
	// for it; with TLS files, it serves HTTPS with the node certificate.
	Credentials *auth.Credentials
	// State reads the cluster: the GCS, and the raylets for workers,
	// objects and logs.
	State stateapi.Source
	// Jobs reaches the job server; nil leaves the jobs' submissions out.
	Jobs *jobs.Client
	// SampleInterval is how often the charts' history takes a sample
	// (default 5 s); History how long it keeps them (default 1 h).
	SampleInterval time.Duration
	History        time.Duration
	// PollInterval is how often open pages get news (default 1 s).
	PollInterval time.Duration
	Logger       zerolog.Logger
}

// Server is a running dashboard.
type Server struct {
	opts    Options
	gate    *gate
	hub     *hub
	history *history
	http    *http.Server
	ln      net.Listener
	scheme  string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

//go:embed web
var webFS embed.FS

// New checks opts and returns a dashboard ready to Start.
func New(opts Options) (*Server, error) {
	if opts.Credentials == nil {
		return nil, errors.New("dashboard: Options.Credentials is required (auth.None(nil) for a cluster without authentication)")
	}
	if opts.State.GCS == nil {
		return nil, errors.New("dashboard: Options.State.GCS is required")
	}
	if opts.Addr == "" {
		opts.Addr = fmt.Sprintf("127.0.0.1:%d", DefaultPort)
	}
	if opts.SampleInterval <= 0 {
		opts.SampleInterval = 5 * time.Second
	}
	if opts.History <= 0 {
		opts.History = time.Hour
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: opts, gate: newGate(opts.Credentials), ctx: ctx, cancel: cancel, scheme: "http"}
	s.history = newHistory(int(opts.History / opts.SampleInterval))
	s.hub = newHub(s, opts.PollInterval)
	return s, nil
}

// Start listens and serves; it returns once the port is bound.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("dashboard: listen on %s: %w", s.opts.Addr, err)
	}
	if t := s.opts.Credentials.TLS(); t != nil {
		// Browsers hold no client certificate: the token is the
		// authentication, TLS keeps it private.
		cfg := t.ServerConfig().Clone()
		cfg.ClientAuth = tls.NoClientCert
		ln = tls.NewListener(ln, cfg)
		s.scheme = "https"
	} else if host, _, _ := net.SplitHostPort(ln.Addr().String()); !net.ParseIP(host).IsLoopback() {
		s.opts.Logger.Warn().Str("addr", ln.Addr().String()).Msg("the dashboard serves plain HTTP beyond loopback: the token travels in clear at login (give the cluster TLS files for HTTPS)")
	}
	s.ln = ln
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: nil, BaseContext: func(net.Listener) context.Context { return s.ctx }}
	s.wg.Go(func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error().Err(err).Msg("dashboard stopped serving")
		}
	})
	s.wg.Go(func() { s.sample(s.ctx) })
	s.opts.Logger.Info().Str("url", s.URL()).Msg("dashboard serving")
	return nil
}

// URL is where the dashboard answers.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return s.scheme + "://" + s.ln.Addr().String()
}

// Shutdown stops serving and ends open streams; it may be called more
// than once.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		s.hub.close()
		s.cancel()
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.http.Shutdown(ctx)
			cancel()
			_ = s.http.Close()
		}
		s.wg.Wait()
	})
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(static)
	mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginPost)
	mux.HandleFunc("POST /logout", s.logoutPost)
	mux.HandleFunc("GET /{$}", s.authed(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	}))
	s.apiRoutes(mux)
	return securityHeaders(mux)
}

// authed serves h to authenticated requests; pages send others to the
// login page, the API answers 401.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.gate.allowed(r, time.Now()) {
			if r.URL.Path == "/" {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			writeError(w, http.StatusUnauthorized, "log in with the cluster token (POST /login) or send Authorization: Bearer <key> (goray dashboard-key)")
			return
		}
		if r.Method == http.MethodPost && !sameOrigin(r) {
			writeError(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
		h(w, r)
	}
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if s.gate.allowed(r, time.Now()) {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	writeLogin(w, http.StatusOK, "")
}

func (s *Server) loginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		writeLogin(w, http.StatusBadRequest, "the login form did not parse")
		return
	}
	id, ok, limited := s.gate.login(r.PostForm.Get("token"), time.Now())
	switch {
	case limited:
		writeLogin(w, http.StatusTooManyRequests, "Too many wrong tokens lately: wait a few seconds.")
		return
	case !ok:
		s.opts.Logger.Warn().Str("remote", r.RemoteAddr).Msg("dashboard login with a wrong token")
		writeLogin(w, http.StatusUnauthorized, "That is not this cluster's token.")
		return
	}
	if id != "" {
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true,
			Secure: s.scheme == "https", SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second)})
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logoutPost(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
		return
	}
	s.gate.logout(r)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
