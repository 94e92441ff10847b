// Package transfer moves sealed objects between nodes' shared-memory
// stores over TCP, the way Ray's object manager does: the node that needs
// an object pulls it, in chunks, over a few parallel connections, and
// admits only as many pulls at once as its store can take.
//
// # Usage
//
//	// every node serves its store
//	srv := transfer.NewServer(store, transfer.ServerOptions{
//		Logger:  log,
//		OnServe: func(id protos.ObjectID, puller string) { /* puller has a copy now */ },
//	})
//	l, err := net.Listen("tcp", ":0") // advertise l.Addr() with the node
//	go srv.Serve(l)                   // ErrServerClosed after Close
//	defer srv.Close()
//
//	// and pulls what its workers need from where the object lives
//	p := transfer.NewPuller(store, transfer.PullerOptions{Logger: log, Name: nodeID.String()})
//	defer p.Close()
//	err = p.Pull(ctx, id, remoteAddr, owner) // sealed in store when it returns nil
//	switch {
//	case errors.Is(err, objstore.ErrObjectNotFound): // the remote no longer has it: try another copy
//	case errors.Is(err, objstore.ErrStoreFull):      // larger than this node's store
//	case errors.Is(err, transfer.ErrRemote):         // refused by the remote (spill lost, ...): *RemoteError
//	}
//
// # Protocol
//
// A puller keeps persistent connections to each server it pulls from, up
// to PullerOptions.Streams of them, reused across pulls. On a connection
// requests are answered one at a time. Every message is a 4-byte
// little-endian length and a protobuf message (protos/transfer.proto):
//
//	puller -> server: PullChunkRequest{object_id, offset, length, puller}
//	server -> puller: PullChunkReply{object_size, offset, data_length, error_code, error_message}
//	                  then data_length raw bytes of the object
//
// The server pins the object (objstore.Store.Acquire, which restores a
// spilled object) for each request and releases it once the bytes are in
// the socket; reply header and bytes go out in one writev straight from
// its shared-memory mapping. The puller reads them with io.ReadFull
// straight into the new object's block in its own segment. Neither side
// copies object bytes in user space.
//
// A pull's first request is for chunk 0; its reply carries the object's
// size. The puller then passes admission (PullerOptions.MaxInFlightBytes:
// a pull larger than the store fails at once with objstore.ErrStoreFull,
// pulls that would exceed the budget wait in arrival order), creates the
// object and fetches chunk i over connection i % Streams, all streams at
// once. If admission cannot be had at once, chunk 0's data is drained and
// fetched again after the wait rather than holding the server's connection,
// and its pin, through the wait.
//
// Errors the server meets (object not found, spill lost or corrupt, no
// room to restore) travel as error codes with the server's message; Pull
// returns a *RemoteError matching ErrRemote and the objstore sentinel of
// the code. A failed or cancelled pull deletes its partial object before
// Pull returns: nothing half-written is ever sealed. A connection is
// pooled again only between replies; one interrupted mid-reply is closed.
//
// # Tuning
//
// The defaults (4 streams, 2 MiB chunks, 4 MiB socket buffers) are from
// cmd/goray-bench -only 'transfer|raw_tcp' on a 2-core VM: a 1 GiB object
// pulled between two stores over loopback, alternating round by round
// with one raw TCP stream of 8 MiB writes (2.6-4.2 GB/s). Ratios of
// transfer to raw, 3 to 14 runs each:
//
//	streams  chunk    ratio
//	1        8 MiB    0.67-0.75
//	1        1 MiB    0.88-1.41
//	2        8 MiB    0.86-1.24
//	2        2 MiB    1.04-1.70
//	4        8 MiB    0.76-1.31
//	4        2 MiB    1.05-1.66  (3.0-5.9 GB/s)
//	8        8 MiB    0.76-1.34
//
// Several streams beat one raw stream even on 2 cores, while one stream
// with the default chunk does not reach it: hence 4 streams although
// there are only two cores. Chunks larger than 4 MiB were slower at every
// stream count; kernel-autotuned socket buffers (1.05-1.62) and 1 MiB ones
// (0.94-1.37) were no better than 4 MiB. Prefaulting each chunk's pages before the read made
// pulls onto never-touched pages about 6% faster and costs nothing
// measurable on pages already populated.
package transfer
