package raylet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/actors"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Raylet is one node's daemon. Create with New, then Start; Shutdown is
// idempotent and leaves no worker process, socket or shm segment behind.
type Raylet struct {
	cfg    Config
	system *actor.ActorSystem
	pid    *actor.PID
	server *wire.Server
	store  *objstore.Store
	seg    *objstore.Segment
	// envCache holds job binaries and runtime env packages.
	envCache *envCache
	// metrics is the Prometheus endpoint; nil if Config.MetricsAddr is "".
	metrics *metricsServer

	// holders maps each client connection to the holder its pins are
	// counted under, so a process's pins go when it disconnects.
	holdersMu sync.Mutex
	holders   map[*wire.Conn]objstore.Holder

	// creating maps each client connection to the objects it created and
	// has not sealed, with their offsets. A process that dies while
	// writing an object (a worker killed while storing its result) leaves
	// a partial object nobody will seal; while it is in the store, the
	// object cannot be pulled here (the copy's create finds it), so the
	// readers of the task's retried result on this node would fail. Such
	// objects are deleted when their creator's connection closes, as
	// Ray's plasma store aborts a disconnected client's unsealed objects.
	creatingMu sync.Mutex
	creating   map[*wire.Conn]map[protos.ObjectID]uint64

	endpoint string
	// tcpServer serves raylets, drivers and the GCS on other machines at
	// tcpEndpoint; processes on the node use the unix socket.
	tcpServer   *wire.Server
	tcpEndpoint string
	// peerAddrs maps other nodes' ids to their peerAddress (cluster_view.go).
	peerAddrs sync.Map
	// transfer moves objects between nodes (transfer.go).
	transfer *transferState

	// sweeping: a removal of stale shm segments runs (cluster_view.go).
	sweeping atomic.Bool
	// mem is where the node's memory and the kernel's OOM kills are read
	// (memory_usage.go); the counters below are the memory monitor's
	// (memory_monitor.go), for metrics.
	mem *memorySource
	cpu *cpuMeter
	// memReadings numbers the memory monitor's readings.
	memReadings    atomic.Uint64
	monitorKills   atomic.Uint64
	kernelOOMKills atomic.Uint64

	stopOnce sync.Once
	stopped  chan struct{}
}

// New prepares a raylet; nothing runs until Start.
func New(cfg Config) (*Raylet, error) {
	cfg.setDefaults()
	if cfg.SessionDir == "" {
		return nil, errors.New("raylet: Config.SessionDir is required")
	}
	if cfg.Credentials == nil {
		return nil, errors.New("raylet: Config.Credentials is required (auth.None(nil) serves anyone)")
	}
	return &Raylet{cfg: cfg, stopped: make(chan struct{}), holders: map[*wire.Conn]objstore.Holder{},
		creating: map[*wire.Conn]map[protos.ObjectID]uint64{}, mem: detectMemorySource("/"), cpu: newCPUMeter()}, nil
}

// StorePath is the shm segment path of a node whose segments live in dir.
// The raylet's pid in the name (objstore.SegmentName) lets a later raylet
// tell whether the one that made a leftover segment is still alive.
func StorePath(dir string, node protos.NodeID) string {
	return filepath.Join(dir, objstore.SegmentName(os.Getpid(), node.Short()))
}

// CheckShm tells, before anything starts, whether dir (a node's ShmDir, ""
// for the default) has room for an object store of size bytes (0 for the
// default size): the error a raylet's Start would fail with, telling how
// to fix it.
func CheckShm(dir string, size uint64) error {
	cfg := Config{ShmDir: dir, ObjectStoreMemory: size}
	cfg.setDefaults()
	return shmError(cfg, objstore.CheckShmSpace(cfg.ShmDir, cfg.ObjectStoreMemory))
}

// shmError adds to a shared memory shortage the ways out.
func shmError(cfg Config, err error) error {
	if !errors.Is(err, objstore.ErrShmTooSmall) {
		return err
	}
	size := ""
	if cfg.defaultStore {
		size = ", the default being 30% of memory"
	}
	return fmt.Errorf("raylet: object store: %w; make the store smaller (goray start --object-store-memory, sdk.ObjectStoreMemory%s), give %s more space (docker run --shm-size, or mount -o remount,size=... %s), or put the store in a larger tmpfs (goray start --shm-dir, sdk.ShmDir)",
		err, size, cfg.ShmDir, cfg.ShmDir)
}

