package serve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/goray/goray/sdk"
)

// The controller: a detached actor that holds every application's target
// (kept in the cluster's key-value store, namespace "serve", so a
// restarted controller carries on) and reconciles the replicas to it:
// starts the missing ones, finds the live ones a previous controller
// started (by their names), checks their health, and stops those no
// target wants. It answers processes asking for a deployment's ready
// replicas, and the proxies asking for the routes.

const (
	controllerName = "serve-controller"
	kvNamespace    = "serve"
	kvAppPrefix    = "app/"
	reconcileEvery = 200 * time.Millisecond
	healthEvery    = 2 * time.Second
	healthTimeout  = 10 * time.Second
	startTimeout   = 2 * time.Minute
	// A replica leaving stops being handed out at once, and is stopped
	// after drainWait, once every process has refreshed its replicas
	// (replicaRefresh) and its calls in flight have ended, or after
	// gracefulTimeout.
	drainWait       = 3 * replicaRefresh
	gracefulTimeout = 20 * time.Second
)

// AppSpec is an application's target, as serve.Run sends it.
type AppSpec struct {
	Name        string
	RoutePrefix string
	Ingress     string
	Deployments []DeploymentSpec
}

// DeploymentSpec is one deployment of an application.
type DeploymentSpec struct {
	Name    string
	Args    []byte
	Options DeploymentOptions
}

// version names what a replica runs: its argument and the options a
// running replica cannot change (the number of replicas is not one).
func (d DeploymentSpec) version() string {
	b, _ := msgpack.Marshal([]any{d.Name, d.Args, d.Options.MaxOngoingRequests, d.Options.CPUs})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:4])
}

// Route is where the proxies send requests under a prefix.
type Route struct {
	Prefix  string
	App     string
	Ingress string
}

// ProxyInfo is a proxy's address, as it registers.
type ProxyInfo struct {
	Node string
	Addr string
}

// Status is the state of Serve on the cluster.
type Status struct {
	Apps    []AppStatus
	Proxies []ProxyInfo
	// Stopping counts the replicas of deleted applications not stopped
	// yet.
	Stopping int
}

// AppStatus is an application's state.
type AppStatus struct {
	Name        string
	RoutePrefix string
	Ingress     string
	Deployments []DeploymentStatus
}

// DeploymentStatus is a deployment's state: RUNNING once its target
// number of replicas of its current version are ready, else UPDATING.
type DeploymentStatus struct {
	Name     string
	State    string
	Target   int
	Replicas []ReplicaStatus
	// Decisions are the autoscaler's latest decisions.
	Decisions []string
}

// ReplicaStatus is one replica's state: STARTING, RUNNING, UNHEALTHY or
// STOPPING (an older version's, once the new ones are ready).
type ReplicaStatus struct {
	Name  string
	State string
}

type controller struct {
	mu      sync.Mutex
	apps    map[string]AppSpec
	deps    map[string]*depState // by app/deployment
	proxies map[string]string    // node -> address
	killing int                  // replicas being stopped now
	ctx     context.Context
	cancel  context.CancelFunc
}

type depState struct {
	app      string
	spec     DeploymentSpec
	version  string
	replicas []*replicaState
	// want is the number of replicas wanted now: NumReplicas, or the
	// autoscaler's; wantSince is when the autoscaler's desire first
	// differed from want, and desire what it was then.
	want      int
	desire    int
	wantSince time.Time
	// scaling logs the autoscaler's decisions, newest last (at most 20).
	decisions []string
}

type replicaState struct {
	name    string
	version string
	ref     replicaRef
	ready   bool
	probing bool
	err     string
	// leaving is when the replica stopped being handed out (zero while
	// it serves); ongoing its calls in flight at its last probe.
	leaving time.Time
	ongoing int
}

var (
	controllerClass   = sdk.RegisterActor0("serve.Controller", newController)
	ctrlDeploy        = sdk.NewMethod1(controllerClass, "Deploy", (*controller).deploy)
	ctrlDelete        = sdk.NewMethod1(controllerClass, "Delete", (*controller).delete)
	ctrlReplicas      = sdk.NewMethod1(controllerClass, "Replicas", (*controller).replicas)
	ctrlRoutes        = sdk.NewMethod0(controllerClass, "Routes", (*controller).routes)
	ctrlStatus        = sdk.NewMethod0(controllerClass, "Status", (*controller).status)
	ctrlRegisterProxy = sdk.NewMethod1(controllerClass, "RegisterProxy", (*controller).registerProxy)
)

