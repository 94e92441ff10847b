// Package auth is how goray's processes prove to each other that they
// belong to one cluster. docs/security.md is the operator's view; this is
// the code's.
//
// A cluster has one secret, its Token (256 random bits, made by `goray
// start --head` or by the embedded cluster of sdk.Init). Everything else is
// derived from it with HMAC-SHA256, so the token never crosses the network:
//
//   - the wire key (Token.WireKey): wire and object transfer connections
//     run a challenge-response Handshaker on it before their first frame
//     (handshake.go), over unix sockets and TCP alike; a Listener runs
//     handshakes off the accept loop, bounded in number, size and time;
//   - one NATS nkey per Role (Token.NATSKey): the embedded NATS server knows
//     their public keys with least-privilege permissions (NATSUsers);
//   - the metrics bearer token (Token.MetricsBearer).
//
// Mutual TLS (TLSFiles, TLS) wraps NATS, wire TCP, transfer and metrics
// connections when configured; the handshake then binds itself to the TLS
// session.
//
// Credentials bundle what one process holds. A raylet hands its workers
// Credentials.ForWorker through a pipe: the wire key and the worker role's
// nkey, never the token.
//
//	tok, _, err := auth.FindToken(flagFile, localTokenFile)
//	creds := auth.FromToken(tok, nil)
//	h := creds.Handshaker(auth.LabelWire)
//	l := auth.NewListener(tcpListener, h, auth.Limits{}, log) // Accept: authenticated conns
//	conn, err := h.Client(ctx, rawConn)                      // dialling side
//	natsOpts, err := creds.NATSOptions(auth.RoleDriver)
package auth
