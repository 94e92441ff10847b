package gcs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet/scheduling"
)

// pgManager owns the placement group table. A group's creation and
// removal are stored before they are answered; its state changes are
// written without waiting for the store's acknowledgement (bucketState.
// putProtoAsync): groups come and go at thousands per second, and a state
// change lost with the NATS server only makes the next GCS redo the
// group's reservation (resumeReservation).
// Creating a group is Ray's
// two-phase reservation: the node manager places the bundles on nodes
// (scheduling.PlaceBundles over the cluster view), every raylet concerned
// prepares its bundles (sets the resources aside, all or none), and only
// when all have prepared are they committed; if one cannot, the prepared
// ones are cancelled and the group waits to be tried again. So a group
// holds all of its bundles or none.
//
// The network side runs in goroutines (never in the mailbox); results come
// back as messages, tagged with the group's epoch so a stale attempt is
// recognised.
type pgManager struct {
	bucketState
	env      *managerEnv
	shared   *pgShared
	groups   map[protos.UniqueID]*pgEntry
	root     *actor.RootContext
	self     *actor.PID
	epochSeq uint64
}

// pgShared is what the manager needs of the rest of the GCS.
type pgShared struct {
	nodes, actors *actor.PID
	// reserver reaches the raylets; nil when the GCS has no raylet
	// transport (some unit tests), and groups then stay pending.
	reserver bundleReserver
}

// bundleReserver runs the raylet side of a reservation.
type bundleReserver interface {
	prepareBundles(ctx context.Context, node *protos.NodeInfo, req *protos.PrepareBundlesRequest) error
	commitBundles(ctx context.Context, node *protos.NodeInfo, req *protos.CommitBundlesRequest) error
	cancelBundles(ctx context.Context, node *protos.NodeInfo, req *protos.CancelBundlesRequest) error
}

type pgEntry struct {
	// id and job (zero: none) are the spec's, parsed once.
	id, job protos.UniqueID
	info    *protos.PlacementGroupInfo
	bundles []scheduling.Resources
	epoch   uint64
	// nodes are where the bundles went (CREATED), by bundle index.
	nodes   []*protos.NodeInfo
	backoff time.Duration
	// placing is set while an attempt runs.
	placing bool
}

// Messages to the manager.
type (
	pgAttempt struct {
		id    protos.UniqueID
		epoch uint64
		// indexes are the bundles the attempt placed; nodes[i] is where
		// bundle indexes[i] went.
		indexes []int32
		nodes   []*protos.NodeInfo
		err     error
	}
	// pgNodeDead starts placing again the bundles a dead node held.
	pgNodeDead struct{ node protos.NodeID }
	pgRetry    struct {
		id    protos.UniqueID
		epoch uint64
	}
	// pgJobFinished removes the job's groups that are not detached.
	pgJobFinished struct{ job protos.JobID }
	// pgRemoved tells the actor manager that a group is gone: its actors
	// die.
	pgRemoved struct{ id protos.UniqueID }
)

// Placement retry backoff: short first, since a group usually waits for a
// moment (a report to arrive, a task to finish).
const (
	pgRetryMin = 20 * time.Millisecond
	pgRetryMax = time.Second
	// pgRPCTimeout bounds one raylet call of a reservation.
	pgRPCTimeout = 10 * time.Second
)

// PlacementGroupSubject is where the GCS publishes a group's
// PlacementGroupInfo on each state change (Wait listens there).
func PlacementGroupSubject(id protos.UniqueID) string { return "goray.pg." + id.String() }

func newPGManager(env *managerEnv, shared *pgShared) actor.Producer {
	return func() actor.Actor { return &pgManager{env: env, shared: shared} }
}

func (m *pgManager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		m.root, m.self = ctx.ActorSystem().Root, ctx.Self()
		m.load()
	case readyRequest:
		m.respondReady(ctx)
	case *protos.CreatePlacementGroupRequest:
		info, e := m.create(msg.GetSpec())
		ctx.Respond(&protos.CreatePlacementGroupReply{Info: info, Error: e})
	case *protos.GetPlacementGroupRequest:
		info, e := m.get(msg)
		ctx.Respond(&protos.GetPlacementGroupReply{Info: info, Error: e})
	case *protos.RemovePlacementGroupRequest:
		ctx.Respond(&protos.RemovePlacementGroupReply{Error: m.remove(msg.GetPlacementGroupId())})
	case *protos.ListPlacementGroupsRequest:
		ctx.Respond(m.list())
	case pgAttempt:
		m.attempted(msg)
	case pgRetry:
		if g := m.groups[msg.id]; g != nil && g.epoch == msg.epoch && !g.placing &&
			(g.info.GetState() == protos.PlacementGroupState_PG_PENDING || g.info.GetState() == protos.PlacementGroupState_PG_RESCHEDULING) {
			m.schedule(g)
		}
	case pgNodeDead:
		m.nodeDead(msg.node)
	case pgJobFinished:
		for id, g := range m.groups {
			if !g.info.GetSpec().GetDetached() && g.job == msg.job {
				_ = m.remove(id.Bytes())
			}
		}
	}
}

