package gcs

import (
	"context"
	"fmt"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"google.golang.org/protobuf/proto"
)

// The wire placer's side of packed hosts: one connection to the host's
// worker carries the CREATE_ACTOR and KILL_ACTOR requests of all its
// actors (many in flight at once, with wire.Conn.Go) and their
// ACTOR_EXITED reports, routed by actor id.

func (p *wirePlacer) connectHost(ctx context.Context, worker *protos.Address, exited func(actor protos.UniqueID, reason string)) (actorConn, error) {
	h := wire.HandlerFunc(func(c *wire.Conn, r *wire.Request) {
		if r.Method != protos.Method_ACTOR_EXITED {
			if !r.OneWay {
				_ = c.ReplyError(r, wire.NewError(wire.CodeUnimplemented, "the GCS serves only ACTOR_EXITED on a packed host's connection, not %v", r.Method))
			}
			return
		}
		m := &protos.ActorExitedRequest{}
		err := proto.Unmarshal(r.Payload, m)
		var id protos.UniqueID
		if err == nil {
			id, err = protos.UniqueIDFromBytes(m.GetActorId())
		}
		if err != nil {
			if !r.OneWay {
				_ = c.ReplyError(r, wire.NewError("malformed", "ACTOR_EXITED on a packed host's connection: %v", err))
			}
			return
		}
		exited(id, m.GetReason())
		if !r.OneWay {
			_ = c.Reply(r, &protos.ActorExitedReply{})
		}
	})
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	c, err := p.dial(dctx, p.workerEndpoint(worker), h)
	cancel()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = c.Close()
		return nil, ErrClosed
	}
	p.workers[c] = struct{}{}
	p.mu.Unlock()
	go func() {
		<-c.Done()
		p.mu.Lock()
		delete(p.workers, c)
		p.mu.Unlock()
	}()
	return c, nil
}

func (p *wirePlacer) createOn(conn actorConn, req *protos.CreateActorRequest, done func(*protos.CreateActorReply, error)) {
	c, ok := conn.(*wire.Conn)
	if !ok {
		done(nil, fmt.Errorf("%w: packed host connection of type %T", ErrInternal, conn))
		return
	}
	err := c.Go(protos.Method_CREATE_ACTOR, req, func(payload []byte, err error) {
		if err != nil {
			done(nil, err)
			return
		}
		rep := &protos.CreateActorReply{}
		if err := proto.Unmarshal(payload, rep); err != nil {
			done(nil, wire.NewError("malformed", "CREATE_ACTOR reply: %v", err))
			return
		}
		done(rep, nil)
	})
	if err != nil {
		done(nil, err)
	}
}

func (p *wirePlacer) killOn(conn actorConn, req *protos.KillActorRequest, done func(error)) {
	c, ok := conn.(*wire.Conn)
	if !ok {
		done(fmt.Errorf("%w: packed host connection of type %T", ErrInternal, conn))
		return
	}
	if err := c.Go(protos.Method_KILL_ACTOR, req, func(_ []byte, err error) { done(err) }); err != nil {
		done(err)
	}
}
