package gcs

import (
	"cmp"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet/scheduling"
	"google.golang.org/protobuf/proto"
)

// DefaultNodeTimeout is how long a node may go without a NodeReport before
// the GCS declares it DEAD.
const DefaultNodeTimeout = 10 * time.Second

// nodeRestartGrace is the least time a node known to the last GCS run has
// to report to a restarted GCS.
const nodeRestartGrace = 10 * time.Second

// nodeManager owns the cluster membership table.
//
// Registrations, unregistrations and deaths are persisted; the periodic
// reports are not (they would turn every raylet heartbeat into a disk
// write), so after a GCS restart a node's resources are as of its last
// registration until its next report.
type nodeManager struct {
	bucketState
	peers
	env     *managerEnv
	timeout time.Duration
	nodes   map[protos.NodeID]*nodeEntry
	stop    chan struct{}
	// spreadIndex is the SPREAD policy's round-robin cursor (node_pick.go).
	spreadIndex int
}

type nodeEntry struct {
	info     *protos.NodeInfo
	lastSeen time.Time
	// placed is what actors placed here since the node's last report took.
	placed scheduling.Resources
	// total and avail are info's resources for the scheduling policies,
	// converted once per report; ok is false if they did not convert.
	total, avail scheduling.Resources
	resOK        bool
}

// setInfo records a node's latest state and its resources in scheduling
// form.
func (n *nodeEntry) setInfo(info *protos.NodeInfo) {
	n.info = info
	var err1, err2 error
	n.total, err1 = scheduling.FromAmounts(info.GetTotal().GetAmounts())
	n.avail, err2 = scheduling.FromAmounts(info.GetAvailable().GetAmounts())
	n.resOK = err1 == nil && err2 == nil
}

// nodeReport is a NodeReport forwarded from the report subscription.
type nodeReport struct{ info *protos.NodeInfo }

// livenessTick asks the manager to look for nodes that stopped reporting.
type livenessTick struct{}

func newNodeManager(env *managerEnv, timeout time.Duration) actor.Producer {
	return func() actor.Actor { return &nodeManager{env: env, timeout: timeout} }
}

func (m *nodeManager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		m.peers.started(ctx)
		m.load()
		m.startTicker(ctx)
	case *actor.Stopping, *actor.Restarting:
		m.stopTicker()
	case readyRequest:
		m.respondReady(ctx)
	case *protos.RegisterNodeRequest:
		ctx.Respond(&protos.RegisterNodeReply{Error: m.register(msg.GetNode())})
	case *protos.UnregisterNodeRequest:
		ctx.Respond(&protos.UnregisterNodeReply{Error: m.unregister(msg.GetNodeId())})
	case *protos.ListNodesRequest:
		nodes, e := m.list()
		ctx.Respond(&protos.ListNodesReply{Nodes: nodes, Error: e})
	case nodeReport:
		m.report(msg.info)
	case livenessTick:
		m.checkLiveness(time.Now())
	case pickNodeRequest:
		ctx.Respond(m.pick(msg))
	case memberGone:
		m.memberGone(msg)
	case unplaced:
		m.unplace(msg)
	case placeBundlesRequest:
		ctx.Respond(m.placeBundles(msg))
	}
}

func (m *nodeManager) load() {
	m.nodes = make(map[protos.NodeID]*nodeEntry)
	now := time.Now()
	m.open(m.env, BucketNodes, "goray GCS node table: node id (hex) -> NodeInfo", func(key string, value []byte) error {
		id, info, err := decodeNodeRecord(key, value)
		if err != nil {
			skipRecord(m.env.log, err)
			return nil
		}
		// Nodes alive at the last GCS run get a full timeout, and at
		// least nodeRestartGrace, to report to the new one before being
		// declared dead: their NATS clients reconnect first, and a NATS
		// cluster that lost a server may take seconds to serve again.
		n := &nodeEntry{lastSeen: now.Add(max(0, nodeRestartGrace-m.timeout))}
		n.setInfo(info)
		m.nodes[id] = n
		return nil
	})
}

// startTicker drives liveness checks from outside the mailbox: the actor
// itself never blocks waiting for time to pass.
func (m *nodeManager) startTicker(ctx actor.Context) {
	m.stopTicker()
	interval := min(max(m.timeout/4, 5*time.Millisecond), time.Second)
	stop := make(chan struct{})
	m.stop = stop
	root, self := ctx.ActorSystem().Root, ctx.Self()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				root.Send(self, livenessTick{})
			}
		}
	}()
}

func (m *nodeManager) stopTicker() {
	if m.stop != nil {
		close(m.stop)
		m.stop = nil
	}
}

