package core

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/taskevents"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Worker is the runtime inside every goray process, driver or worker
// (Ray's CoreWorker): it owns the objects this process creates, submits
// tasks to leased workers, executes tasks pushed to it (workers), and serves
// other processes that borrow its objects.
type Worker struct {
	log      zerolog.Logger
	isWorker bool
	// jobEnv is the job's runtime env (a driver's; nil in a worker), and
	// ownEnv the one this process runs with when it is not the job's (a
	// worker started for a task or actor with a runtime env of its own):
	// what its tasks and actors get unless they set theirs.
	jobEnv *protos.RuntimeEnv
	ownEnv *protos.RuntimeEnv
	// pkgUploads are the working-directory packages uploaded by this
	// process (packages.go), by PackSpec key.
	pkgMu      sync.Mutex
	pkgUploads map[string]*pkgUpload
	jobID      protos.JobID
	workerID   protos.WorkerID
	// bind is this process's node: read with node(). A driver's changes
	// when its raylet restarts (rebind.go); a worker's never does.
	bind atomic.Pointer[nodeBinding]
	// rebinds is set in a driver that follows its machine's raylet across
	// restarts (rebind.go).
	rebinds atomic.Bool
	digest  string
	// creds authenticate this process's connections: its servers accept
	// only peers that pass the wire handshake, and it passes theirs.
	creds    *auth.Credentials
	wireAuth *auth.Handshaker

	server    *wire.Server
	tcpServer *wire.Server
	// ownSeg is set when this process mapped the segment itself and must
	// unmap it on shutdown.
	ownSeg bool

	objects  *objectTable
	sub      *submitter
	exec     *executor
	actorDir *actorDirectory
	host     *actorHost
	streams  streamTable

	// The GCS: the driver's session connection, or one a worker dials on
	// first use (for actors).
	gcsMu sync.Mutex
	// nodeWatch subscribes once to node events (reconstruct.go).
	nodeWatch    sync.Once
	nodeWatchErr error
	gcs          *gcs.Client
	ownGCS       bool
	gcsAddress   string
	namespace    string

	peersMu sync.Mutex
	peers   map[string]*peer

	// putTask names objects created by Put in this process.
	putTask  protos.TaskID
	putIndex atomic.Uint32

	closed      atomic.Bool
	gcScheduled atomic.Bool

	// events records task events (task_events.go); nil when they are off.
	events     *taskevents.Recorder
	eventsStop chan struct{}
	eventsDone chan struct{}
}

var cur atomic.Pointer[Worker]

func Current() *Worker { return cur.Load() }

func newWorker(log zerolog.Logger, isWorker bool, jobID protos.JobID, workerID protos.WorkerID, creds *auth.Credentials) *Worker {
	cw := &Worker{
		log:      log,
		isWorker: isWorker,
		jobID:    jobID,
		workerID: workerID,
		creds:    creds,
		wireAuth: creds.Handshaker(auth.LabelWire),
		peers:    map[string]*peer{},
		putTask:  protos.NewUniqueID(),
	}
	cw.bind.Store(&nodeBinding{replaced: make(chan struct{})})
	cw.objects = newObjectTable(cw)
	cw.sub = newSubmitter(cw)
	cw.exec = newExecutor(cw)
	cw.actorDir = newActorDirectory(cw)
	cw.host = newActorHost(cw)
	_, cw.digest = functionTable()
	cw.startTaskEvents()
	return cw
}

// listen starts this process's server for task pushes and object requests.
// Processes on the node reach it on a unix socket, others over TCP on
// nodeIP (unix sockets halve the cost of a small call).
func (cw *Worker) listen(socketDir, nodeIP string) error {
	endpoint := fmt.Sprintf("unix:%s/w-%s.sock", socketDir, cw.workerID.Short())
	l, err := wire.Listen(endpoint)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", endpoint, err)
	}
	if nodeIP == "" {
		nodeIP = "127.0.0.1"
	}
	tl, err := wire.Listen("tcp:" + net.JoinHostPort(nodeIP, "0"))
	if err != nil {
		_ = l.Close()
		return fmt.Errorf("listen on %s: %w", nodeIP, err)
	}
	cw.server = wire.NewServer(auth.NewListener(l, cw.wireAuth, auth.Limits{}, cw.log), cw, wire.WithLogger(cw.log))
	cw.tcpServer = wire.NewServer(auth.NewListener(tl, cw.wireAuth, auth.Limits{}, cw.log), cw, wire.WithLogger(cw.log))
	go func() { _ = cw.server.Serve() }()
	go func() { _ = cw.tcpServer.Serve() }()
	cw.setup(func(b *nodeBinding) {
		b.addr = &protos.Address{WorkerId: cw.workerID.Bytes(), Endpoint: endpoint, TcpEndpoint: cw.tcpServer.Addr(), Pid: int32(os.Getpid())}
	})
	return nil
}

