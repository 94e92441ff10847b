// Package goraytest runs goray clusters inside a package's own `go test`,
// as Ray's cluster_utils.Cluster does for pytest.
//
// # Mental model
//
// A goray program is a driver; the tasks and actors it starts run in
// worker processes, which goray starts by executing the driver's own
// binary again. In a test, that binary is the test binary: so every test
// binary that uses goray needs a TestMain that hands the process over to
// goraytest when it was started as something other than a test run:
//
//	func TestMain(m *testing.M) { goraytest.Main(m) }
//
// Main runs the process as a goray worker, or as a node daemon of a
// Cluster (see below), or else runs the tests.
//
// There are two kinds of cluster.
//
// Start gives a test the embedded single-node cluster of sdk.Init: NATS,
// the GCS and a raylet inside the test process itself. It is the cheap
// one; most tests want it.
//
// NewCluster starts a cluster of several nodes, each a process of its own
// on this machine (the test binary again, as a node daemon): a head (NATS,
// the GCS and a raylet) and, with Cluster.AddNode, nodes that join it. They
// talk over real NATS and TCP and each has its own object store, so a test
// can see how work spreads over nodes and what happens when one fails:
// Node.Kill SIGKILLs a node's process as a machine dying would, and the
// GCS declares it dead after the cluster's node timeout (2s by default, see
// NodeTimeout). Cluster.Connect makes the test process the cluster's
// driver.
//
// Either way, the cluster is the test's: its cleanup (t.Cleanup) ends the
// driver session (sdk.Shutdown), stops every node process, checks that no
// worker process or shm segment (/dev/shm/goray-PID-*) is left behind and
// removes the session directories. A node process also stops when the
// test process dies without cleaning up (its stdin, a pipe from the test
// process, closes). When a test fails, the cleanup logs each node's output
// (warnings and errors; GORAY_LOG_LEVEL=debug asks for more).
//
// sdk holds one driver session per process, so tests that use goraytest
// must not run in parallel with each other (no t.Parallel).
//
// Functions and actors must be registered at package level (var f =
// sdk.Register1(...)), so that the workers, which run the test binary
// from the start, have them too.
package goraytest
