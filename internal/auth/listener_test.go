package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func checkFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func listen(t *testing.T, h *Handshaker, limits Limits) *Listener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, h, limits, zerolog.Nop())
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func dialAuth(t *testing.T, l *Listener, h *Handshaker) (net.Conn, error) {
	t.Helper()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.Client(ctx, nc)
}

// closedByPeer reports whether the server closed c (a read sees EOF or a
// reset rather than timing out).
func closedByPeer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Read(make([]byte, 64))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestListenerAcceptsOnlyAuthenticated(t *testing.T) {
	key := testToken(t).WireKey()
	h := NewHandshaker(key, LabelWire, nil)
	l := listen(t, h, Limits{})
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	if _, err := dialAuth(t, l, NewHandshaker(testToken(t).WireKey(), LabelWire, nil)); !errors.Is(err, ErrDenied) {
		t.Fatalf("wrong key: %v, want ErrDenied", err)
	}
	c, err := dialAuth(t, l, h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case sc := <-accepted:
		defer sc.Close()
		if ac, ok := sc.(*Conn); !ok || ac.Plain() == nil {
			t.Fatalf("accepted %T; want an *auth.Conn over a plain socket", sc)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the authenticated connection was not accepted")
	}
	if len(accepted) != 0 {
		t.Fatal("the refused connection was accepted")
	}
	st := l.Stats()
	if st.Accepted != 1 || st.Failed != 1 {
		t.Errorf("stats %+v; want 1 accepted, 1 failed", st)
	}
}

// Idle connections that never authenticate use up only MaxPending places;
// later ones are closed at once, and a place frees when a handshake ends.
func TestListenerBoundsPendingHandshakes(t *testing.T) {
	h := NewHandshaker(testToken(t).WireKey(), LabelWire, nil)
	l := listen(t, h, Limits{MaxPending: 2, MaxPendingPerPeer: 2})
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		// Read the hello, so the handshake is under way.
		if _, err := io.ReadFull(c, make([]byte, helloSize)); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 5*time.Second, func() error {
		if n := l.Stats().Pending; n != 2 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	extra, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedByPeer(extra) {
		t.Fatal("a connection beyond MaxPending was not closed")
	}
	if st := l.Stats(); st.Refused != 1 {
		t.Errorf("stats %+v; want 1 refused", st)
	}
	idle[0].Close()
	checkFor(t, 5*time.Second, func() error {
		if n := l.Stats().Pending; n != 1 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	go func() { _, _ = l.Accept() }()
	c, err := dialAuth(t, l, h)
	if err != nil {
		t.Fatalf("after a place freed: %v", err)
	}
	c.Close()
	idle[1].Close()
}

func TestListenerBoundsConnsPerPeer(t *testing.T) {
	h := NewHandshaker(testToken(t).WireKey(), LabelWire, nil)
	l := listen(t, h, Limits{MaxConnsPerPeer: 1})
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	first, err := dialAuth(t, l, h)
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	second, err := dialAuth(t, l, h)
	if err != nil {
		t.Fatal(err) // the handshake passes; then the connection is closed
	}
	if !closedByPeer(second) {
		t.Fatal("a connection beyond MaxConnsPerPeer was not closed")
	}
	// Closing the first gives its place back.
	sc.Close()
	first.Close()
	checkFor(t, 5*time.Second, func() error {
		c, err := dialAuth(t, l, h)
		if err != nil {
			return err
		}
		defer c.Close()
		select {
		case sc := <-accepted:
			sc.Close()
			return nil
		case <-time.After(200 * time.Millisecond):
			return errors.New("not accepted")
		}
	})
}

func TestListenerClose(t *testing.T) {
	l := listen(t, nil, Limits{})
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if err := l.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}