// dial connects to another goray process (a raylet, a driver, a worker),
// authenticated; the connection serves that peer's requests too.
func (cw *Worker) dial(ctx context.Context, endpoint string) (*wire.Conn, error) {
	return wire.Dial(ctx, endpoint, cw, wire.WithLogger(cw.log), wire.WithAuthenticator(cw.wireAuth))
}

// attachNode records the node this process runs on; it must happen before
// the process serves tasks.
func (cw *Worker) attachNode(node *protos.NodeInfo) {
	cw.setup(func(b *nodeBinding) { b.setNode(protos.MustUniqueID(node.GetNodeId())) })
}

// ServeWire implements wire.Handler for requests from other processes.
func (cw *Worker) ServeWire(c *wire.Conn, req *wire.Request) {
	switch req.Method {
	case protos.Method_PUSH_TASK:
		cw.exec.push(c, req)
	case protos.Method_CANCEL_TASK:
		cw.exec.cancel(c, req)
	case protos.Method_GET_OBJECT:
		cw.serveGetObject(c, req)
	case protos.Method_CREATE_ACTOR:
		cw.host.create(c, req)
	case protos.Method_ACTOR_CALL:
		cw.host.call(c, req)
	case protos.Method_KILL_ACTOR:
		cw.host.kill(c, req)
	case protos.Method_ATTACH_ACTOR:
		cw.host.attach(c, req)
	case protos.Method_STREAM_ITEM:
		cw.serveStreamItem(c, req)
	case protos.Method_ADD_BORROWERS, protos.Method_REMOVE_BORROWERS:
		cw.serveBorrow(c, req)
	case protos.Method_SYNC:
		// Answered here on the reader, so the answer follows every reply
		// queued on c before (see actorState.settleAfterDeath).
		_ = c.Reply(req, nil)
	case protos.Method_GET_REFS:
		var m protos.GetRefsRequest
		if err := unmarshalProto(req.Payload, &m); err != nil {
			cw.reject(c, req, malformed(err))
			return
		}
		_ = c.Reply(req, cw.objects.refsInfo())
	case protos.Method_EXIT:
		var m protos.ExitRequest
		if err := unmarshalProto(req.Payload, &m); err != nil {
			cw.reject(c, req, malformed(err))
			return
		}
		if !cw.isWorker {
			// A driver ends when its program does, not at a peer's word.
			cw.reject(c, req, wire.NewError("unsupported", "EXIT: this process is a driver, not a worker"))
			return
		}
		cw.log.Info().Str("reason", m.GetReason()).Msg("raylet asked this worker to exit")
		os.Exit(0)
	default:
		cw.reject(c, req, wire.NewError("unsupported", "core worker does not serve %v", req.Method))
	}
}

// serveGetObject answers a borrower once the object is ready.
func (cw *Worker) serveGetObject(c *wire.Conn, req *wire.Request) {
	var m protos.GetObjectRequest
	if err := unmarshalProto(req.Payload, &m); err != nil {
		cw.reject(c, req, malformed(err))
		return
	}
	id, err := parseObjectID("object_id", m.GetObjectId())
	if err != nil {
		cw.reject(c, req, err)
		return
	}
	r := *req
	reply := func() {
		_, data, terr, _ := cw.objects.result(id)
		out := &protos.GetObjectReply{Data: data}
		if terr != nil {
			out.Data = &protos.ObjectData{Error: terr.toProto()}
		}
		_ = c.Reply(&r, out)
	}
	if !cw.objects.onReady(id, reply) {
		lost := systemError(protos.ErrorKind_ERROR_KIND_OBJECT_LOST, "", id.TaskID(), "object %s is not known to its owner (freed)", id)
		_ = c.Reply(&r, &protos.GetObjectReply{Data: &protos.ObjectData{Error: lost.toProto()}})
	}
}

// fetchFromOwner asks the owner of a borrowed object for its value.
func (cw *Worker) fetchFromOwner(id protos.ObjectID, owner *protos.Address) {
	fail := func(err error) {
		cw.objects.complete(id, nil, systemError(protos.ErrorKind_ERROR_KIND_OWNER_DIED, "", id.TaskID(), "owner of object %s (pid %d) is unreachable: %v", id, owner.GetPid(), err))
	}
	cw.getFromOwner(id, owner, func(data *protos.ObjectData, err error) {
		switch {
		case err != nil:
			fail(err)
		case data.GetError() != nil:
			cw.objects.complete(id, nil, taskErrorFromProto(data.GetError()))
		default:
			cw.objects.complete(id, data, nil)
		}
	})
}

