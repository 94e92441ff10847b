package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/goray/goray/internal/auth"
)

// Sessions: a browser that logged in with the cluster token holds a random
// session id in a cookie; the server keeps only the ids' SHA-256 digests,
// at most maxSessions, each for sessionTTL.
const (
	sessionCookie = "goray_session"
	sessionTTL    = 12 * time.Hour
	maxSessions   = 1024
)

// gate decides who may see the dashboard.
type gate struct {
	// open: a cluster without authentication (auth.None), whose
	// dashboard asks for nothing, like its NATS.
	open bool
	// token is the cluster token; bearer the key scripts present
	// (auth.Token.DashboardBearer).
	token  auth.Token
	bearer string

	mu       sync.Mutex
	sessions map[[32]byte]time.Time // digest of the id -> expiry

	// failures slows down guessing: a few wrong tokens a second, for
	// every client together.
	failures *rate.Limiter
}

func newGate(creds *auth.Credentials) *gate {
	g := &gate{sessions: map[[32]byte]time.Time{}, failures: rate.NewLimiter(rate.Limit(2), 5)}
	tok, ok := creds.Token()
	if !ok {
		g.open = !creds.Enabled()
		return g
	}
	g.token, g.bearer = tok, tok.DashboardBearer()
	return g
}

// login checks a token typed on the login page and returns a new
// session's id. ok is false for a wrong token; limited when too many wrong
// ones came lately, and then the token is not even compared.
func (g *gate) login(typed string, now time.Time) (id string, ok, limited bool) {
	if g.open {
		return "", true, false
	}
	// While wrong tokens came too fast, nothing is compared.
	if g.failures.TokensAt(now) < 1 {
		return "", false, true
	}
	tok, err := auth.ParseToken(strings.TrimSpace(typed))
	if err != nil || tok.IsZero() || subtle.ConstantTimeCompare([]byte(tok.Hex()), []byte(g.token.Hex())) != 1 {
		g.failures.AllowN(now, 1)
		return "", false, false
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, false
	}
	id = base64.RawURLEncoding.EncodeToString(b[:])
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, exp := range g.sessions {
		if now.After(exp) {
			delete(g.sessions, k)
		}
	}
	if len(g.sessions) >= maxSessions {
		// The session closest to its end makes room.
		var oldest [32]byte
		var at time.Time
		for k, exp := range g.sessions {
			if at.IsZero() || exp.Before(at) {
				oldest, at = k, exp
			}
		}
		delete(g.sessions, oldest)
	}
	g.sessions[sha256.Sum256([]byte(id))] = now.Add(sessionTTL)
	return id, true, false
}

// logout ends the request's session.
func (g *gate) logout(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		g.mu.Lock()
		delete(g.sessions, sha256.Sum256([]byte(c.Value)))
		g.mu.Unlock()
	}
}

// allowed reports whether r is authenticated: by its session cookie or a
// bearer key.
func (g *gate) allowed(r *http.Request, now time.Time) bool {
	if g.open {
		return true
	}
	if h := r.Header.Get("Authorization"); h != "" {
		key, ok := strings.CutPrefix(h, "Bearer ")
		return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(key)), []byte(g.bearer)) == 1
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	exp, ok := g.sessions[sha256.Sum256([]byte(c.Value))]
	return ok && now.Before(exp)
}

// sameOrigin reports whether a request that changes something (POST)
// comes from the dashboard's own pages: the session cookie is SameSite
// strict already; the Origin check also covers browsers that send no
// SameSite cookie rules, and scripts with a bearer key send no Origin.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	o = strings.TrimPrefix(strings.TrimPrefix(o, "https://"), "http://")
	return o == r.Host
}
