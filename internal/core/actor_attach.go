package core

import (
	"os"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// attach answers ATTACH_ACTOR: a GCS that restarted finds the actors its
// records say are alive, and this connection takes the place of the one
// CREATE_ACTOR came on (which closed with the old GCS), so the GCS notices
// this process's death and hears of the actor's exit on it.
func (h *actorHost) attach(c *wire.Conn, req *wire.Request) {
	m := &protos.AttachActorRequest{}
	if err := unmarshalProto(req.Payload, m); err != nil {
		h.cw.reject(c, req, malformed(err))
		return
	}
	id, err := protos.UniqueIDFromBytes(m.GetActorId())
	if err != nil {
		h.cw.reject(c, req, invalidField("actor_id", err))
		return
	}
	h.mu.Lock()
	ha, ok := h.actors[id]
	if ok && ha.numRestarts == m.GetNumRestarts() {
		ha.gcsConn = c
	}
	h.mu.Unlock()
	switch {
	case !ok:
		_ = c.ReplyError(req, wire.NewError("not_found", "actor %s is not hosted by this worker (pid %d)", id.Short(), os.Getpid()))
	case ha.numRestarts != m.GetNumRestarts():
		_ = c.ReplyError(req, wire.NewError("not_found", "this worker (pid %d) hosts incarnation %d of actor %s, not %d", os.Getpid(), ha.numRestarts, id.Short(), m.GetNumRestarts()))
	default:
		_ = c.Reply(req, &protos.AttachActorReply{})
	}
}
