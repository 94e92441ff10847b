package gcs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
)

// DefaultRequestTimeout applies to Client calls whose context has no
// deadline, so a lost reply cannot block a caller forever.
const DefaultRequestTimeout = 10 * time.Second

// Client talks to the GCS over NATS. It is safe for concurrent use.
type Client struct {
	nc        *nats.Conn
	log       zerolog.Logger
	closeOnce sync.Once
	// outageWait is how long a request keeps trying while no GCS answers
	// (nanoseconds; see SetOutageWait).
	outageWait atomic.Int64

	// reconnected holds what runs after the NATS connection comes back
	// (OnReconnect).
	// dropped is closed (and replaced) each time the connection drops: a
	// read-only request in flight then is sent again (see request).
	droppedMu sync.Mutex
	dropped   chan struct{}

	// packages is the runtime env object store, opened on first use on a
	// connection of its own (packagesNC).
	packagesMu sync.Mutex
	packages   *Packages
	packagesNC *nats.Conn

	reconnectMu sync.Mutex
	reconnected map[uint64]func()
	reconnectID uint64
}

// OnReconnect runs f (on a goroutine of its own) each time the client's
// NATS connection comes back after it was lost: events published while it
// was away (an actor restarted, a node died) were missed, so a watcher
// fetches the state again. cancel stops it.
func (c *Client) OnReconnect(f func()) (cancel func()) {
	c.reconnectMu.Lock()
	defer c.reconnectMu.Unlock()
	if c.reconnected == nil {
		c.reconnected = map[uint64]func(){}
	}
	c.reconnectID++
	id := c.reconnectID
	c.reconnected[id] = f
	return func() {
		c.reconnectMu.Lock()
		delete(c.reconnected, id)
		c.reconnectMu.Unlock()
	}
}

func (c *Client) runReconnected() {
	c.reconnectMu.Lock()
	fs := make([]func(), 0, len(c.reconnected))
	for _, f := range c.reconnected {
		fs = append(fs, f)
	}
	c.reconnectMu.Unlock()
	for _, f := range fs {
		go f()
	}
}

// SetOutageWait makes requests ride out a GCS outage (the head
// restarting): while no GCS answers on the subject, a request is sent again
// every outageRetry for up to d (within its context). Zero, the default,
// fails at once with ErrUnavailable. Only unanswered requests are sent
// again: a request the GCS received is never repeated.
func (c *Client) SetOutageWait(d time.Duration) { c.outageWait.Store(int64(d)) }

// outageRetry is the pause between requests while no GCS answers.
const outageRetry = 100 * time.Millisecond

// connectOptions are the settings every goray NATS connection uses. A
// cluster's NATS server is local or on the LAN, so reconnect attempts are
// quick and never give up: a raylet must ride out a GCS restart.
func connectOptions(name string, log zerolog.Logger, timeout time.Duration) []nats.Option {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		// While the head restarts, another server may answer on its
		// address for a moment (another cluster's, on a port freed by the
		// head): nats.go would close the connection for good after that
		// server refused us twice. Keep trying; the head comes back.
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("NATS reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS async error")
		}),
	}
	if timeout > 0 {
		opts = append(opts, nats.Timeout(timeout))
	}
	return opts
}

// Dial connects to the NATS server at url (comma-separated URLs are
// alternatives). extra options are applied after goray's defaults, e.g.
// nats.Name to say which component is connecting. Dial does not contact the
// GCS itself: a raylet may dial before the GCS has finished starting.
func Dial(ctx context.Context, url string, logger zerolog.Logger, extra ...nats.Option) (*Client, error) {
	timeout := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, fmt.Errorf("%w: dial %s: %w", ErrUnavailable, url, context.DeadlineExceeded)
		}
	}
	log := logger.With().Str("component", "gcs-client").Logger()
	opts := append(connectOptions("goray-gcs-client", log, timeout), extra...)

	type result struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := connectNATS(url, opts, log)
		ch <- result{nc, err}
	}()
	select {
	case r := <-ch:
		if errors.Is(r.err, nats.ErrAuthorization) || errors.Is(r.err, nats.ErrAuthExpired) || errors.Is(r.err, nats.ErrAuthRevoked) {
			return nil, fmt.Errorf("%w: dial %s: NATS refused our credentials (wrong cluster token?): %w", ErrUnauthorized, url, r.err)
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: dial %s: %w", ErrUnavailable, url, r.err)
		}
		c := &Client{nc: r.nc, log: log, dropped: make(chan struct{})}
		r.nc.SetReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("NATS reconnected")
			c.runReconnected()
		})
		r.nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("NATS disconnected")
			}
			c.signalDropped()
		})
		return c, nil
	case <-ctx.Done():
		// nats.Connect takes no context; close whatever it yields later.
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("%w: dial %s: %w", ErrUnavailable, url, ctx.Err())
	}
}

