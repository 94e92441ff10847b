// Package nodecall asks every alive node's raylet the same question over
// an authenticated wire connection, in parallel: the goray CLI's memory
// report and runtime env listing are made of the answers.
package nodecall

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// NodeTimeout bounds one node's answer when ctx has no deadline.
const NodeTimeout = 15 * time.Second

// Answer is one node's reply, or why there is none.
type Answer[R proto.Message] struct {
	Node  *protos.NodeInfo
	Reply R
	Err   error
}

// Call sends method with req to the raylet of every alive node among
// nodes and returns their answers in nodes' order. local, when set, is a
// connection to the raylet of node localID, used instead of dialling it.
// a authenticates the connections (*auth.Handshaker).
func Call[R proto.Message](ctx context.Context, nodes []*protos.NodeInfo, log zerolog.Logger, a wire.Authenticator,
	method protos.Method, req proto.Message, newReply func() R, localID []byte, local *wire.Conn) []Answer[R] {
	var out []Answer[R]
	for _, n := range nodes {
		if n.GetState() == protos.NodeInfo_ALIVE {
			out = append(out, Answer[R]{Node: n})
		}
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans := &out[i]
			ctx := ctx
			if _, ok := ctx.Deadline(); !ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, NodeTimeout)
				defer cancel()
			}
			c := local
			if c == nil || string(ans.Node.GetNodeId()) != string(localID) {
				// Other nodes' raylets may be on other machines.
				ep := ans.Node.GetRayletTcpEndpoint()
				if ep == "" {
					ep = ans.Node.GetRayletEndpoint()
				}
				var err error
				if c, err = wire.Dial(ctx, ep, nil, wire.WithLogger(log), wire.WithAuthenticator(a)); err != nil {
					ans.Err = err
					return
				}
				defer c.Close()
			}
			reply := newReply()
			if err := c.Call(ctx, method, req, reply); err != nil {
				ans.Err = err
				return
			}
			ans.Reply = reply
		}()
	}
	wg.Wait()
	return out
}
