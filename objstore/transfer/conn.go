package transfer

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/goray/goray/protos"
)

// conn is a puller's connection to one server. It carries one request at a
// time: request, reply header, then the reply's data.
type conn struct {
	nc   net.Conn
	addr string
	buf  []byte
	// reused: taken from the pool, so the server may have closed it while
	// idle; answered: it has answered since. Together they tell a stale
	// connection from a server failing mid-pull.
	reused, answered bool
	// broken: a cancellation may still set a past deadline on it, so it
	// must not be pooled.
	broken bool
}

// aLongTimeAgo is a deadline that makes blocked reads and writes return
// at once.
var aLongTimeAgo = time.Unix(1, 0)

func dial(ctx context.Context, addr string, timeout time.Duration, sockBuf int, a Authenticator) (*conn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tuneConn(nc, sockBuf)
	if a != nil {
		actx, cancel := context.WithTimeout(ctx, timeout)
		nc, err = a.Client(actx, nc)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	return &conn{nc: nc, addr: addr}, nil
}

func (c *conn) close() { c.nc.Close() }

// watch makes ctx's end interrupt whatever I/O is blocked on c. The
// returned func must be called when the I/O is over.
func (c *conn) watch(ctx context.Context) func() {
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(aLongTimeAgo) })
	return func() {
		if !stop() {
			c.broken = true
		}
	}
}

// roundTrip sends req and reads the reply header, within timeout.
func (c *conn) roundTrip(ctx context.Context, timeout time.Duration, req *protos.PullChunkRequest, reply *protos.PullChunkReply) error {
	if err := c.nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	defer c.watch(ctx)()
	// After the deadline is set, so that a cancellation whose callback ran
	// before it is not lost.
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	if c.buf, err = appendMessage(c.buf, req); err != nil {
		return err
	}
	if _, err := c.nc.Write(c.buf); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	reply.Reset()
	if c.buf, err = readMessage(c.nc, c.buf, reply); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read reply: %w", err)
	}
	c.answered = true
	return nil
}

// readData reads a reply's data straight into dst, the object's block in
// the shared-memory segment, within timeout. The deadline is set anew
// since the puller may have spent a while between header and data (the
// first chunk's wait for the store to make room).
func (c *conn) readData(ctx context.Context, timeout time.Duration, dst []byte) error {
	if err := c.nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	defer c.watch(ctx)()
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := io.ReadFull(c.nc, dst); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read %d data bytes: %w", len(dst), err)
	}
	return nil
}

// discard reads and drops n data bytes, leaving the connection between
// replies.
func (c *conn) discard(ctx context.Context, n uint64) error {
	if n == 0 {
		return nil
	}
	defer c.watch(ctx)()
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, uint64(len(buf)))
		if _, err := io.ReadFull(c.nc, buf[:k]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // mid-reply: not a clean end
			}
			return fmt.Errorf("drain %d data bytes: %w", n, err)
		}
		n -= k
	}
	return nil
}
