// Package raylet is goray's per-node daemon (Ray's raylet): it owns the
// node's resources and shared-memory object store, keeps a pool of worker
// processes, and grants worker leases to the processes that submit tasks.
//
// The raylet's state lives in one Proto.Actor actor, so every change to
// resources, leases and workers is made by one goroutine in message order.
// Processes on the node reach it over a wire connection on a unix socket;
// object store operations skip the actor (the store is safe for concurrent
// use) because puts and gets are hot paths.
//
//	r, err := raylet.New(raylet.Config{NodeID: id, SessionDir: dir, Resources: res})
//	if err := r.Start(); err != nil { ... }
//	defer r.Shutdown()
//	fmt.Println(r.Endpoint()) // "unix:/.../raylet.sock"
package raylet