func newController(ctx context.Context) (*controller, error) {
	c := &controller{apps: map[string]AppSpec{}, deps: map[string]*depState{}, proxies: map[string]string{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	// The targets a previous controller kept.
	keys, err := sdk.KVKeys(ctx, kvNamespace, kvAppPrefix)
	if err != nil {
		return nil, fmt.Errorf("serve controller: read its state: %w", err)
	}
	for _, k := range keys {
		data, ok, err := sdk.KVGet(ctx, kvNamespace, k)
		if err != nil {
			return nil, fmt.Errorf("serve controller: read %s: %w", k, err)
		}
		var spec AppSpec
		if !ok {
			continue
		}
		if err := msgpack.Unmarshal(data, &spec); err != nil {
			log.Printf("serve controller: skip the unreadable record %s: %v", k, err)
			continue
		}
		c.setTarget(spec)
	}
	go c.loop()
	return c, nil
}

// setTarget makes spec an application's target (c.mu held or not yet
// shared).
func (c *controller) setTarget(spec AppSpec) {
	c.apps[spec.Name] = spec
	want := map[string]bool{}
	for _, d := range spec.Deployments {
		key := deploymentKey(spec.Name, d.Name)
		want[key] = true
		st := c.deps[key]
		if st == nil {
			st = &depState{app: spec.Name}
			c.deps[key] = st
		}
		st.spec, st.version = d, d.version()
		switch a := d.Options.Autoscaling; {
		case a == nil:
			st.want = d.Options.NumReplicas
		case st.want < a.MinReplicas || st.want > a.MaxReplicas || st.want == 0:
			st.want = a.InitialReplicas
		}
	}
	for key, st := range c.deps {
		if st.app == spec.Name && !want[key] {
			st.stopAll() // its replicas stop
		}
	}
}

func (c *controller) deploy(ctx context.Context, spec AppSpec) (bool, error) {
	if err := checkSpec(spec); err != nil {
		return false, err
	}
	data, err := msgpack.Marshal(spec)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	for name, other := range c.apps {
		if name != spec.Name && other.RoutePrefix == spec.RoutePrefix && spec.RoutePrefix != "" {
			c.mu.Unlock()
			return false, fmt.Errorf("serve: route prefix %s is taken by application %s", spec.RoutePrefix, name)
		}
	}
	c.mu.Unlock()
	if err := sdk.KVPut(ctx, kvNamespace, kvAppPrefix+spec.Name, data); err != nil {
		return false, err
	}
	c.mu.Lock()
	c.setTarget(spec)
	c.mu.Unlock()
	return true, nil
}

func checkSpec(spec AppSpec) error {
	if spec.Name == "" || strings.ContainsAny(spec.Name, ":/ ") {
		return fmt.Errorf("serve: application name %q: want a non-empty name without ':', '/' or spaces", spec.Name)
	}
	if spec.RoutePrefix != "" && !strings.HasPrefix(spec.RoutePrefix, "/") {
		return fmt.Errorf("serve: route prefix %q: want one starting with '/'", spec.RoutePrefix)
	}
	found := false
	for _, d := range spec.Deployments {
		ops, err := registry.get(d.Name)
		if err != nil {
			return err
		}
		if err := d.Options.check(d.Name); err != nil {
			return err
		}
		if d.Name == spec.Ingress {
			found = true
			if spec.RoutePrefix != "" && !ops.servesHTTP() {
				return fmt.Errorf("serve: application %s routes %s to deployment %s, which does not serve HTTP (its struct is no http.Handler)", spec.Name, spec.RoutePrefix, d.Name)
			}
		}
	}
	if !found {
		return fmt.Errorf("serve: application %s: its ingress %q is not among its deployments", spec.Name, spec.Ingress)
	}
	return nil
}

func (c *controller) delete(ctx context.Context, app string) (bool, error) {
	c.mu.Lock()
	_, ok := c.apps[app]
	c.mu.Unlock()
	if !ok {
		return false, nil
	}
	if _, err := sdk.KVDelete(ctx, kvNamespace, kvAppPrefix+app); err != nil {
		return false, err
	}
	c.mu.Lock()
	delete(c.apps, app)
	for _, st := range c.deps {
		if st.app == app {
			st.stopAll()
		}
	}
	c.mu.Unlock()
	return true, nil
}

// stopAll retires every replica of the deployment.
func (st *depState) stopAll() {
	st.spec.Options.NumReplicas, st.spec.Options.Autoscaling, st.want = 0, nil, 0
}

// replicas answers a deployment's ready replicas of its current version,
// or, while none is, the ready ones of the version before.
func (c *controller) replicas(ctx context.Context, key string) ([][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.deps[key]
	if st == nil || st.want == 0 {
		return nil, fmt.Errorf("serve: no deployment %s is running", key)
	}
	var current, older [][]byte
	for _, r := range st.replicas {
		switch {
		case !r.ready || !r.leaving.IsZero():
		case r.version == st.version:
			current = append(current, r.ref)
		default:
			older = append(older, r.ref)
		}
	}
	if len(current) > 0 {
		return current, nil
	}
	return older, nil
}

func (c *controller) routes(ctx context.Context) ([]Route, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Route
	for _, a := range c.apps {
		if a.RoutePrefix != "" {
			out = append(out, Route{Prefix: a.RoutePrefix, App: a.Name, Ingress: a.Ingress})
		}
	}
	// Longest prefix first, as the proxies match.
	sort.Slice(out, func(i, j int) bool { return len(out[i].Prefix) > len(out[j].Prefix) })
	return out, nil
}

func (c *controller) registerProxy(ctx context.Context, p ProxyInfo) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.proxies[p.Node] = p.Addr
	return true, nil
}

func (c *controller) status(ctx context.Context) (Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s Status
	for _, a := range c.apps {
		as := AppStatus{Name: a.Name, RoutePrefix: a.RoutePrefix, Ingress: a.Ingress}
		for _, d := range a.Deployments {
			st := c.deps[deploymentKey(a.Name, d.Name)]
			ds := DeploymentStatus{Name: d.Name, Target: st.want, State: "RUNNING", Decisions: slices.Clone(st.decisions)}
			ready := 0
			for _, r := range st.replicas {
				rs := ReplicaStatus{Name: r.name, State: "STARTING"}
				switch {
				case !r.leaving.IsZero():
					rs.State = "STOPPING"
				case r.ready:
					rs.State = "RUNNING"
					ready++
				case r.err != "":
					rs.State = "UNHEALTHY"
				}
				ds.Replicas = append(ds.Replicas, rs)
			}
			if ready < ds.Target {
				ds.State = "UPDATING"
			}
			as.Deployments = append(as.Deployments, ds)
		}
		s.Apps = append(s.Apps, as)
	}
	slices.SortFunc(s.Apps, func(a, b AppStatus) int { return strings.Compare(a.Name, b.Name) })
	s.Stopping = c.killing
	for _, st := range c.deps {
		if _, live := c.apps[st.app]; !live {
			s.Stopping += len(st.replicas)
		}
	}
	for node, addr := range c.proxies {
		s.Proxies = append(s.Proxies, ProxyInfo{Node: node, Addr: addr})
	}
	slices.SortFunc(s.Proxies, func(a, b ProxyInfo) int { return strings.Compare(a.Node, b.Node) })
	return s, nil
}

// loop reconciles until the controller's process ends.
func (c *controller) loop() {
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	lastHealth := time.Now()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		health := time.Since(lastHealth) > healthEvery
		if health {
			lastHealth = time.Now()
		}
		c.reconcile(health)
	}
}

// reconcile moves every deployment a step towards its target: replicas of
// the current version started (or found) up to the target, probed until
// ready; the others stopped once the current version's are all ready.
func (c *controller) reconcile(health bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, st := range c.deps {
		ops, err := registry.get(st.spec.Name)
		if err != nil {
			continue
		}
		if health || st.spec.Options.Autoscaling != nil {
			st.autoscale(time.Now())
		}
		want := st.want
		current, ready := 0, 0
		for _, r := range st.replicas {
			if r.version == st.version && r.leaving.IsZero() {
				current++
				if r.ready {
					ready++
				}
			}
		}
		for i := 0; current < want && i < want; i++ {
			name := fmt.Sprintf("%s:%s:%s:%d", st.app, st.spec.Name, st.version, i)
			if slices.ContainsFunc(st.replicas, func(r *replicaState) bool { return r.name == name }) {
				continue
			}
			r := &replicaState{name: name, version: st.version}
			init := replicaInit{App: st.app, Deployment: st.spec.Name, Replica: name, Version: st.version, Args: st.spec.Args}
			ctx, cancel := context.WithTimeout(c.ctx, startTimeout)
			ref, err := ops.adopt(ctx, name)
			if err != nil {
				ref, err = ops.start(ctx, name, init, st.spec.Options)
			}
			cancel()
			if err != nil {
				r.err = err.Error()
				log.Printf("serve controller: start replica %s: %v", name, err)
				continue
			}
			r.ref = ref
			st.replicas = append(st.replicas, r)
			current++
		}
		now := time.Now()
		// Beyond the target, the newest replicas of the current version
		// leave (scaling down).
		extra := current - want
		for i := len(st.replicas) - 1; i >= 0 && extra > 0; i-- {
			if r := st.replicas[i]; r.version == st.version && r.leaving.IsZero() {
				r.leaving = now
				extra--
			}
		}
		for _, r := range st.replicas {
			// Once the current version's replicas are all ready, the
			// others (an older version) leave.
			if r.leaving.IsZero() && (r.version != st.version && ready >= want || want == 0) {
				r.leaving = now
			}
			// Autoscaled deployments' load is sampled every round.
			if (!r.ready || health || !r.leaving.IsZero() || st.spec.Options.Autoscaling != nil) && !r.probing {
				r.probing = true
				go c.probe(key, r, ops)
			}
		}
		kept := st.replicas[:0]
		for _, r := range st.replicas {
			if gone := now.Sub(r.leaving); !r.leaving.IsZero() && gone > drainWait && (r.ongoing == 0 || !r.ready || gone > gracefulTimeout) {
				c.killing++
				go func(ref replicaRef) {
					ctx, cancel := context.WithTimeout(c.ctx, healthTimeout)
					defer cancel()
					_ = ops.kill(ctx, ref)
					c.mu.Lock()
					c.killing--
					c.mu.Unlock()
				}(r.ref)
				continue
			}
			kept = append(kept, r)
		}
		st.replicas = kept
		if want == 0 && len(st.replicas) == 0 {
			delete(c.deps, key)
		}
	}
}

// autoscale moves want towards what the load asks, after the delays.
func (st *depState) autoscale(now time.Time) {
	a := st.spec.Options.Autoscaling
	if a == nil {
		return
	}
	ongoing, ready := 0, 0
	for _, r := range st.replicas {
		if r.version == st.version && r.leaving.IsZero() && r.ready {
			ongoing += r.ongoing
			ready++
		}
	}
	if ready == 0 {
		return // nothing to judge by yet
	}
	desire := int(math.Ceil(float64(ongoing) / a.TargetOngoingRequests))
	desire = min(max(desire, a.MinReplicas, 1), a.MaxReplicas)
	if desire == st.want {
		st.wantSince = time.Time{}
		return
	}
	if st.wantSince.IsZero() || (desire > st.want) != (st.desire > st.want) {
		st.wantSince, st.desire = now, desire
		return
	}
	st.desire = desire
	delay := a.DownscaleDelay
	if desire > st.want {
		delay = a.UpscaleDelay
	}
	if now.Sub(st.wantSince) < delay {
		return
	}
	msg := fmt.Sprintf("%s: %d -> %d replicas (%d requests in flight, target %g per replica)", now.Format(time.TimeOnly), st.want, desire, ongoing, a.TargetOngoingRequests)
	log.Printf("serve autoscaler: %s/%s %s", st.app, st.spec.Name, msg)
	st.decisions = append(st.decisions, msg)
	if len(st.decisions) > 20 {
		st.decisions = st.decisions[1:]
	}
	st.want, st.wantSince = desire, time.Time{}
}

// probe pings a replica: ready once it answers.
func (c *controller) probe(key string, r *replicaState, ops deploymentOps) {
	timeout := healthTimeout
	if !r.ready {
		timeout = startTimeout
	}
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	ongoing, err := ops.pingReplica(ctx, r.ref)
	c.mu.Lock()
	defer c.mu.Unlock()
	r.probing = false
	r.ready, r.ongoing = err == nil, ongoing
	r.err = ""
	if err != nil && !errors.Is(err, context.Canceled) {
		r.err = err.Error()
	}
}
