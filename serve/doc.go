// Package serve runs scalable, supervised HTTP and RPC services of Go
// structs on a goray cluster, as Ray Serve does for Python. It is built
// on goray's public API (package sdk) only: replicas are goray actors, a
// detached controller actor keeps the target state (in the cluster's
// key-value store) and reconciles the replicas to it, and an HTTP proxy
// actor per node routes requests to the replicas.
//
// A deployment is a Go struct with a constructor, registered at package
// init (the cluster's workers run the same binary):
//
//	type Greeter struct{ greeting string }
//
//	func (g *Greeter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
//		fmt.Fprintf(w, "%s, %s", g.greeting, r.URL.Query().Get("name"))
//	}
//
//	func (g *Greeter) Greet(ctx context.Context, name string) (string, error) {
//		return g.greeting + ", " + name, nil
//	}
//
//	var GreeterDep = serve.Register("greeter", func(ctx context.Context, greeting string) (*Greeter, error) {
//		return &Greeter{greeting: greeting}, nil
//	}, serve.NumReplicas(2))
//
//	var Greet = serve.NewMethod(GreeterDep, "Greet", (*Greeter).Greet)
//
// An application is a deployment bound to its constructor's argument; the
// argument may hold handles of other deployments of the application
// (serve.HandleOf), which the replicas use to call them:
//
//	h, err := serve.Run(ctx, GreeterDep.Bind("hello"), serve.AppName("greet"), serve.RoutePrefix("/greet"))
//	msg, err := Greet.Remote(ctx, h, "goray").Get(ctx)   // "hello, goray"
//	// and GET http://<node>:8000/greet?name=goray answers "hello, goray"
//
// A deployment serves HTTP when its struct is an http.Handler (any router
// works inside), and typed methods through handles (NewMethod); handle
// calls go straight to a replica, as actor calls do, chosen by the power
// of two choices over the requests each replica has in flight from this
// process.
package serve