func (m *nodeManager) register(info *protos.NodeInfo) *protos.GcsError {
	if e := m.unavailable(); e != nil {
		return e
	}
	if info == nil {
		return gcsErrorf(ErrInvalid, "register node: no node info")
	}
	id, e := parseID("node id", info.GetNodeId())
	if e != nil {
		return e
	}
	info = proto.CloneOf(info)
	info.State = protos.NodeInfo_ALIVE
	if info.StartTimeUnixMs == 0 {
		info.StartTimeUnixMs = time.Now().UnixMilli()
	}
	if err := m.putProto(id.String(), info); err != nil {
		return toGcsError(err)
	}
	n := &nodeEntry{lastSeen: time.Now()}
	n.setInfo(info)
	m.nodes[id] = n
	m.env.log.Info().Str("node", id.Short()).Str("host", info.GetHostname()).Bool("head", info.GetIsHead()).Msg("node registered")
	m.env.publish(SubjectNodeEvents, info)
	if info.GetIsHead() {
		m.replaceHead(id)
	}
	return nil
}

// replaceHead declares dead the head nodes of earlier runs still ALIVE in
// the table when a head registers: a cluster has one head, so the old
// one's raylet died with its process (the head restarted). Its actors are
// restarted now rather than after the node timeout.
func (m *nodeManager) replaceHead(head protos.NodeID) {
	for id, n := range m.nodes {
		if id != head && n.info.GetIsHead() && n.info.GetState() == protos.NodeInfo_ALIVE {
			if e := m.markDead(id, n, whyReplacedHead); e != nil {
				m.env.log.Error().Str("node", id.Short()).Str("error", e.GetMessage()).Msg("mark the old head dead")
			}
		}
	}
}

func (m *nodeManager) unregister(rawID []byte) *protos.GcsError {
	if e := m.unavailable(); e != nil {
		return e
	}
	id, e := parseID("node id", rawID)
	if e != nil {
		return e
	}
	n, ok := m.nodes[id]
	if !ok {
		return gcsErrorf(ErrNotFound, "node %s is not registered", id)
	}
	if n.info.GetState() == protos.NodeInfo_DEAD {
		return nil
	}
	// Kept as DEAD rather than deleted: like Ray, the node list shows
	// nodes that left, which is how an operator learns a node went away.
	return m.markDead(id, n, whyUnregistered)
}

func (m *nodeManager) markDead(id protos.NodeID, n *nodeEntry, why string) *protos.GcsError {
	info := proto.CloneOf(n.info)
	info.State = protos.NodeInfo_DEAD
	if err := m.putProto(id.String(), info); err != nil {
		return toGcsError(err)
	}
	n.info = info
	// A node that left cleanly is routine; one that went silent is not.
	ev := m.env.log.Warn()
	if why == whyUnregistered || why == whyLeft {
		ev = m.env.log.Info()
	}
	ev.Str("node", id.Short()).Str("host", info.GetHostname()).Str("reason", why).Msg("node dead")
	m.env.publish(SubjectNodeEvents, info)
	m.tell(nodeDied{node: id})
	return nil
}

func (m *nodeManager) list() ([]*protos.NodeInfo, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return nil, e
	}
	out := make([]*protos.NodeInfo, 0, len(m.nodes))
	for _, n := range m.nodes {
		// Entries are replaced, never mutated in place, so the reply can
		// share them with the goroutine that encodes it.
		out = append(out, n.info)
	}
	sortNodes(out)
	return out, nil
}

func sortNodes(nodes []*protos.NodeInfo) {
	slices.SortFunc(nodes, func(a, b *protos.NodeInfo) int {
		return cmp.Or(
			cmp.Compare(a.GetStartTimeUnixMs(), b.GetStartTimeUnixMs()),
			slices.Compare(a.GetNodeId(), b.GetNodeId()),
		)
	})
}

// report records a raylet's latest view of itself. A report from a node the
// GCS does not know (its registration was lost, e.g. a GCS on a fresh
// store) registers it; a report from a DEAD node is ignored, because once
// the cluster has been told a node died its tasks have been given up on and
// the raylet must register again to rejoin.
func (m *nodeManager) report(info *protos.NodeInfo) {
	if m.loadErr != nil {
		return
	}
	id, e := parseID("node id", info.GetNodeId())
	if e != nil {
		return
	}
	n, ok := m.nodes[id]
	if !ok {
		if e := m.register(info); e != nil {
			m.env.log.Warn().Str("node", id.Short()).Str("error", e.GetMessage()).Msg("register node from report")
		}
		return
	}
	if n.info.GetState() == protos.NodeInfo_DEAD {
		m.env.log.Debug().Str("node", id.Short()).Msg("ignore report from dead node")
		return
	}
	info.State = protos.NodeInfo_ALIVE
	if info.StartTimeUnixMs == 0 {
		info.StartTimeUnixMs = n.info.GetStartTimeUnixMs()
	}
	n.setInfo(info)
	n.lastSeen = time.Now()
	n.placed = nil
}

func (m *nodeManager) checkLiveness(now time.Time) {
	if m.loadErr != nil {
		return
	}
	for id, n := range m.nodes {
		if n.info.GetState() == protos.NodeInfo_ALIVE && now.Sub(n.lastSeen) > m.timeout {
			// On a store error the node stays ALIVE and the next tick
			// retries, so a death is never announced without being saved.
			if e := m.markDead(id, n, "no report for "+m.timeout.String()); e != nil {
				m.env.log.Error().Str("node", id.Short()).Str("error", e.GetMessage()).Msg("mark node dead")
			}
		}
	}
}
