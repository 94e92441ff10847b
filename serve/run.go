package serve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/goray/goray/sdk"
)

// RunOption configures Run.
type RunOption func(*runOptions)

type runOptions struct {
	name, prefix string
	host         string
	port         int
	noHTTP       bool
}

// AppName names the application (default "default").
func AppName(name string) RunOption { return func(o *runOptions) { o.name = name } }

// RoutePrefix is the path under which the proxies send requests to the
// application's ingress (default "/").
func RoutePrefix(p string) RunOption { return func(o *runOptions) { o.prefix = p } }

// NoRoute serves the application through handles only.
func NoRoute() RunOption { return func(o *runOptions) { o.noHTTP = true } }

// HTTPHost and HTTPPort are where each node's proxy listens (default
// 127.0.0.1:8000, as Ray Serve's; port 0 picks a free one on each node,
// which Status tells). A proxy already running keeps its address.
func HTTPHost(host string) RunOption { return func(o *runOptions) { o.host = host } }

// HTTPPort: see HTTPHost.
func HTTPPort(port int) RunOption { return func(o *runOptions) { o.port = port } }

// runPoll is how often Run looks for its application to be running.
const runPoll = 50 * time.Millisecond

// Run deploys an application (b and the deployments its argument's
// handles bind), starts the controller and a proxy on every node if they
// are not running, waits until every deployment has its replicas ready,
// and returns a handle of the ingress. Running an application again under
// its name updates it: replicas of a changed deployment are replaced once
// the new ones are ready.
func Run[T any](ctx context.Context, b *Bound[T], opts ...RunOption) (Handle[T], error) {
	o := runOptions{name: "default", prefix: "/", host: "127.0.0.1", port: 8000}
	for _, f := range opts {
		f(&o)
	}
	if o.noHTTP {
		o.prefix = ""
	}
	spec := AppSpec{Name: o.name, RoutePrefix: o.prefix, Ingress: b.spec.name}
	seen := map[string]*boundSpec{}
	var walk func(s *boundSpec) error
	walk = func(s *boundSpec) error {
		if s.err != nil {
			return fmt.Errorf("serve: deployment %s: %w", s.name, s.err)
		}
		if prev, ok := seen[s.name]; ok {
			if prev != s && string(prev.arg) != string(s.arg) {
				return fmt.Errorf("serve: deployment %s is bound twice in application %s, with different arguments", s.name, o.name)
			}
			return nil
		}
		seen[s.name] = s
		spec.Deployments = append(spec.Deployments, DeploymentSpec{Name: s.name, Args: s.arg, Options: s.opts})
		for _, d := range s.deps {
			if err := walk(d); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(&b.spec); err != nil {
		return Handle[T]{}, err
	}
	if err := checkSpec(spec); err != nil {
		return Handle[T]{}, err
	}
	c, err := startController(ctx)
	if err != nil {
		return Handle[T]{}, err
	}
	if _, err := ctrlDeploy.Remote(ctx, c, spec).Get(ctx); err != nil {
		return Handle[T]{}, err
	}
	var proxyNodes []string
	if !o.noHTTP {
		if proxyNodes, err = startProxies(ctx, o.host, o.port); err != nil {
			return Handle[T]{}, err
		}
	}
	for {
		st, err := ctrlStatus.Remote(ctx, c).Get(ctx)
		if err != nil {
			return Handle[T]{}, err
		}
		// Running, and every proxy started has told the controller
		// where it listens.
		if appRunning(st, o.name) && proxiesRegistered(st, proxyNodes) {
			return Handle[T]{App: o.name, Deployment: b.spec.name}, nil
		}
		select {
		case <-ctx.Done():
			return Handle[T]{}, fmt.Errorf("serve: application %s is not running yet: %w (serve.GetStatus tells why)", o.name, ctx.Err())
		case <-time.After(runPoll):
		}
	}
}

func proxiesRegistered(st Status, nodes []string) bool {
	for _, n := range nodes {
		if !slices.ContainsFunc(st.Proxies, func(p ProxyInfo) bool { return p.Node == n }) {
			return false
		}
	}
	return true
}

func appRunning(st Status, app string) bool {
	for _, a := range st.Apps {
		if a.Name != app {
			continue
		}
		for _, d := range a.Deployments {
			if d.State != "RUNNING" {
				return false
			}
		}
		return true
	}
	return false
}

// startController starts the controller, or finds the running one.
func startController(ctx context.Context) (sdk.Actor[controller], error) {
	c, err := controllerClass.Options(sdk.Name(controllerName), sdk.Namespace(Namespace), sdk.Detached(), sdk.GetIfExists(),
		sdk.MaxRestarts(-1), sdk.NumCPUs(0)).Remote(ctx)
	if err != nil {
		return c, fmt.Errorf("serve: start the controller: %w", err)
	}
	return c, nil
}

// controllerHandle finds the running controller.
func controllerHandle(ctx context.Context) (sdk.Actor[controller], error) {
	c, err := sdk.GetActor[controller](ctx, controllerName, Namespace)
	if err != nil {
		return c, fmt.Errorf("serve: no controller is running (serve.Run starts it): %w", err)
	}
	return c, nil
}

// startProxies starts a proxy on every alive node that has none, and
// returns the nodes.
func startProxies(ctx context.Context, host string, port int) ([]string, error) {
	nodes, err := sdk.ListNodes(ctx, sdk.StateFilter("state=ALIVE"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes {
		id, err := sdk.ParseNodeID(n.NodeID)
		if err != nil {
			return nil, err
		}
		p, err := proxyClass.Options(sdk.Name("serve-proxy:"+n.NodeID), sdk.Namespace(Namespace), sdk.Detached(), sdk.GetIfExists(),
			sdk.MaxRestarts(-1), sdk.NumCPUs(0), sdk.Scheduling(sdk.NodeAffinity(id, false))).Remote(ctx, ProxyConfig{Node: n.NodeID, Host: host, Port: port})
		if err != nil {
			return nil, fmt.Errorf("serve: start the proxy on node %.8s: %w", n.NodeID, err)
		}
		if _, err := proxyAddr.Remote(ctx, p).Get(ctx); err != nil {
			return nil, fmt.Errorf("serve: the proxy on node %.8s: %w", n.NodeID, err)
		}
		out = append(out, n.NodeID)
	}
	return out, nil
}

// GetStatus reports the applications, their deployments' replicas and the
// proxies' addresses.
func GetStatus(ctx context.Context) (Status, error) {
	c, err := controllerHandle(ctx)
	if err != nil {
		return Status{}, err
	}
	return ctrlStatus.Remote(ctx, c).Get(ctx)
}

// Delete stops an application: its replicas stop, its route goes.
func Delete(ctx context.Context, app string) error {
	c, err := controllerHandle(ctx)
	if err != nil {
		return err
	}
	ok, err := ctrlDelete.Remote(ctx, c, app).Get(ctx)
	if err == nil && !ok {
		err = fmt.Errorf("serve: no application %s", app)
	}
	return err
}

// Shutdown stops every application, the proxies and the controller.
func Shutdown(ctx context.Context) error {
	c, err := controllerHandle(ctx)
	if err != nil {
		return nil // nothing runs
	}
	st, err := ctrlStatus.Remote(ctx, c).Get(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range st.Apps {
		if _, err := ctrlDelete.Remote(ctx, c, a.Name).Get(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// The replicas stop as the controller reconciles.
	for {
		st, err := ctrlStatus.Remote(ctx, c).Get(ctx)
		if err != nil || len(st.Apps) == 0 && st.Stopping == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(runPoll):
		}
	}
	nodes, _ := sdk.ListNodes(ctx)
	for _, n := range nodes {
		if p, err := sdk.GetActor[proxy](ctx, "serve-proxy:"+n.NodeID, Namespace); err == nil {
			errs = append(errs, sdk.Kill(ctx, p, true))
		}
	}
	errs = append(errs, sdk.Kill(ctx, c, true))
	return errors.Join(errs...)
}