// removeStaleSegments removes the segments of raylets on this machine that
// died without removing theirs (objstore.RemoveStaleSegments says how
// it tells).
func (r *Raylet) removeStaleSegments() {
	removed, err := objstore.RemoveStaleSegments(r.cfg.ShmDir)
	if err != nil {
		r.cfg.Logger.Warn().Err(err).Msg("could not look for stale shm segments")
	}
	for _, s := range removed {
		r.cfg.Logger.Info().Str("path", s.Path).Int("pid", s.PID).Str("reason", s.Reason).
			Uint64("size", uint64(s.Size)).Uint64("allocated", uint64(s.Allocated)).
			Msg("removed the shm segment of a raylet that is gone")
	}
}

// Start creates the object store, listens for local clients and starts the
// raylet actor, and the metrics endpoint if Config.MetricsAddr is set.
func (r *Raylet) Start() error {
	sockets := SocketDir(r.cfg.SessionDir)
	if err := os.MkdirAll(filepath.Join(r.cfg.SessionDir, "logs"), 0o755); err != nil {
		return fmt.Errorf("raylet: %w", err)
	}
	if err := MakeSocketDir(sockets); err != nil {
		return fmt.Errorf("raylet: %w", err)
	}
	fetch := r.cfg.FetchPackage
	if fetch == nil {
		fetch = func(context.Context, string, io.Writer) error {
			return errors.New("this node has no runtime env package store (Config.FetchPackage)")
		}
	}
	cache, err := newEnvCache(filepath.Join(r.cfg.SessionDir, "runtime_resources"), r.cfg.RuntimeEnvCacheBytes, fetch, r.cfg.Logger)
	if err != nil {
		return fmt.Errorf("raylet: %w", err)
	}
	r.envCache = cache
	r.removeStaleSegments()
	seg, err := objstore.CreateSegment(StorePath(r.cfg.ShmDir, r.cfg.NodeID), r.cfg.ObjectStoreMemory)
	if errors.Is(err, objstore.ErrShmTooSmall) {
		return shmError(r.cfg, err)
	}
	if err != nil {
		return fmt.Errorf("raylet: object store: %w", err)
	}
	r.seg = seg
	spillDir := r.cfg.SpillDir
	if spillDir == "" {
		spillDir = filepath.Join(r.cfg.SessionDir, "spill", r.cfg.NodeID.Short())
	}
	r.store, err = objstore.NewStoreWithOptions(seg, objstore.Options{SpillDir: spillDir})
	if err != nil {
		r.cleanupStore()
		return fmt.Errorf("raylet: object store: %w", err)
	}
	// The metrics listener is opened now, so that a taken port fails
	// Start early; it serves once the actor that scrapes query runs.
	started := false
	if r.cfg.MetricsAddr != "" {
		if r.metrics, err = r.listenMetrics(); err != nil {
			r.cleanupStore()
			return err
		}
		defer func() {
			if !started {
				r.metrics.close(false)
				r.metrics = nil
			}
		}()
	}

	r.endpoint = "unix:" + filepath.Join(sockets, "raylet-"+r.cfg.NodeID.Short()+".sock")
	l, err := wire.Listen(r.endpoint)
	if err != nil {
		r.cleanupStore()
		return fmt.Errorf("raylet: %w", err)
	}
	r.system = actors.NewSystem(r.cfg.Logger)
	st := newState(r)
	props := actor.PropsFromProducer(func() actor.Actor { return st },
		actor.WithSupervisor(actor.NewOneForOneStrategy(10, time.Second, actor.DefaultDecider)))
	r.pid, err = r.system.Root.SpawnNamed(props, "raylet-"+r.cfg.NodeID.Short())
	if err != nil {
		_ = l.Close()
		r.cleanupStore()
		return fmt.Errorf("raylet: spawn actor: %w", err)
	}
	tl, err := wire.Listen("tcp:" + net.JoinHostPort(r.cfg.NodeIP, "0"))
	if err != nil {
		_ = l.Close()
		r.system.Root.Stop(r.pid)
		r.cleanupStore()
		return fmt.Errorf("raylet: %w", err)
	}
	if err := r.startTransfer(); err != nil {
		_ = l.Close()
		_ = tl.Close()
		r.system.Root.Stop(r.pid)
		r.cleanupStore()
		return fmt.Errorf("raylet: object transfer: %w", err)
	}
	closed := func(c *wire.Conn, err error) {
		r.holdersMu.Lock()
		h, ok := r.holders[c]
		delete(r.holders, c)
		r.holdersMu.Unlock()
		if ok {
			r.store.ReleaseAll(h)
		}
		r.creatingMu.Lock()
		partial := r.creating[c]
		delete(r.creating, c)
		r.creatingMu.Unlock()
		for id, off := range partial {
			r.abortCreate(id, off)
		}
		r.system.Root.Send(r.pid, connClosed{conn: c})
	}
	r.server = wire.NewServer(r.secure(l, auth.LabelWire), wire.HandlerFunc(r.serve), wire.WithLogger(r.cfg.Logger))
	r.server.OnConnClose(closed)
	r.tcpServer = wire.NewServer(r.secure(tl, auth.LabelWire), wire.HandlerFunc(r.serve), wire.WithLogger(r.cfg.Logger))
	r.tcpServer.OnConnClose(closed)
	r.tcpEndpoint = r.tcpServer.Addr()
	go func() { _ = r.server.Serve() }()
	go func() { _ = r.tcpServer.Serve() }()
	go r.reportLoop()
	if r.cfg.MemoryUsageThreshold > 0 {
		go r.memoryMonitorLoop()
	} else {
		r.cfg.Logger.Info().Msg("memory monitor off (memory usage threshold 0)")
	}
	if r.metrics != nil {
		r.metrics.serve()
		r.cfg.Logger.Info().Str("url", "http://"+r.MetricsAddr()+MetricsPath).Msg("serving metrics")
	}
	started = true
	return nil
}

