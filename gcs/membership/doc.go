// Package membership is goray's cluster membership: which nodes are up,
// kept in a NATS JetStream KV bucket whose records expire unless their
// owner refreshes them, so a node that crashes, hangs or loses its network
// disappears from everyone's view within a bounded time (TTL plus the
// server's expiry scan, about 250 ms) without anyone deleting it.
//
// Each member writes one record under its id (a NATS KV key) and rewrites
// it every Heartbeat (TTL/3 by default). The bucket's MaxAge is TTL, so a
// record not rewritten for TTL is removed by the server, which writes a
// limit marker (Nats-Marker-Reason: MaxAge) in its place; watchers receive
// that marker and report Expired. A member that leaves cleanly deletes its
// record and watchers report Left at once. Watchers track which ids they
// know, so a refresh (same bytes again) is not an event, a changed record
// is Updated, and only an id not known is Joined.
//
// The core needs only a jetstream.JetStream:
//
//	reg, err := membership.Open(ctx, js, membership.Options{TTL: 10 * time.Second, Logger: log})
//	if err != nil { ... }
//	defer reg.Close()
//
//	// lifetime is the membership's context: cancelling it stops the
//	// heartbeat without deleting, as a crash would.
//	m, err := reg.Join(lifetime, nodeID.Hex(), infoBytes)
//	if err != nil { ... }
//	err = m.Update(newInfoBytes)            // watchers see Updated
//	defer m.Leave(context.Background())     // watchers see Left
//
//	events, err := reg.Watch(ctx)
//	for ev := range events {
//		switch ev.Kind {
//		case membership.Joined, membership.Updated: // ev.Value is the record
//		case membership.Left, membership.Expired:   // ev.Value is the last record
//		case membership.Synced:                     // initial members delivered
//		}
//	}
package membership
