package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/internal/auth"
)

func testGate(t *testing.T) (*gate, auth.Token) {
	t.Helper()
	tok, err := auth.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	return newGate(auth.FromToken(tok, nil)), tok
}

func withCookie(id string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/overview", nil)
	if id != "" {
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: id})
	}
	return r
}

func TestGateSessions(t *testing.T) {
	g, tok := testGate(t)
	now := time.Unix(1_800_000_000, 0)
	if g.allowed(withCookie(""), now) {
		t.Fatal("a request without a session is allowed")
	}
	if _, ok, _ := g.login(strings.Repeat("ab", 32), now); ok {
		t.Fatal("a wrong token logs in")
	}
	if _, ok, _ := g.login("not hex", now); ok {
		t.Fatal("garbage logs in")
	}
	id, ok, _ := g.login(" "+tok.Hex()+"\n", now)
	if !ok || id == "" {
		t.Fatal("the token does not log in")
	}
	if !g.allowed(withCookie(id), now) {
		t.Fatal("the session is refused")
	}
	if g.allowed(withCookie(id+"x"), now) || g.allowed(withCookie("forged"), now) {
		t.Fatal("a forged session is allowed")
	}
	if g.allowed(withCookie(id), now.Add(sessionTTL+time.Second)) {
		t.Fatal("an expired session is allowed")
	}
	g.logout(withCookie(id))
	if g.allowed(withCookie(id), now) {
		t.Fatal("a session is allowed after logout")
	}
	for k := range g.sessions {
		if strings.Contains(string(k[:]), id) {
			t.Fatal("the session id itself is kept")
		}
	}
}

func TestGateBearerAndOpen(t *testing.T) {
	g, tok := testGate(t)
	now := time.Now()
	r := withCookie("")
	r.Header.Set("Authorization", "Bearer "+tok.DashboardBearer())
	if !g.allowed(r, now) {
		t.Fatal("the dashboard key is refused")
	}
	r.Header.Set("Authorization", "Bearer "+tok.Hex())
	if g.allowed(r, now) {
		t.Fatal("the cluster token is taken as a bearer key (only the derived key is)")
	}
	r.Header.Set("Authorization", "Basic "+tok.DashboardBearer())
	if g.allowed(r, now) {
		t.Fatal("a non-bearer authorization is allowed")
	}
	open := newGate(auth.None(nil))
	if !open.allowed(withCookie(""), now) {
		t.Fatal("a cluster without authentication asks for a login")
	}
	if _, ok, _ := open.login("", now); !ok {
		t.Fatal("login to an open dashboard fails")
	}
}

func TestGateLimitsWrongTokens(t *testing.T) {
	g, tok := testGate(t)
	now := time.Unix(1_800_000_000, 0)
	limited := false
	for range 20 {
		if _, _, l := g.login(strings.Repeat("cd", 32), now); l {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("20 wrong tokens at once are not limited")
	}
	if _, ok, l := g.login(tok.Hex(), now); ok || !l {
		t.Fatalf("while limited, the right token: ok %v limited %v (want refused unchecked)", ok, l)
	}
	if _, ok, _ := g.login(tok.Hex(), now.Add(3*time.Second)); !ok {
		t.Fatal("the right token is refused once the limit has passed")
	}
}

func TestGateBoundsSessions(t *testing.T) {
	g, tok := testGate(t)
	now := time.Unix(1_800_000_000, 0)
	var first string
	for i := range maxSessions + 10 {
		id, ok, _ := g.login(tok.Hex(), now.Add(time.Duration(i)*time.Millisecond))
		if !ok {
			t.Fatal("login failed")
		}
		if i == 0 {
			first = id
		}
	}
	if len(g.sessions) != maxSessions {
		t.Fatalf("%d sessions kept, want at most %d", len(g.sessions), maxSessions)
	}
	if g.allowed(withCookie(first), now) {
		t.Fatal("the oldest session survived the bound")
	}
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		origin string
		want   bool
	}{{"", true}, {"http://127.0.0.1:8265", true}, {"https://127.0.0.1:8265", true}, {"http://evil.example", false}, {"http://127.0.0.1:9999", false}} {
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8265/api/actors/ab/kill", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := sameOrigin(r); got != tc.want {
			t.Errorf("Origin %q: %v, want %v", tc.origin, got, tc.want)
		}
	}
}

func TestHistoryRing(t *testing.T) {
	h := newHistory(3)
	if got := h.last(); !got.Time.IsZero() || len(h.all()) != 0 {
		t.Fatal("an empty history has samples")
	}
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 5 {
		h.add(Sample{Time: t0.Add(time.Duration(i) * time.Second)})
	}
	all := h.all()
	if len(all) != 3 || !all[0].Time.Equal(t0.Add(2*time.Second)) || !all[2].Time.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("ring after 5 samples of 3: %v", all)
	}
	if !h.last().Time.Equal(t0.Add(4 * time.Second)) {
		t.Fatalf("last: %v", h.last().Time)
	}
}

func TestKnownTopics(t *testing.T) {
	for _, tp := range []string{"overview", "jobs", "tasks:", "tasks:ab12", "history"} {
		if !knownTopic(tp) {
			t.Errorf("%q is refused", tp)
		}
	}
	for _, tp := range []string{"", "secrets", "tasks:zz", "tasks:" + strings.Repeat("a", 33), "overview,jobs"} {
		if knownTopic(tp) {
			t.Errorf("%q is accepted", tp)
		}
	}
}