func (m *pgManager) load() {
	m.groups = map[protos.UniqueID]*pgEntry{}
	m.open(m.env, BucketPlacementGroups, "goray GCS placement groups: group id (hex) -> PlacementGroupInfo", func(key string, value []byte) error {
		g, err := decodePGRecord(key, value)
		if err != nil {
			skipRecord(m.env.log, err)
			return nil
		}
		m.groups[g.id] = g
		return nil
	})
	// Groups pending (or rescheduling) at the last GCS run are tried
	// again; created ones keep their reservations, which the raylets
	// still hold.
	for _, g := range m.groups {
		if st := g.info.GetState(); st == protos.PlacementGroupState_PG_PENDING || st == protos.PlacementGroupState_PG_RESCHEDULING {
			m.resumeReservation(g)
		}
	}
}

// resumeReservation tries again a group whose reservation the last GCS
// was making when it stopped. Raylets may hold bundles it had prepared (or
// committed) without recording them: those are cancelled on every node
// first, as Ray's GCS releases unused bundles when it restarts, or they
// would hold the resources the new attempt needs.
func (m *pgManager) resumeReservation(g *pgEntry) {
	g.epoch = m.nextEpoch()
	var unplaced []int32
	if g.info.GetState() == protos.PlacementGroupState_PG_RESCHEDULING {
		for i := range g.bundles {
			if g.nodes == nil || g.nodes[i] == nil {
				unplaced = append(unplaced, int32(i))
			}
		}
	}
	id, epoch, root, self, nodesPID, r := g.id, g.epoch, m.root, m.self, m.shared.nodes, m.shared.reserver
	go func() {
		if nodes, err := listNodes(root, nodesPID); err == nil && r != nil {
			var alive []*protos.NodeInfo
			for _, n := range nodes {
				if n.GetState() == protos.NodeInfo_ALIVE {
					alive = append(alive, n)
				}
			}
			cancelOn(r, id, alive, unplaced)
		}
		root.Send(self, pgRetry{id: id, epoch: epoch})
	}()
}

// newPGEntry makes the manager's entry for a group whose spec passed
// checkPGSpec.
func newPGEntry(info *protos.PlacementGroupInfo) (*pgEntry, error) {
	spec := info.GetSpec()
	id, err := protos.UniqueIDFromBytes(spec.GetPlacementGroupId())
	if err != nil {
		return nil, fmt.Errorf("%w: placement_group_id: %w", ErrInvalid, err)
	}
	var job protos.UniqueID
	if len(spec.GetJobId()) > 0 {
		if job, err = protos.UniqueIDFromBytes(spec.GetJobId()); err != nil {
			return nil, fmt.Errorf("%w: job_id: %w", ErrInvalid, err)
		}
	}
	bundles, err := bundlesOf(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: bundles: %w", ErrInvalid, err)
	}
	if _, err := scheduling.PGStrategyFromProto(spec.GetStrategy()); err != nil {
		return nil, fmt.Errorf("%w: strategy: %w", ErrInvalid, err)
	}
	return &pgEntry{id: id, job: job, info: info, bundles: bundles}, nil
}

func bundlesOf(spec *protos.PlacementGroupSpec) ([]scheduling.Resources, error) {
	amounts := make([]map[string]float64, len(spec.GetBundles()))
	for i, b := range spec.GetBundles() {
		amounts[i] = b.GetAmounts()
	}
	return scheduling.BundlesFromAmounts(amounts)
}

