// Package gcs is goray's Global Control Service: the cluster's membership
// (nodes, with liveness from the membership table of package
// gcs/membership), job table, per-job function tables, internal KV store,
// actors and placement groups.
//
// The GCS is a set of Proto.Actor actors (node, job, function and KV
// managers under one supervisor) behind NATS request/reply subjects
// (subjects.go; docs/nats.md describes every subject, bucket and key). Each
// manager keeps its state in a JetStream KV bucket and reloads it when it
// starts, so a GCS restarted on the same store directory recovers the
// cluster, and an operator can inspect a live cluster with the stock `nats`
// CLI. By default the GCS embeds a nats-server; Options.NATSURL points it at
// an existing one instead.
//
// Input is never trusted: every request is bounded, decoded and checked
// before it reaches a manager (validate.go, validate_requests.go), and a bad
// one is answered with an ErrInvalid error naming the subject and the
// field; every stored record is checked the same way when loaded
// (records.go), and a bad one is skipped. The GCS does not read back the
// events it publishes: node deaths and job ends pass between its managers
// as actor messages (internal_events.go), so a forged event changes
// nothing in it.
//
// Running a GCS:
//
//	srv, err := gcs.NewServer(gcs.Options{
//		StoreDir:   filepath.Join(sessionDir, "nats"),
//		SessionDir: sessionDir,
//		Logger:     log,
//		OnShutdownRequest: func() { raylet.Stop() },
//	})
//	if err != nil { ... }
//	if err := srv.Start(); err != nil { ... }
//	defer srv.Shutdown()
//	fmt.Println("GCS at", srv.ClientURL())
//	<-srv.Done() // after Shutdown or a `goray stop` (RequestShutdown)
//
// Talking to it:
//
//	c, err := gcs.Dial(ctx, url, log)
//	if err != nil { ... }
//	defer c.Close()
//	err = c.RegisterNode(ctx, &protos.NodeInfo{NodeId: id.Bytes(), Hostname: host})
//	err = c.ReportNode(info) // periodically: heartbeat + resource view
//	added, err := c.KVPut(ctx, "ns", "key", []byte("v"), false)
//	_, err = c.GetFunctions(ctx, jobID)
//	if errors.Is(err, gcs.ErrNotFound) { ... }
package gcs
