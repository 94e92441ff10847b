package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/stateapi"
)

// startDashboard runs a real GCS (embedded NATS) and a dashboard on it.
func startDashboard(t *testing.T) (*Server, auth.Token) {
	t.Helper()
	tok, err := auth.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	creds := auth.FromToken(tok, nil)
	g, err := gcs.NewServer(gcs.Options{StoreDir: t.TempDir(), Credentials: creds, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Shutdown)
	opts, err := creds.NATSOptions(auth.RoleDriver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gcs.Dial(ctx, g.ClientURL(), zerolog.Nop(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s, err := New(Options{Addr: "127.0.0.1:0", Credentials: creds, State: stateapi.Source{GCS: c, Log: zerolog.Nop()},
		PollInterval: 20 * time.Millisecond, SampleInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s, tok
}

func get(t *testing.T, url, key string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rep, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestStreamsAndShutdown: several streams share the poller and get each
// topic at once; the API answers JSON; Shutdown ends open streams.
func TestStreamsAndShutdown(t *testing.T) {
	s, tok := startDashboard(t)
	key := tok.DashboardBearer()
	rep := get(t, s.URL()+"/api/overview", key)
	var o Overview
	if err := json.NewDecoder(rep.Body).Decode(&o); err != nil || rep.StatusCode != http.StatusOK {
		t.Fatalf("overview: %d %v", rep.StatusCode, err)
	}
	rep.Body.Close()
	if rep := get(t, s.URL()+"/api/stream?topics=secrets", key); rep.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown topic: HTTP %d", rep.StatusCode)
	}
	type event struct{ name, data string }
	streams := make([]chan event, 3)
	for i := range streams {
		rep := get(t, s.URL()+"/api/stream?topics=overview,nodes,history", key)
		if rep.StatusCode != http.StatusOK || !strings.HasPrefix(rep.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("stream: HTTP %d %s", rep.StatusCode, rep.Header.Get("Content-Type"))
		}
		ch := make(chan event, 64)
		streams[i] = ch
		go func() {
			defer close(ch)
			defer rep.Body.Close()
			sc := bufio.NewScanner(rep.Body)
			var name string
			for sc.Scan() {
				l := sc.Text()
				if v, ok := strings.CutPrefix(l, "event: "); ok {
					name = v
				} else if v, ok := strings.CutPrefix(l, "data: "); ok {
					ch <- event{name, v}
				}
			}
		}()
	}
	for i, ch := range streams {
		seen := map[string]bool{}
		deadline := time.After(10 * time.Second)
		for len(seen) < 3 {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("stream %d ended early", i)
				}
				if !json.Valid([]byte(ev.data)) {
					t.Fatalf("stream %d: %s is not JSON: %s", i, ev.name, ev.data)
				}
				seen[ev.name] = true
			case <-deadline:
				t.Fatalf("stream %d got %v, want overview, nodes and history", i, seen)
			}
		}
	}
	s.Shutdown()
	for i, ch := range streams {
		deadline := time.After(10 * time.Second)
		for open := true; open; {
			select {
			case _, open = <-ch:
			case <-deadline:
				t.Fatalf("stream %d still open after Shutdown", i)
			}
		}
	}
	s.Shutdown() // idempotent
}

// TestLoginFlow: the login form sets a session cookie that opens the API.
func TestLoginFlow(t *testing.T) {
	s, tok := startDashboard(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	rep, err := noRedirect.Get(s.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	rep.Body.Close()
	if rep.StatusCode != http.StatusSeeOther || rep.Header.Get("Location") != "/login" {
		t.Fatalf("/ without a session: %d to %q", rep.StatusCode, rep.Header.Get("Location"))
	}
	rep, err = noRedirect.PostForm(s.URL()+"/login", map[string][]string{"token": {strings.Repeat("0f", 32)}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rep.Body)
	rep.Body.Close()
	if rep.StatusCode != http.StatusUnauthorized || len(rep.Cookies()) != 0 || !strings.Contains(string(body), "not this cluster") {
		t.Fatalf("wrong token: %d, cookies %v", rep.StatusCode, rep.Cookies())
	}
	rep, err = noRedirect.PostForm(s.URL()+"/login", map[string][]string{"token": {tok.Hex()}})
	if err != nil {
		t.Fatal(err)
	}
	rep.Body.Close()
	cookies := rep.Cookies()
	if rep.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: %d, cookies %+v", rep.StatusCode, cookies)
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/api/nodes", nil)
	req.AddCookie(cookies[0])
	if rep, err = http.DefaultClient.Do(req); err != nil || rep.StatusCode != http.StatusOK {
		t.Fatalf("API with the session: %v %v", rep.StatusCode, err)
	}
	rep.Body.Close()
	// A cross-origin POST is refused even with the session.
	req, _ = http.NewRequest(http.MethodPost, s.URL()+"/api/actors/abcd/kill", nil)
	req.AddCookie(cookies[0])
	req.Header.Set("Origin", "http://evil.example")
	if rep, err = http.DefaultClient.Do(req); err != nil || rep.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin kill: %v %v", rep.StatusCode, err)
	}
	rep.Body.Close()
}
