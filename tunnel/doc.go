// Package tunnel carries TCP streams between the broker and the agents on customer servers.
//
// An agent keeps one outbound websocket to the broker's web listener at AgentPath
// (wss://admin.<domain>/agent/v1/connect), authenticated with HTTP Basic credentials
// "<customer>/<system>" and the agent's secret. Over the websocket (binary messages) runs
// one yamux session: the broker is the yamux client, the agent the server.
//
// # Protocol v1
//
// Hello. The agent opens the first stream and writes its policy as one JSON object
// (Policy), then closes its side. The broker registers the session only after it has read
// the hello, so an online system is always a ready one.
//
// Open. For every tunnel the broker opens a stream and writes a 24-byte header:
//
//	byte 0      version (1)
//	byte 1      flags (0; reserved)
//	bytes 2-3   port, big endian
//	bytes 4-7   co-located IPv4 address, or 0.0.0.0 for the server itself
//	bytes 8-23  session id (random, shared with the broker's audit record)
//
// The agent answers with a reply before any payload:
//
//	byte 0      version (1)
//	byte 1      code (Code: 0 ok, otherwise the reason the tunnel was refused)
//	bytes 2-3   length n of a message, big endian (at most 1024)
//	n bytes     UTF-8 message for the technician (no secrets)
//
// On ok, the stream carries the tunnel's bytes both ways. Closing a stream's write side
// (yamux Close) is the half-close: the other direction stays open until it ends too.
package tunnel