// secure wraps a listener so that it accepts only peers that authenticate
// for protocol label.
func (r *Raylet) secure(l net.Listener, label string) net.Listener {
	return auth.NewListener(l, r.cfg.Credentials.Handshaker(label), r.cfg.Limits, r.cfg.Logger)
}

// Authenticator authenticates the wire connections a client of this node
// dials (the embedded cluster's driver).
func (r *Raylet) Authenticator() wire.Authenticator {
	return r.cfg.Credentials.Handshaker(auth.LabelWire)
}

// SocketDir is where a session's unix sockets live.
func SocketDir(sessionDir string) string { return filepath.Join(sessionDir, "sockets") }

// maxSocketPath is the longest path a unix socket may have on Linux
// (sun_path is 108 bytes, the last a NUL).
const maxSocketPath = 107

// longestSocketName is the longest socket name a node makes in its socket
// directory: the raylet's "raylet-xxxxxxxx.sock" (workers' are shorter).
const longestSocketName = len("raylet-01234567.sock")

// ErrSessionDirTooLong: the session directory is too long for the unix
// sockets inside it.
var ErrSessionDirTooLong = errors.New("session directory too long for unix sockets")

// CheckSessionDir tells, before anything starts, whether the unix sockets
// of a node (and its workers) fit under sessionDir.
func CheckSessionDir(sessionDir string) error {
	abs, err := filepath.Abs(sessionDir)
	if err != nil {
		return fmt.Errorf("session dir %s: %w", sessionDir, err)
	}
	if n := len(SocketDir(abs)) + 1 + longestSocketName; n > maxSocketPath {
		return fmt.Errorf("%w: %s makes socket paths of %d bytes, the limit is %d: choose a directory at most %d bytes long",
			ErrSessionDirTooLong, abs, n, maxSocketPath, len(abs)-(n-maxSocketPath))
	}
	return nil
}

// MakeSocketDir creates the socket directory with mode 0700, so that only
// this user can even reach the sockets (which authenticate peers too), and
// tightens an existing one.
func MakeSocketDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// Endpoint is where processes on the node reach the raylet.
func (r *Raylet) Endpoint() string { return r.endpoint }