// connectNATS connects with opts. A NATS server that authenticates no one
// (an operator's own server, started without auth for goray) refuses the
// nkey a goray process signs in with, so the connection is made again
// without it, and a warning says that anyone reaching that server can read
// and change the cluster's state.
//
// With several URLs (a NATS cluster), nats.go tries each and reports only
// that none was available, whatever each said: a server that refuses the
// nkey is then found by connecting again without it. And while a server
// of the cluster is down the others may be electing a leader: connecting
// is tried again for up to connectRetryFor. A single URL is tried once:
// a process asking whether a cluster runs there wants a quick no.
func connectNATS(url string, opts []nats.Option, log zerolog.Logger) (*nats.Conn, error) {
	giveUp := time.Now()
	if strings.Contains(url, ",") {
		giveUp = giveUp.Add(connectRetryFor)
	}
	for {
		nc, err := nats.Connect(url, opts...)
		if errors.Is(err, nats.ErrNkeysNotSupported) || errors.Is(err, nats.ErrNoServers) {
			plain, perr := nats.Connect(url, append(opts, nats.Nkey("", nil))...)
			if perr == nil {
				log.Warn().Str("url", url).Msg("this NATS server accepts clients without authentication: anyone who reaches it can read and change the cluster's state (see docs/security.md)")
				return plain, nil
			}
			if errors.Is(err, nats.ErrNkeysNotSupported) {
				err = perr
			}
		}
		if !errors.Is(err, nats.ErrNoServers) || !time.Now().Before(giveUp) {
			return nc, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// connectRetryFor bounds connectNATS's retries while no server answers.
const connectRetryFor = 10 * time.Second

// Close flushes pending publishes (node reports) and closes the connection.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		// A disconnected connection would make Flush wait out its timeout
		// for nothing: buffered publishes are lost either way.
		if c.nc.IsConnected() {
			_ = c.nc.FlushTimeout(time.Second)
		}
		c.nc.Close()
		c.packagesMu.Lock()
		if c.packagesNC != nil {
			c.packagesNC.Close()
		}
		c.packagesMu.Unlock()
	})
}

// NATS exposes the connection, for subscribing to events (SubjectNodeEvents,
// SubjectJobEvents) or for traffic other than the GCS's.
func (c *Client) NATS() *nats.Conn { return c.nc }

// replyWithError is implemented by every generated reply carrying a GcsError.
type replyWithError interface {
	proto.Message
	GetError() *protos.GcsError
}

// call sends req on subject and decodes the answer into rep, turning
// transport failures and GcsErrors into errors wrapping the sentinels.
func (c *Client) call(ctx context.Context, subject string, req proto.Message, rep replyWithError) error {
	data, err := proto.Marshal(req)
	if err != nil {
		return fmt.Errorf("%w: %s: encode request: %w", ErrInvalid, subject, err)
	}
	m, err := c.request(ctx, subject, data)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(m.Data, rep); err != nil {
		return fmt.Errorf("%w: %s: cannot decode reply as %s: %w",
			ErrInternal, subject, rep.ProtoReflect().Descriptor().FullName(), err)
	}
	return replyError(subject, rep.GetError())
}

func (c *Client) request(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	giveUp := time.Now().Add(time.Duration(c.outageWait.Load()))
	for {
		m, err := c.requestOnce(ctx, subject, data)
		// No responders: the request reached NATS but no GCS serves the
		// subject (it is starting), so it was not handled; sending it
		// again is safe. A read-only request whose connection dropped
		// while it waited may have been lost with the connection: it is
		// sent again rather than waited for until ctx ends.
		retry := errors.Is(err, nats.ErrNoResponders) || errors.Is(err, errDropped) && readOnly(subject)
		if err == nil || !retry || !time.Now().Before(giveUp) {
			return m, err
		}
		t := time.NewTimer(outageRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

func (c *Client) requestOnce(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	var m *nats.Msg
	var err error
	if readOnly(subject) && c.outageWait.Load() > 0 {
		m, err = c.requestUnlessDropped(ctx, subject, data)
	} else {
		m, err = c.nc.RequestWithContext(ctx, subject, data)
	}
	if err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil, fmt.Errorf("%w: %s: %w", ErrClosed, subject, err)
		}
		// No responders, timeouts and disconnects all mean the GCS is not
		// answering right now; the cause stays in the chain.
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, subject, err)
	}
	return m, nil
}

