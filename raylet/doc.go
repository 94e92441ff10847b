// Package raylet is goray's per-node daemon (Ray's raylet): it owns the
// node's resources and shared-memory object store, keeps a pool of worker
// processes, and grants worker leases to the processes that submit tasks.
//
// The raylet's state lives in one Proto.Actor actor, so every change to
// resources, leases and workers is made by one goroutine in message order.
// Processes on the node reach it over a wire connection on a unix socket,
// other nodes' raylets, drivers and the GCS on a TCP endpoint; object store
// operations skip the actor (the store is safe for concurrent use) because
// puts and gets are hot paths.
//
// In a cluster the raylet keeps a resource view of the other nodes
// (UpdatePeer, RemovePeer: their reports and deaths) and decides each lease
// request with the policies of package scheduling: it grants or queues it
// here, or answers with a spillback naming a better node (cluster_view.go).
// It learns jobs whose driver runs elsewhere from the GCS (remote_jobs.go),
// reserves placement group bundles in two phases (bundles.go) and pulls
// objects from other nodes' stores (transfer.go, package objstore/transfer).
//
//	r, err := raylet.New(raylet.Config{NodeID: id, SessionDir: dir, Resources: res})
//	if err := r.Start(); err != nil { ... }
//	defer r.Shutdown()
//	fmt.Println(r.Endpoint()) // "unix:/.../raylet.sock"
package raylet