// TCPEndpoint is where processes on other nodes reach the raylet.
func (r *Raylet) TCPEndpoint() string { return r.tcpEndpoint }

// Store returns the node's object store (for in-process clients).
func (r *Raylet) Store() *objstore.Store { return r.store }

// NodeID returns the node's id.
func (r *Raylet) NodeID() protos.NodeID { return r.cfg.NodeID }

// NodeInfo returns a snapshot of the node's state.
func (r *Raylet) NodeInfo() *protos.NodeInfo {
	info, _ := r.nodeInfo(5 * time.Second)
	return info
}

// nodeInfo asks the raylet actor for a snapshot of the node's state.
func (r *Raylet) nodeInfo(timeout time.Duration) (*protos.NodeInfo, error) {
	res, err := r.system.Root.RequestFuture(r.pid, nodeInfoQuery{}, timeout).Result()
	if err != nil {
		return nil, err
	}
	info, ok := res.(*protos.NodeInfo)
	if !ok {
		return nil, fmt.Errorf("raylet: node info query answered with %T", res)
	}
	return info, nil
}

func (r *Raylet) reportLoop() {
	t := time.NewTicker(r.cfg.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stopped:
			return
		case <-t.C:
			r.system.Root.Send(r.pid, reportTick{})
		}
	}
}