// errDropped: the connection dropped while a request waited for its
// answer.
var errDropped = errors.New("the NATS connection dropped while the request waited")

// requestUnlessDropped is a request that stops waiting when the
// connection drops (errDropped), for a client that waits out outages
// (SetOutageWait): request sends it again.
func (c *Client) requestUnlessDropped(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	c.droppedMu.Lock()
	dropped := c.dropped
	c.droppedMu.Unlock()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-dropped:
			cancel()
		case <-actx.Done():
		}
	}()
	m, err := c.nc.RequestWithContext(actx, subject, data)
	if err != nil && ctx.Err() == nil && actx.Err() != nil {
		return nil, errDropped
	}
	return m, err
}

// signalDropped wakes the requests waiting on the connection that dropped.
func (c *Client) signalDropped() {
	c.droppedMu.Lock()
	defer c.droppedMu.Unlock()
	if c.dropped != nil {
		close(c.dropped)
	}
	c.dropped = make(chan struct{})
}

// readOnly reports whether a request on subject changes nothing, so
// sending it twice is harmless.
func readOnly(subject string) bool {
	for _, suffix := range []string{".list", ".get", ".info", ".keys", ".logs"} {
		if strings.HasSuffix(subject, suffix) {
			return true
		}
	}
	return false
}

// RegisterNode adds (or re-adds) a node as ALIVE.
func (c *Client) RegisterNode(ctx context.Context, info *protos.NodeInfo) error {
	return c.call(ctx, SubjectNodeRegister, &protos.RegisterNodeRequest{Node: info}, &protos.RegisterNodeReply{})
}

// UnregisterNode marks a node DEAD (it stays listed, as in Ray).
func (c *Client) UnregisterNode(ctx context.Context, id protos.NodeID) error {
	return c.call(ctx, SubjectNodeUnregister, &protos.UnregisterNodeRequest{NodeId: id.Bytes()}, &protos.UnregisterNodeReply{})
}

// ListNodes returns all nodes, alive and dead, oldest first.
func (c *Client) ListNodes(ctx context.Context) ([]*protos.NodeInfo, error) {
	rep := &protos.ListNodesReply{}
	if err := c.call(ctx, SubjectNodeList, &protos.ListNodesRequest{}, rep); err != nil {
		return nil, err
	}
	return rep.GetNodes(), nil
}

// ReportNode publishes the node's current state; it is also the node's
// heartbeat. It does not wait for the GCS.
func (c *Client) ReportNode(info *protos.NodeInfo) error {
	id, err := protos.UniqueIDFromBytes(info.GetNodeId())
	if err != nil {
		return fmt.Errorf("%w: report node: %w", ErrInvalid, err)
	}
	data, err := proto.Marshal(&protos.NodeReport{Node: info})
	if err != nil {
		return fmt.Errorf("%w: report node: encode: %w", ErrInvalid, err)
	}
	if err := c.nc.Publish(NodeReportSubject(id), data); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("%w: report node: %w", ErrClosed, err)
		}
		return fmt.Errorf("%w: report node: %w", ErrUnavailable, err)
	}
	return nil
}

// RegisterJob records a job (a driver run).
func (c *Client) RegisterJob(ctx context.Context, job *protos.JobInfo) error {
	return c.call(ctx, SubjectJobRegister, &protos.RegisterJobRequest{Job: job}, &protos.RegisterJobReply{})
}

// FinishJob marks a job finished; finishing twice is not an error.
func (c *Client) FinishJob(ctx context.Context, id protos.JobID) error {
	return c.call(ctx, SubjectJobFinish, &protos.FinishJobRequest{JobId: id.Bytes()}, &protos.FinishJobReply{})
}

