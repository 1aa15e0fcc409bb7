// Package peer is the link between brokers of a cluster: a technician's CONNECT that lands
// on a broker without the agent is carried to a broker that holds it.
//
// Each ordered pair of brokers shares one long-lived TCP connection with mutual TLS 1.3
// (ALPN "maintproxy-peer/1") carrying a session of the yamux protocol (package mux); each
// tunnel is one stream, so a forwarded tunnel costs no handshake. Every broker makes its own self-signed certificate
// at start (NewIdentity) and publishes its SHA-256 fingerprint in the cluster directory;
// each end admits the other only if the certificate presented is the one published for it
// (the Server: any published node; the Dialer: exactly the node it dials). A stranger is
// refused in the TLS handshake, before any stream exists.
//
// # Stream protocol
//
// The forwarding broker opens a stream and writes a request; the holder answers with a
// reply; with CodeOK the stream then carries the tunnel's bytes both ways:
//
//	request: version=1 (1 byte) | length (uint16 BE) | JSON Request (≤ 4 KiB)
//	reply:   version=1 (1 byte) | code (1 byte) | length (uint16 BE) | message (≤ 1 KiB)
//
// Half-close: a Stream's CloseWrite sends FIN and leaves the read side open, so an EOF in
// one direction is passed on as a half-close, as on every other hop of a tunnel.
//
// Receive windows are shaped as on the agent link (package mux): each stream's window
// starts at 256 KiB and grows with its reader's speed, and per link what the other broker
// may have sent but readers have not taken stays under Tuning.Budget beyond each stream's
// initial window.
package peer