// serve handles requests from local processes. Store operations are served
// here; everything else goes through the actor. Every request is decoded
// and validated (validate.go) before anything acts on it.
func (r *Raylet) serve(c *wire.Conn, req *wire.Request) {
	switch req.Method {
	case protos.Method_CREATE_OBJECT:
		var m protos.CreateObjectRequest
		if !r.decode(c, req, &m) {
			return
		}
		id, owner, err := checkCreateObject(&m, r.seg.Capacity())
		if err != nil {
			r.reject(c, req, err)
			return
		}
		// A create may wait for the spiller to make room; it must not
		// hold up the connection's other requests.
		go func() {
			create := r.store.CreateOwned
			if m.GetNoSpill() {
				create = r.store.TryCreateOwned
			}
			off, err := create(id, m.GetSize(), owner)
			if err != nil {
				_ = c.ReplyError(req, wire.NewError(storeErrCode(err), "%v", err))
				return
			}
			if !r.trackCreate(c, id, off) {
				// The creator left while the create waited for room.
				r.abortCreate(id, off)
				return
			}
			_ = c.Reply(req, &protos.CreateObjectReply{Offset: off})
		}()
	case protos.Method_SEAL_OBJECT:
		var m protos.SealObjectRequest
		if !r.decode(c, req, &m) {
			return
		}
		id, err := parseObjectID("object_id", m.GetObjectId())
		if err != nil {
			r.reject(c, req, err)
			return
		}
		if err := r.store.Seal(id); err != nil {
			_ = c.ReplyError(req, wire.NewError(storeErrCode(err), "%v", err))
			return
		}
		r.untrackCreates(c, id)
		_ = c.Reply(req, &protos.SealObjectReply{})
	case protos.Method_GET_OBJECT_LOCATION:
		var m protos.GetObjectLocationRequest
		if !r.decode(c, req, &m) {
			return
		}
		id, err := parseObjectID("object_id", m.GetObjectId())
		if err != nil {
			r.reject(c, req, err)
			return
		}
		if !m.GetPin() {
			off, size, ok := r.store.Get(id)
			_ = c.Reply(req, &protos.GetObjectLocationReply{Found: ok, Offset: off, Size: size})
			return
		}
		// A spilled object is restored first, which may take a while.
		go func() {
			h, ok := r.holder(c)
			if !ok {
				return // the client is gone: nobody to pin for
			}
			off, size, err := r.store.Acquire(id, h)
			if err == nil {
				select {
				case <-c.Done():
					// Closed while restoring: OnConnClose may have
					// released h's pins before this one was taken.
					r.store.Release(id, h)
					return
				default:
				}
			}
			switch {
			case errors.Is(err, objstore.ErrObjectNotFound):
				_ = c.Reply(req, &protos.GetObjectLocationReply{})
			case err != nil:
				_ = c.ReplyError(req, wire.NewError(storeErrCode(err), "%v", err))
			default:
				_ = c.Reply(req, &protos.GetObjectLocationReply{Found: true, Offset: off, Size: size})
			}
		}()
	case protos.Method_RELEASE_OBJECTS:
		var m protos.ReleaseObjectsRequest
		if !r.decode(c, req, &m) {
			return
		}
		if err := CheckObjectIDs("object_ids", m.GetObjectIds()); err != nil {
			r.reject(c, req, err)
			return
		}
		if h, ok := r.holder(c); ok { // else its pins went with the connection
			for _, b := range m.GetObjectIds() {
				r.store.Release(protos.ObjectID(b), h)
			}
		}
		_ = c.Reply(req, &protos.DeleteObjectsReply{})
	case protos.Method_DELETE_OBJECTS:
		var m protos.DeleteObjectsRequest
		if !r.decode(c, req, &m) {
			return
		}
		if err := CheckObjectIDs("object_ids", m.GetObjectIds()); err != nil {
			r.reject(c, req, err)
			return
		}
		node, err := parseOptionalID("primary_node_id", m.GetPrimaryNodeId())
		if err != nil {
			r.reject(c, req, err)
			return
		}
		ids := make([]protos.ObjectID, len(m.GetObjectIds()))
		for i, b := range m.GetObjectIds() {
			ids[i] = protos.ObjectID(b)
			_ = r.store.Delete(ids[i])
		}
		r.untrackCreates(c, ids...)
		if len(m.GetPrimaryNodeId()) > 0 && node != r.cfg.NodeID {
			// The primaries are elsewhere: every node drops its copy,
			// the primary's among them (and none is missed if that
			// node is gone).
			if r.cfg.PublishFree != nil {
				r.cfg.PublishFree(ids)
			}
		} else {
			r.announceFreed(ids)
		}
		_ = c.Reply(req, &protos.DeleteObjectsReply{})
	case protos.Method_PULL_OBJECT:
		r.servePull(c, req)
	case protos.Method_READ_LOG:
		var m protos.ReadLogRequest
		if !r.decode(c, req, &m) {
			return
		}
		go func() {
			rep, err := r.readLog(&m)
			if err != nil {
				_ = c.ReplyError(req, err)
				return
			}
			_ = c.Reply(req, rep)
		}()
	case protos.Method_LIST_WORKERS:
		var m protos.ListWorkersRequest
		if !r.decode(c, req, &m) {
			return
		}
		go func() {
			res, err := r.system.Root.RequestFuture(r.pid, workersQuery{}, 5*time.Second).Result()
			if rep, ok := res.(*protos.ListWorkersReply); err == nil && ok {
				_ = c.Reply(req, rep)
				return
			}
			_ = c.ReplyError(req, wire.NewError("unavailable", "the raylet did not list its workers: %v", err))
		}()
	case protos.Method_RUNTIME_ENV_CACHE:
		var m protos.RuntimeEnvCacheRequest
		if !r.decode(c, req, &m) {
			return
		}
		_ = c.Reply(req, r.runtimeEnvCache())
	case protos.Method_MEMORY_SUMMARY:
		var m protos.MemorySummaryRequest
		if !r.decode(c, req, &m) {
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Reply(req, r.MemorySummary(ctx))
		}()
	default:
		// The payload is only valid during this call: the actor gets a copy.
		cp := *req
		cp.Payload = append([]byte(nil), req.Payload...)
		r.system.Root.Send(r.pid, wireRequest{conn: c, req: &cp})
	}
}

// trackCreate records that c created id at off and has yet to seal it; it
// reports false if c has closed, when nobody will.
func (r *Raylet) trackCreate(c *wire.Conn, id protos.ObjectID, off uint64) bool {
	r.creatingMu.Lock()
	defer r.creatingMu.Unlock()
	// Done is closed before the close hook runs, and the hook takes this
	// lock: either the hook finds the entry or this sees Done.
	select {
	case <-c.Done():
		return false
	default:
	}
	m := r.creating[c]
	if m == nil {
		m = map[protos.ObjectID]uint64{}
		r.creating[c] = m
	}
	m[id] = off
	return true
}