// ListJobs returns all jobs, oldest first.
func (c *Client) ListJobs(ctx context.Context) ([]*protos.JobInfo, error) {
	rep := &protos.ListJobsReply{}
	if err := c.call(ctx, SubjectJobList, &protos.ListJobsRequest{}, rep); err != nil {
		return nil, err
	}
	return rep.GetJobs(), nil
}

// RegisterFunctions stores a job's function table, replacing any earlier one.
func (c *Client) RegisterFunctions(ctx context.Context, t *protos.FunctionTable) error {
	return c.call(ctx, SubjectFuncRegister, &protos.RegisterFunctionsRequest{Table: t}, &protos.RegisterFunctionsReply{})
}

// GetFunctions returns a job's function table, or an error wrapping
// ErrNotFound.
func (c *Client) GetFunctions(ctx context.Context, job protos.JobID) (*protos.FunctionTable, error) {
	rep := &protos.GetFunctionsReply{}
	if err := c.call(ctx, SubjectFuncGet, &protos.GetFunctionsRequest{JobId: job.Bytes()}, rep); err != nil {
		return nil, err
	}
	return rep.GetTable(), nil
}

// KVPut stores value under (ns, key). Without overwrite an existing value
// is kept. added reports whether the key was new.
func (c *Client) KVPut(ctx context.Context, ns, key string, value []byte, overwrite bool) (added bool, err error) {
	rep := &protos.KVPutReply{}
	err = c.call(ctx, SubjectKVPut, &protos.KVPutRequest{Namespace: ns, Key: key, Value: value, Overwrite: overwrite}, rep)
	return rep.GetAdded(), err
}

// KVGet returns the value under (ns, key) and whether it exists.
func (c *Client) KVGet(ctx context.Context, ns, key string) ([]byte, bool, error) {
	rep := &protos.KVGetReply{}
	if err := c.call(ctx, SubjectKVGet, &protos.KVGetRequest{Namespace: ns, Key: key}, rep); err != nil {
		return nil, false, err
	}
	if !rep.GetFound() {
		return nil, false, nil
	}
	v := rep.GetValue()
	if v == nil {
		// proto3 does not distinguish empty from absent bytes; a found
		// key always has a non-nil value.
		v = []byte{}
	}
	return v, true, nil
}

// KVDelete removes (ns, key) and reports whether it existed.
func (c *Client) KVDelete(ctx context.Context, ns, key string) (bool, error) {
	rep := &protos.KVDeleteReply{}
	err := c.call(ctx, SubjectKVDelete, &protos.KVDeleteRequest{Namespace: ns, Key: key}, rep)
	return rep.GetDeleted(), err
}

// KVKeys lists the keys of namespace ns starting with prefix, sorted.
func (c *Client) KVKeys(ctx context.Context, ns, prefix string) ([]string, error) {
	rep := &protos.KVKeysReply{}
	if err := c.call(ctx, SubjectKVKeys, &protos.KVKeysRequest{Namespace: ns, Prefix: prefix}, rep); err != nil {
		return nil, err
	}
	return rep.GetKeys(), nil
}