func (m *pgManager) create(spec *protos.PlacementGroupSpec) (*protos.PlacementGroupInfo, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return nil, e
	}
	if spec == nil {
		return nil, gcsErrorf(ErrInvalid, "create placement group: no spec")
	}
	id, e := parseID("placement group id", spec.GetPlacementGroupId())
	if e != nil {
		return nil, e
	}
	if g, ok := m.groups[id]; ok {
		return g.info, nil // a retried request
	}
	info := &protos.PlacementGroupInfo{Spec: proto.CloneOf(spec), State: protos.PlacementGroupState_PG_PENDING, CreateTimeUnixMs: time.Now().UnixMilli()}
	g, err := newPGEntry(info)
	if err != nil {
		return nil, gcsErrorf(ErrInvalid, "create placement group: %v", err)
	}
	if name := spec.GetName(); name != "" {
		if other := m.byName(name, spec.GetNamespace()); other != nil {
			return nil, gcsErrorf(ErrAlreadyExists, "a placement group named %q already exists in namespace %q (%x)", name, spec.GetNamespace(), other.info.GetSpec().GetPlacementGroupId())
		}
	}
	// Stored before the reply: a group its creator was told exists must
	// survive the head dying now (its state changes are written
	// asynchronously; a lost one only makes a restarted GCS redo a
	// reservation).
	if err := m.putProto(id.String(), info); err != nil {
		return nil, toGcsError(err)
	}
	m.groups[id] = g
	m.schedule(g)
	return info, nil
}

func (m *pgManager) byName(name, namespace string) *pgEntry {
	for _, g := range m.groups {
		if g.info.GetSpec().GetName() == name && g.info.GetSpec().GetNamespace() == namespace {
			return g
		}
	}
	return nil
}

func (m *pgManager) get(req *protos.GetPlacementGroupRequest) (*protos.PlacementGroupInfo, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return nil, e
	}
	if req.GetName() != "" {
		if g := m.byName(req.GetName(), req.GetNamespace()); g != nil {
			return g.info, nil
		}
		return nil, gcsErrorf(ErrNotFound, "no placement group named %q in namespace %q", req.GetName(), req.GetNamespace())
	}
	id, e := parseID("placement group id", req.GetPlacementGroupId())
	if e != nil {
		return nil, e
	}
	if g, ok := m.groups[id]; ok {
		return g.info, nil
	}
	return nil, gcsErrorf(ErrNotFound, "placement group %s does not exist (or was removed)", id)
}

func (m *pgManager) list() *protos.ListPlacementGroupsReply {
	if e := m.unavailable(); e != nil {
		return &protos.ListPlacementGroupsReply{Error: e}
	}
	out := make([]*protos.PlacementGroupInfo, 0, len(m.groups))
	for _, g := range m.groups {
		out = append(out, g.info)
	}
	return &protos.ListPlacementGroupsReply{Groups: out}
}

// remove frees a group's bundles (killing what runs in them) and forgets
// it; its waiters learn it from the REMOVED event.
func (m *pgManager) remove(raw []byte) *protos.GcsError {
	if e := m.unavailable(); e != nil {
		return e
	}
	id, e := parseID("placement group id", raw)
	if e != nil {
		return e
	}
	g, ok := m.groups[id]
	if !ok {
		return nil // removing twice is not an error
	}
	if err := storeDelete(m.kv, id.String()); err != nil {
		return toGcsError(err)
	}
	delete(m.groups, id)
	g.epoch = m.nextEpoch() // an attempt under way cancels itself
	info := proto.CloneOf(g.info)
	info.State = protos.PlacementGroupState_PG_REMOVED
	g.info = info
	m.env.publish(PlacementGroupSubject(id), info)
	if g.nodes != nil {
		m.cancelAll(id, g.nodes, nil)
	}
	m.root.Send(m.shared.actors, pgRemoved{id: id})
	return nil
}

func (m *pgManager) nextEpoch() uint64 {
	m.epochSeq++
	return m.epochSeq
}

// schedule starts an attempt to place and reserve the group's bundles: all
// of them for a PENDING group, those without a node for a RESCHEDULING
// one (the others keep theirs).
func (m *pgManager) schedule(g *pgEntry) {
	g.epoch = m.nextEpoch()
	g.placing = true
	id := g.id
	strategy, _ := scheduling.PGStrategyFromProto(g.info.GetSpec().GetStrategy())
	var indexes []int32
	var bundles []scheduling.Resources
	var excluded map[protos.NodeID]bool
	for i, b := range g.bundles {
		if g.nodes != nil && g.nodes[i] != nil {
			if strategy == scheduling.PGStrictSpread {
				if excluded == nil {
					excluded = map[protos.NodeID]bool{}
				}
				excluded[protos.MustUniqueID(g.nodes[i].GetNodeId())] = true
			}
			continue
		}
		indexes, bundles = append(indexes, int32(i)), append(bundles, b)
	}
	epoch, root, self, sh := g.epoch, m.root, m.self, m.shared
	go func() {
		nodes, err := reserve(root, sh, id, indexes, bundles, strategy, excluded)
		root.Send(self, pgAttempt{id: id, epoch: epoch, indexes: indexes, nodes: nodes, err: err})
	}()
}