// untrackCreates forgets ids among c's unsealed objects: sealed, or
// deleted by c (a creator aborting).
func (r *Raylet) untrackCreates(c *wire.Conn, ids ...protos.ObjectID) {
	r.creatingMu.Lock()
	defer r.creatingMu.Unlock()
	m := r.creating[c]
	if m == nil {
		return
	}
	for _, id := range ids {
		delete(m, id)
	}
	if len(m) == 0 {
		delete(r.creating, c)
	}
}

// abortCreate deletes id if it is still the unsealed object created at off:
// since its creator died, another attempt of the same task may have
// replaced it (core's storeValue deletes a partial object it finds), and
// that one must stay.
func (r *Raylet) abortCreate(id protos.ObjectID, off uint64) {
	for _, o := range r.store.Objects() {
		if o.ID == id {
			if !o.Sealed && o.InMemory && o.Offset == off {
				_ = r.store.Delete(id)
			}
			return
		}
	}
}

func storeErrCode(err error) string {
	switch {
	case errors.Is(err, objstore.ErrStoreFull):
		return "store_full"
	case errors.Is(err, objstore.ErrObjectExists):
		return "exists"
	case errors.Is(err, objstore.ErrObjectNotFound):
		return "not_found"
	case errors.Is(err, objstore.ErrSpillLost):
		return "spill_lost"
	case errors.Is(err, objstore.ErrSpillCorrupt):
		return "spill_corrupt"
	}
	return "store"
}

// holder returns the pin holder of a client connection; ok is false once
// the connection is closed, when a new holder would never be released.
func (r *Raylet) holder(c *wire.Conn) (h objstore.Holder, ok bool) {
	r.holdersMu.Lock()
	defer r.holdersMu.Unlock()
	if h, ok = r.holders[c]; ok {
		return h, true
	}
	select {
	case <-c.Done():
		return 0, false
	default:
	}
	h = r.store.NewHolder()
	r.holders[c] = h
	return h, true
}

// freeOwnedBy deletes the objects a departed process owned.
func (r *Raylet) freeOwnedBy(owner protos.WorkerID) {
	if owner.IsZero() {
		return
	}
	if r.cfg.PublishOwnerGone != nil {
		// Its objects stored on other nodes (task returns, pulled
		// copies) go too.
		r.cfg.PublishOwnerGone(owner)
	}
	if ids := r.store.DeleteOwnedBy(owner); len(ids) > 0 {
		r.announceFreed(ids)
		r.cfg.Logger.Debug().Str("owner", owner.Short()).Int("objects", len(ids)).Msg("freed objects of a process that is gone")
	}
}

// decode unmarshals a request served inline, rejecting it if it is not
// the method's message; it reports whether to go on.
func (r *Raylet) decode(c *wire.Conn, req *wire.Request, m proto.Message) bool {
	if err := proto.Unmarshal(req.Payload, m); err != nil {
		r.reject(c, req, malformed(err))
		return false
	}
	return true
}

// Shutdown stops the raylet, kills its workers and removes its socket and
// shm segment. It is idempotent.
func (r *Raylet) Shutdown() {
	r.stopOnce.Do(func() {
		close(r.stopped)
		if r.metrics != nil {
			r.metrics.close(true)
		}
		if r.pid != nil {
			_, _ = r.system.Root.RequestFuture(r.pid, shutdownMsg{}, 10*time.Second).Result()
			_ = r.system.Root.StopFuture(r.pid).Wait()
		}
		if r.server != nil {
			_ = r.server.Close()
		}
		if r.tcpServer != nil {
			_ = r.tcpServer.Close()
		}
		r.stopTransfer()
		r.cleanupStore()
		if r.system != nil {
			r.system.Shutdown()
		}
	})
}

func (r *Raylet) cleanupStore() {
	if r.store != nil {
		if err := r.store.Close(); err != nil {
			r.cfg.Logger.Warn().Err(err).Msg("closing the object store")
		}
	}
	if r.seg != nil {
		_ = r.seg.Close()
		_ = r.seg.Remove()
	}
}