// ClusterInfo returns nodes, jobs and the session directory.
func (c *Client) ClusterInfo(ctx context.Context) (*protos.ClusterInfoReply, error) {
	rep := &protos.ClusterInfoReply{}
	if err := c.call(ctx, SubjectClusterInfo, &protos.ClusterInfoRequest{}, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// RequestShutdown asks the GCS process to shut the cluster down. It returns
// once the GCS has acknowledged; the shutdown itself happens afterwards.
func (c *Client) RequestShutdown(ctx context.Context) error {
	data, err := proto.Marshal(&protos.ShutdownRequest{})
	if err != nil {
		return fmt.Errorf("%w: %s: encode request: %w", ErrInvalid, SubjectClusterShutdown, err)
	}
	m, err := c.request(ctx, SubjectClusterShutdown, data)
	if err != nil {
		return err
	}
	return shutdownReplyError(m)
}

// shutdownReplyError reads the error headers ShutdownReply uses in place of
// an error field.
func shutdownReplyError(m *nats.Msg) error {
	if code := m.Header.Get(HeaderErrorCode); code != "" {
		return replyError(SubjectClusterShutdown, &protos.GcsError{Code: code, Message: m.Header.Get(HeaderErrorMessage)})
	}
	if err := proto.Unmarshal(m.Data, &protos.ShutdownReply{}); err != nil {
		return fmt.Errorf("%w: %s: cannot decode reply: %w", ErrInternal, SubjectClusterShutdown, err)
	}
	return nil
}

// RegisterActor registers an actor and starts placing it. It returns the
// actor's record (PENDING_CREATION), or with get_if_exists the existing
// live actor of the same name. A name taken in the namespace is an error
// wrapping ErrAlreadyExists.
func (c *Client) RegisterActor(ctx context.Context, spec *protos.ActorSpec) (*protos.ActorInfo, error) {
	rep := &protos.RegisterActorReply{}
	if err := c.call(ctx, SubjectActorRegister, &protos.RegisterActorRequest{Spec: spec}, rep); err != nil {
		return nil, err
	}
	return rep.GetActor(), nil
}

// GetActor returns an actor's record, DEAD ones included, or an error
// wrapping ErrNotFound.
func (c *Client) GetActor(ctx context.Context, id protos.UniqueID) (*protos.ActorInfo, error) {
	rep := &protos.GetActorReply{}
	if err := c.call(ctx, SubjectActorGet, &protos.GetActorRequest{ActorId: id.Bytes()}, rep); err != nil {
		return nil, err
	}
	return rep.GetActor(), nil
}

// GetNamedActor returns the live (not DEAD) actor named name in namespace,
// or an error wrapping ErrNotFound.
func (c *Client) GetNamedActor(ctx context.Context, name, namespace string) (*protos.ActorInfo, error) {
	rep := &protos.GetActorReply{}
	if err := c.call(ctx, SubjectActorGet, &protos.GetActorRequest{Name: name, Namespace: namespace}, rep); err != nil {
		return nil, err
	}
	return rep.GetActor(), nil
}

// ListActors returns the actors of job, or all actors if job is zero,
// DEAD ones included; started actors first, oldest first.
func (c *Client) ListActors(ctx context.Context, job protos.JobID) ([]*protos.ActorInfo, error) {
	req := &protos.ListActorsRequest{}
	if !job.IsZero() {
		req.JobId = job.Bytes()
	}
	rep := &protos.ListActorsReply{}
	if err := c.call(ctx, SubjectActorList, req, rep); err != nil {
		return nil, err
	}
	return rep.GetActors(), nil
}

// KillActor stops an actor. With noRestart it is DEAD for good; without,
// it restarts if it has restarts left (as after a crash). Killing a DEAD
// actor does nothing. It returns once the GCS has recorded the new state;
// the worker process exits afterwards.
func (c *Client) KillActor(ctx context.Context, id protos.UniqueID, noRestart bool) error {
	return c.call(ctx, SubjectActorKill, &protos.KillActorGcsRequest{ActorId: id.Bytes(), NoRestart: noRestart}, &protos.KillActorGcsReply{})
}

// WatchActor calls fn with the actor's record on each of its state
// changes (published on ActorSubject(id)), in order, on one goroutine,
// until unsubscribe is called. It returns once the subscription is active,
// so a GetActor after it cannot miss a change in between.
//
// Changes published while the client's NATS connection was down are
// missed: when it comes back, the actor's record is fetched and handed to
// fn too (fn must ignore news older than what it has).
func (c *Client) WatchActor(id protos.UniqueID, fn func(*protos.ActorInfo)) (unsubscribe func(), err error) {
	unsub, err := watch(c, ActorSubject(id), func() *protos.ActorInfo { return &protos.ActorInfo{} }, fn)
	if err != nil {
		return nil, err
	}
	stop := c.OnReconnect(func() {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultRequestTimeout)
		defer cancel()
		if info, err := c.GetActor(ctx, id); err == nil {
			fn(info)
		}
	})
	return func() { stop(); unsub() }, nil
}

// watch subscribes fn to the messages of type T published on subject and
// returns once the subscription is active.
func watch[T proto.Message](c *Client, subject string, newT func() T, fn func(T)) (unsubscribe func(), err error) {
	sub, err := c.nc.Subscribe(subject, func(m *nats.Msg) {
		v := newT()
		if err := DecodeEvent(m.Data, v); err != nil {
			c.log.Warn().Err(err).Str("subject", subject).Msgf("cannot decode %T", v)
			return
		}
		fn(v)
	})
	if err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil, fmt.Errorf("%w: watch %s: %w", ErrClosed, subject, err)
		}
		return nil, fmt.Errorf("%w: watch %s: %w", ErrUnavailable, subject, err)
	}
	if err := c.nc.FlushTimeout(DefaultRequestTimeout); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("%w: watch %s: %w", ErrUnavailable, subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// Packages returns the runtime env packages store (BucketPackages),
// binding to it on first use. It has a NATS connection of its own, with
// the client's server, credentials and handlers: tens of megabytes of a
// binary on the way must not queue the GCS's requests behind them, and
// while the connection is down a publish fails at once instead of filling
// a reconnect buffer (an upload is retried whole).
func (c *Client) Packages(ctx context.Context) (*Packages, error) {
	c.packagesMu.Lock()
	defer c.packagesMu.Unlock()
	if c.packages != nil {
		return c.packages, nil
	}
	opts := c.nc.Opts
	opts.Name += " (packages)"
	opts.ReconnectBufSize = -1
	log := c.log
	opts.ReconnectedCB = nil
	opts.DisconnectedErrCB = func(_ *nats.Conn, err error) {
		if err != nil {
			log.Info().Err(err).Msg("NATS connection of the packages store lost")
		}
	}
	nc, err := opts.Connect()
	if err != nil {
		return nil, fmt.Errorf("%w: connect for %s: %w", ErrUnavailable, BucketPackages, err)
	}
	p, err := OpenPackages(ctx, nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c.packages, c.packagesNC = p, nc
	return p, nil
}

// ListTasks asks the task manager for task attempts, folded from their
// jobs' task events (req.JobId empty: every job whose events are kept).
func (c *Client) ListTasks(ctx context.Context, req *protos.ListTasksRequest) (*protos.ListTasksReply, error) {
	rep := &protos.ListTasksReply{}
	if err := c.call(ctx, SubjectTaskList, req, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// SummarizeTasks counts task attempts by function and state.
func (c *Client) SummarizeTasks(ctx context.Context, job protos.JobID) (*protos.SummarizeTasksReply, error) {
	req := &protos.SummarizeTasksRequest{}
	if !job.IsZero() {
		req.JobId = job.Bytes()
	}
	rep := &protos.SummarizeTasksReply{}
	if err := c.call(ctx, SubjectTaskSummarize, req, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// SubmitJob asks the head's job server to run a driver.
func (c *Client) SubmitJob(ctx context.Context, req *protos.SubmitJobRequest) (*protos.Submission, error) {
	rep := &protos.SubmitJobReply{}
	if err := c.call(ctx, SubjectJobSubmit, req, rep); err != nil {
		return nil, err
	}
	return rep.GetSubmission(), nil
}

// GetSubmission reads a submitted job's record.
func (c *Client) GetSubmission(ctx context.Context, id string) (*protos.Submission, error) {
	rep := &protos.GetSubmissionReply{}
	if err := c.call(ctx, SubjectJobGet, &protos.GetSubmissionRequest{SubmissionId: id}, rep); err != nil {
		return nil, err
	}
	return rep.GetSubmission(), nil
}

// ListSubmissions lists the submitted jobs, oldest first.
func (c *Client) ListSubmissions(ctx context.Context) ([]*protos.Submission, error) {
	rep := &protos.ListSubmissionsReply{}
	if err := c.call(ctx, SubjectJobSubmissions, &protos.ListSubmissionsRequest{}, rep); err != nil {
		return nil, err
	}
	return rep.GetSubmissions(), nil
}

// StopJob stops a submitted job's driver; false if it had already ended.
func (c *Client) StopJob(ctx context.Context, id string) (bool, error) {
	rep := &protos.StopJobReply{}
	if err := c.call(ctx, SubjectJobStop, &protos.StopJobRequest{SubmissionId: id}, rep); err != nil {
		return false, err
	}
	return rep.GetStopped(), nil
}

// DeleteSubmission forgets an ended job: its record and its output.
func (c *Client) DeleteSubmission(ctx context.Context, id string) error {
	return c.call(ctx, SubjectJobDelete, &protos.DeleteSubmissionRequest{SubmissionId: id}, &protos.DeleteSubmissionReply{})
}

// JobLogs reads a submitted job's output from stream sequence from.
func (c *Client) JobLogs(ctx context.Context, id string, from uint64) (*protos.JobLogsReply, error) {
	rep := &protos.JobLogsReply{}
	if err := c.call(ctx, SubjectJobLogs, &protos.JobLogsRequest{SubmissionId: id, From: from}, rep); err != nil {
		return nil, err
	}
	return rep, nil
}