// getFromOwner asks owner for an object's value or location (GET_OBJECT,
// answered once the object is ready) and hands the answer to done, once,
// possibly on a connection's reader (done must not block).
func (cw *Worker) getFromOwner(id protos.ObjectID, owner *protos.Address, done func(*protos.ObjectData, error)) {
	cw.withPeerAt(owner, func(c *wire.Conn, err error) {
		if err != nil {
			done(nil, err)
			return
		}
		err = c.Go(protos.Method_GET_OBJECT, &protos.GetObjectRequest{ObjectId: id.Bytes()}, func(payload []byte, err error) {
			var reply protos.GetObjectReply
			if err == nil {
				err = unmarshalProto(payload, &reply)
			}
			done(reply.GetData(), err)
		})
		if err != nil {
			done(nil, err)
		}
	})
}

// peer is a connection to another core worker, dialled once and shared.
type peer struct {
	conn    *wire.Conn
	waiting []func(*wire.Conn, error)
}

// reach is where this process dials a: its unix socket on this node, its
// TCP endpoint on another.
func (cw *Worker) reach(a *protos.Address) string {
	if tcp := a.GetTcpEndpoint(); tcp != "" && protos.MustUniqueID(a.GetNodeId()) != cw.node().id {
		return tcp
	}
	return a.GetEndpoint()
}

// withPeerAt is withPeer for the process at a.
func (cw *Worker) withPeerAt(a *protos.Address, fn func(*wire.Conn, error)) {
	cw.withPeer(cw.reach(a), fn)
}

// withPeer calls fn with a connection to endpoint, dialling it in the
// background the first time (fn must not block: it may run on a reader
// goroutine).
func (cw *Worker) withPeer(endpoint string, fn func(*wire.Conn, error)) {
	cw.peersMu.Lock()
	p, ok := cw.peers[endpoint]
	if ok && p.conn != nil {
		select {
		case <-p.conn.Done():
			delete(cw.peers, endpoint)
			ok = false
		default:
			cw.peersMu.Unlock()
			fn(p.conn, nil)
			return
		}
	}
	if ok {
		p.waiting = append(p.waiting, fn)
		cw.peersMu.Unlock()
		return
	}
	p = &peer{waiting: []func(*wire.Conn, error){fn}}
	cw.peers[endpoint] = p
	cw.peersMu.Unlock()
	go func() {
		c, err := cw.dial(context.Background(), endpoint)
		cw.peersMu.Lock()
		waiting := p.waiting
		p.waiting = nil
		if err != nil {
			delete(cw.peers, endpoint)
		} else {
			p.conn = c
		}
		cw.peersMu.Unlock()
		if err == nil {
			go func() {
				<-c.Done()
				cw.peersMu.Lock()
				if cw.peers[endpoint] == p {
					delete(cw.peers, endpoint)
				}
				cw.peersMu.Unlock()
				cw.objects.failOwnedBy(endpoint)
				cw.objects.dropBorrower(endpoint)
			}()
		}
		for _, w := range waiting {
			w(c, err)
		}
	}()
}

func (cw *Worker) nextPutID() protos.ObjectID {
	return protos.ObjectIDFor(cw.putTask, cw.putIndex.Add(1))
}

// flushConns waits until what this process queued on its connections
// (accepted and dialled) is written, or ctx ends.
func (cw *Worker) flushConns(ctx context.Context) error {
	var flushers []interface{ Flush(context.Context) error }
	for _, s := range []*wire.Server{cw.server, cw.tcpServer} {
		if s != nil {
			flushers = append(flushers, s)
		}
	}
	cw.peersMu.Lock()
	for _, p := range cw.peers {
		if p.conn != nil {
			flushers = append(flushers, p.conn)
		}
	}
	cw.peersMu.Unlock()
	errs := make([]error, len(flushers))
	var wg sync.WaitGroup
	for i, f := range flushers {
		wg.Go(func() { errs[i] = f.Flush(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// close releases everything this process holds.
func (cw *Worker) close() {
	if !cw.closed.CompareAndSwap(false, true) {
		return
	}
	cw.sub.shutdown()
	if cw.node().raylet != nil {
		_ = cw.node().raylet.Close()
	}
	cw.peersMu.Lock()
	for _, p := range cw.peers {
		if p.conn != nil {
			_ = p.conn.Close()
		}
	}
	cw.peers = map[string]*peer{}
	cw.peersMu.Unlock()
	if cw.tcpServer != nil {
		_ = cw.tcpServer.Close()
	}
	if cw.server != nil {
		_ = cw.server.Close()
	}
	cw.actorDir.close()
	cw.host.close()
	cw.stopTaskEvents()
	cw.gcsMu.Lock()
	if cw.ownGCS && cw.gcs != nil {
		cw.gcs.Close()
	}
	cw.gcsMu.Unlock()
	if cw.ownSeg && cw.node().seg != nil {
		_ = cw.node().seg.Close()
	}
}
