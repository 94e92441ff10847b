package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/objstore"
	"github.com/goray/goray/objstore/transfer"
	"github.com/goray/goray/protos"
)

// Object transfer between two nodes' stores (package objstore/transfer),
// against its floor: one raw TCP stream over the same loopback. Both
// stores live in this process, so no cluster is needed; the bytes still go
// through the kernel's TCP stack exactly as between two machines, minus
// the wire.

const (
	// transferSize is the object pulled each round, and the bytes the raw
	// stream sends each round.
	transferSize = 1 << 30
	// transferSegment is each store's segment: room for the object with
	// some to spare, as a real store would have.
	transferSegment = 1536 << 20
	// rawTCPWrite is the raw stream's write and read size.
	rawTCPWrite = 8 << 20
)

// Tuning knobs of the transfer benchmark; zero means the package default.
var (
	transferStreams = flag.Int("transfer-streams", 0, "object_transfer: parallel connections per pull (0: transfer.DefaultStreams)")
	transferChunk   = flag.Uint64("transfer-chunk", 0, "object_transfer: chunk size in bytes (0: transfer.DefaultChunkSize)")
	transferSockBuf = flag.Int("transfer-sockbuf", 0, "object_transfer: socket buffer bytes (0: transfer.DefaultSocketBuffer, negative: kernel autotuning)")
)

// benchTransfer measures raw_tcp_loopback_GB_per_s, object_transfer_GB_per_s
// and their ratio. The two alternate round by round (a raw stream of 1 GiB,
// then a pull of a 1 GiB object), so both see the same machine: loopback
// throughput on a shared VM drifts by tens of percent between runs.
func benchTransfer(ctx context.Context, h *harness) ([]result, error) {
	raw, err := newRawStream()
	if err != nil {
		return nil, fmt.Errorf("raw TCP stream: %w", err)
	}
	defer raw.close()

	src, err := newBenchStore("src")
	if err != nil {
		return nil, err
	}
	defer src.close()
	dst, err := newBenchStore("dst")
	if err != nil {
		return nil, err
	}
	defer dst.close()

	id := protos.ObjectIDFor(protos.NewUniqueID(), 1)
	off, err := src.store.Create(id, transferSize)
	if err != nil {
		return nil, err
	}
	obj := src.store.Segment().Slice(off, transferSize)
	fillPattern(obj)
	if err := src.store.Seal(id); err != nil {
		return nil, err
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := transfer.NewServer(src.store, transfer.ServerOptions{SocketBuffer: *transferSockBuf})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, transfer.ErrServerClosed) {
			log.Printf("object_transfer: Serve: %v", err)
		}
	}()
	opts := transfer.PullerOptions{Streams: *transferStreams, ChunkSize: *transferChunk, SocketBuffer: *transferSockBuf}
	p := transfer.NewPuller(dst.store, opts)
	defer p.Close()
	log.Printf("object_transfer: %d-byte object; streams %d, chunk %d, socket buffer %d (0: defaults %d, %d, %d)",
		transferSize, opts.Streams, opts.ChunkSize, opts.SocketBuffer, transfer.DefaultStreams, transfer.DefaultChunkSize, transfer.DefaultSocketBuffer)

	// The same server and puller with mutual TLS (and the handshake) on
	// their connections, as two nodes started with --tls-* run them.
	tlsAddr, tlsPuller, stopTLS, err := transferTLS(src.store, dst.store, opts)
	if err != nil {
		return nil, err
	}
	defer stopTLS()

	owner := protos.NewUniqueID()
	pullFrom := func(p *transfer.Puller, addr string) error {
		if err := p.Pull(ctx, id, addr, owner); err != nil {
			return err
		}
		return nil
	}
	pull := func() error { return pullFrom(p, l.Addr().String()) }
	// The first pull lands on never-touched pages of the destination
	// segment; it is checked, then the measured rounds reuse those pages.
	t0 := time.Now()
	if err := pull(); err != nil {
		return nil, err
	}
	first := time.Since(t0)
	doff, dsize, ok := dst.store.Get(id)
	if !ok || dsize != transferSize || !bytes.Equal(dst.store.Segment().Slice(doff, dsize), obj) {
		return nil, fmt.Errorf("pulled object differs from the source (found %v, %d bytes)", ok, dsize)
	}
	if err := dst.store.Delete(id); err != nil {
		return nil, err
	}
	log.Printf("object_transfer: first pull (fresh destination pages, checked) in %v", first.Round(time.Millisecond))

	var rawTimes, pullTimes, tlsTimes []time.Duration
	n, _, err := h.measure(ctx, "raw_tcp_loopback+object_transfer", func() error {
		t0 := time.Now()
		if err := raw.round(transferSize); err != nil {
			return fmt.Errorf("raw TCP: %w", err)
		}
		t1 := time.Now()
		if err := pull(); err != nil {
			return err
		}
		t2 := time.Now()
		if err := dst.store.Delete(id); err != nil {
			return err
		}
		t3 := time.Now()
		if err := pullFrom(tlsPuller, tlsAddr); err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		t4 := time.Now()
		if err := dst.store.Delete(id); err != nil {
			return err
		}
		rawTimes = append(rawTimes, t1.Sub(t0))
		pullTimes = append(pullTimes, t2.Sub(t1))
		tlsTimes = append(tlsTimes, t4.Sub(t3))
		return nil
	})
	if err != nil {
		return nil, err
	}
	w := len(rawTimes) - n // warm-up rounds came first
	log.Printf("raw_tcp_loopback_GB_per_s: rounds took %v", roundAll(rawTimes[w:]))
	log.Printf("object_transfer_GB_per_s: pulls took %v", roundAll(pullTimes[w:]))
	log.Printf("object_transfer_tls_GB_per_s: pulls took %v", roundAll(tlsTimes[w:]))
	gb := float64(n) * transferSize / 1e9
	rawRate := gb / sum(rawTimes[w:]).Seconds()
	pullRate := gb / sum(pullTimes[w:]).Seconds()
	tlsRate := gb / sum(tlsTimes[w:]).Seconds()
	st := p.Stats()
	log.Printf("object_transfer: puller %+v; server %+v", st, srv.Stats())
	return []result{
		{Name: "raw_tcp_loopback_GB_per_s", Value: rawRate, Unit: "GB_per_s"},
		{Name: "object_transfer_GB_per_s", Value: pullRate, Unit: "GB_per_s"},
		{Name: "object_transfer_vs_raw_tcp", Value: pullRate / rawRate, Unit: "ratio"},
		{Name: "object_transfer_tls_GB_per_s", Value: tlsRate, Unit: "GB_per_s"},
		{Name: "object_transfer_tls_vs_plain", Value: tlsRate / pullRate, Unit: "ratio"},
	}, nil
}