// reserve places the bundles (bundles[i] is bundle indexes[i] of the
// group) and runs the two phases; on any failure nothing it reserved stays
// reserved.
func reserve(root *actor.RootContext, sh *pgShared, id protos.UniqueID, indexes []int32, bundles []scheduling.Resources, strategy scheduling.PGStrategy, excluded map[protos.NodeID]bool) ([]*protos.NodeInfo, error) {
	if sh.reserver == nil {
		return nil, fmt.Errorf("%w: this GCS cannot reach raylets", ErrUnavailable)
	}
	res, err := root.RequestFuture(sh.nodes, placeBundlesRequest{bundles: bundles, strategy: strategy, excluded: excluded}, actorNodesTimeout).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: place bundles: %w", ErrUnavailable, err)
	}
	rep, ok := res.(placeBundlesReply)
	if !ok {
		return nil, fmt.Errorf("%w: node manager answered %T", ErrInternal, res)
	}
	if rep.err != nil {
		return nil, rep.err
	}
	byNode := map[protos.NodeID]*protos.PrepareBundlesRequest{}
	nodeInfo := map[protos.NodeID]*protos.NodeInfo{}
	for i, n := range rep.nodes {
		nid := protos.MustUniqueID(n.GetNodeId())
		r := byNode[nid]
		if r == nil {
			r = &protos.PrepareBundlesRequest{PlacementGroupId: id.Bytes()}
			byNode[nid], nodeInfo[nid] = r, n
		}
		r.Bundles = append(r.Bundles, &protos.BundleReservation{Index: indexes[i], Resources: toProto(bundles[i])})
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgRPCTimeout)
	defer cancel()
	// Phase one: prepare everywhere at once.
	errs := make(chan error, len(byNode))
	for nid, r := range byNode {
		go func(n *protos.NodeInfo, r *protos.PrepareBundlesRequest) {
			errs <- sh.reserver.prepareBundles(ctx, n, r)
		}(nodeInfo[nid], r)
	}
	var failed error
	for range byNode {
		if err := <-errs; err != nil && failed == nil {
			failed = err
		}
	}
	all := make([]*protos.NodeInfo, 0, len(nodeInfo))
	for _, n := range nodeInfo {
		all = append(all, n)
	}
	if failed != nil {
		cancelOn(sh.reserver, id, all, indexes)
		return nil, fmt.Errorf("%w: prepare: %w", scheduling.ErrWait, failed)
	}
	// Phase two: commit. A node dying in between fails the commit; the
	// others are then cancelled and the group tried again.
	for _, n := range all {
		go func(n *protos.NodeInfo) {
			errs <- sh.reserver.commitBundles(ctx, n, &protos.CommitBundlesRequest{PlacementGroupId: id.Bytes()})
		}(n)
	}
	for range all {
		if err := <-errs; err != nil && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		cancelOn(sh.reserver, id, all, indexes)
		return nil, fmt.Errorf("%w: commit: %w", scheduling.ErrWait, failed)
	}
	return rep.nodes, nil
}

func toProto(r scheduling.Resources) *protos.Resources {
	out := &protos.Resources{Amounts: make(map[string]float64, len(r))}
	for k, v := range r {
		out.Amounts[k] = float64(v) / scheduling.Unit
	}
	return out
}

// cancelOn cancels a group's bundles (indexes; nil: all) on nodes, best
// effort (a node that cannot be reached is dead, and its reservation with
// it).
func cancelOn(r bundleReserver, id protos.UniqueID, nodes []*protos.NodeInfo, indexes []int32) {
	ctx, cancel := context.WithTimeout(context.Background(), pgRPCTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func(n *protos.NodeInfo) {
			defer wg.Done()
			_ = r.cancelBundles(ctx, n, &protos.CancelBundlesRequest{PlacementGroupId: id.Bytes(), Indexes: indexes})
		}(n)
	}
	wg.Wait()
}

// cancelAll cancels bundles (indexes; nil: all) of a group on nodes.
func (m *pgManager) cancelAll(id protos.UniqueID, nodes []*protos.NodeInfo, indexes []int32) {
	seen := map[protos.NodeID]bool{}
	var uniq []*protos.NodeInfo
	for _, n := range nodes {
		if n == nil {
			continue
		}
		if nid := protos.MustUniqueID(n.GetNodeId()); !seen[nid] {
			seen[nid] = true
			uniq = append(uniq, n)
		}
	}
	r := m.shared.reserver
	if r == nil || len(uniq) == 0 {
		return
	}
	root, nodesPID := m.root, m.shared.nodes
	go func() {
		// The records may be older than the nodes' endpoints (a GCS
		// restart): use the node table's.
		if res, err := root.RequestFuture(nodesPID, &protos.ListNodesRequest{}, actorNodesTimeout).Result(); err == nil {
			if rep, ok := res.(*protos.ListNodesReply); ok {
				current := map[string]*protos.NodeInfo{}
				for _, n := range rep.GetNodes() {
					current[string(n.GetNodeId())] = n
				}
				for i, n := range uniq {
					if c := current[string(n.GetNodeId())]; c != nil {
						uniq[i] = c
					}
				}
			}
		}
		cancelOn(r, id, uniq, indexes)
	}()
}

func (m *pgManager) attempted(msg pgAttempt) {
	g := m.groups[msg.id]
	if g == nil || g.epoch != msg.epoch {
		// Removed (or superseded) while the attempt ran: undo what it
		// reserved.
		if msg.err == nil {
			m.cancelAll(msg.id, msg.nodes, msg.indexes)
		}
		return
	}
	g.placing = false
	if msg.err != nil {
		g.backoff = min(max(2*g.backoff, pgRetryMin), pgRetryMax)
		reason := msg.err.Error()
		if g.info.GetPendingReason() != reason {
			info := proto.CloneOf(g.info)
			info.PendingReason = reason
			g.info = info
			if errors.Is(msg.err, scheduling.ErrInfeasible) {
				m.env.log.Warn().Str("group", msg.id.Short()).Msg("placement group is infeasible for now: " + reason)
			}
		}
		id, epoch, root, self := msg.id, g.epoch, m.root, m.self
		time.AfterFunc(g.backoff, func() { root.Send(self, pgRetry{id: id, epoch: epoch}) })
		return
	}
	nodes := g.nodes
	if nodes == nil {
		nodes = make([]*protos.NodeInfo, len(g.bundles))
	} else {
		nodes = slices.Clone(nodes)
	}
	for j, i := range msg.indexes {
		nodes[i] = msg.nodes[j]
	}
	info := proto.CloneOf(g.info)
	info.State = protos.PlacementGroupState_PG_CREATED
	info.PendingReason = ""
	info.BundleNodes = make([][]byte, len(nodes))
	for i, n := range nodes {
		info.BundleNodes[i] = n.GetNodeId()
	}
	if err := m.putProtoAsync(msg.id.String(), info); err != nil {
		// Not recorded: undo and try again rather than hold bundles the
		// table does not know about.
		m.cancelAll(msg.id, msg.nodes, msg.indexes)
		g.backoff = min(max(2*g.backoff, pgRetryMin), pgRetryMax)
		id, epoch, root, self := msg.id, g.epoch, m.root, m.self
		time.AfterFunc(g.backoff, func() { root.Send(self, pgRetry{id: id, epoch: epoch}) })
		return
	}
	g.info, g.nodes, g.backoff = info, nodes, 0
	m.env.publish(PlacementGroupSubject(msg.id), info)
}

// nodeDead places again, elsewhere, the bundles a dead node held; the
// group's other bundles, and what runs on them, stay (Ray's
// RESCHEDULING).
func (m *pgManager) nodeDead(node protos.NodeID) {
	for id, g := range m.groups {
		lost := 0
		for i, n := range g.nodes {
			if n != nil && protos.MustUniqueID(n.GetNodeId()) == node {
				if lost == 0 {
					g.nodes = slices.Clone(g.nodes)
				}
				g.nodes[i] = nil
				lost++
			}
		}
		if lost == 0 {
			continue
		}
		info := proto.CloneOf(g.info)
		info.State = protos.PlacementGroupState_PG_RESCHEDULING
		info.PendingReason = fmt.Sprintf("node %s, which held %d of its bundles, died", node.Short(), lost)
		for i, n := range g.nodes {
			if n == nil {
				info.BundleNodes[i] = nil
			}
		}
		g.info = info
		if err := m.putProtoAsync(id.String(), info); err != nil {
			m.env.log.Warn().Err(err).Str("group", id.Short()).Msg("record rescheduling placement group")
		}
		m.env.publish(PlacementGroupSubject(id), info)
		m.env.log.Warn().Str("group", id.Short()).Str("node", node.Short()).Int("bundles", lost).Msg("placing again the bundles of a dead node")
		m.schedule(g)
	}
}