// transferTLS serves src's objects over mutual TLS and the transfer
// handshake, and returns the server's address and a puller into dst that
// dials it the same way.
func transferTLS(src, dst *objstore.Store, opts transfer.PullerOptions) (string, *transfer.Puller, func(), error) {
	dir, err := os.MkdirTemp("", "goray-bench-tls-")
	if err != nil {
		return "", nil, nil, err
	}
	fail := func(err error) (string, *transfer.Puller, func(), error) {
		os.RemoveAll(dir)
		return "", nil, nil, err
	}
	g, err := auth.GenerateCert(dir, "node", []string{"127.0.0.1"})
	if err != nil {
		return fail(err)
	}
	tl, err := g.Files.Load()
	if err != nil {
		return fail(err)
	}
	tok, err := auth.GenerateToken()
	if err != nil {
		return fail(err)
	}
	h := auth.FromToken(tok, tl).Handshaker(auth.LabelTransfer)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	l := auth.NewListener(raw, h, auth.Limits{}, zerolog.Nop())
	srv := transfer.NewServer(src, transfer.ServerOptions{SocketBuffer: *transferSockBuf})
	go func() { _ = srv.Serve(l) }()
	opts.Authenticator = h
	p := transfer.NewPuller(dst, opts)
	return l.Addr().String(), p, func() {
		p.Close()
		srv.Close()
		os.RemoveAll(dir)
	}, nil
}

// benchStore is a store on a segment of its own in /dev/shm, removed by
// close.
type benchStore struct {
	seg   *objstore.Segment
	store *objstore.Store
}

func newBenchStore(name string) (*benchStore, error) {
	path := fmt.Sprintf("/dev/shm/goray-bench-transfer-%d-%s", os.Getpid(), name)
	seg, err := objstore.CreateSegment(path, transferSegment)
	if err != nil {
		return nil, err
	}
	return &benchStore{seg: seg, store: objstore.NewStore(seg)}, nil
}

func (s *benchStore) close() {
	s.store.Close()
	s.seg.Close()
	if err := s.seg.Remove(); err != nil {
		log.Printf("object_transfer: %v", err)
	}
}

// fillPattern fills b with the repeating non-zero pattern of filledBytes,
// in place.
func fillPattern(b []byte) {
	for i := range min(len(b), 4093) {
		b[i] = byte(i*7 + 1)
	}
	for n := min(len(b), 4093); n < len(b); n *= 2 {
		copy(b[n:], b[:n])
	}
}

// rawStream is one loopback TCP connection; each round the writer sends
// n bytes in rawTCPWrite-byte writes from one buffer and the reader reads
// them with io.ReadFull into another, the best a single stream does.
// Kernel defaults throughout, as any program would get.
type rawStream struct {
	l      net.Listener
	rd, wr net.Conn
	start  chan int   // bytes for the writer to send
	sent   chan error // the writer's outcome
	rbuf   []byte
}

func newRawStream() (*rawStream, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	rd, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		l.Close()
		return nil, err
	}
	wr := <-accepted
	if wr == nil {
		rd.Close()
		l.Close()
		return nil, errors.New("accept failed")
	}
	s := &rawStream{l: l, rd: rd, wr: wr, start: make(chan int), sent: make(chan error, 1), rbuf: make([]byte, rawTCPWrite)}
	wbuf := make([]byte, rawTCPWrite)
	fillPattern(wbuf)
	fillPattern(s.rbuf) // fault it in
	go func() {
		for n := range s.start {
			var err error
			for n > 0 && err == nil {
				k := min(n, len(wbuf))
				_, err = wr.Write(wbuf[:k])
				n -= k
			}
			s.sent <- err
		}
	}()
	return s, nil
}

func (s *rawStream) round(n int) error {
	s.start <- n
	var err error
	for got := 0; got < n && err == nil; {
		k := min(n-got, len(s.rbuf))
		_, err = io.ReadFull(s.rd, s.rbuf[:k])
		got += k
	}
	return errors.Join(err, <-s.sent)
}

func (s *rawStream) close() {
	close(s.start)
	s.rd.Close()
	s.wr.Close()
	s.l.Close()
}
