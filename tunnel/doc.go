// Package tunnel carries TCP streams between the broker and the agents on customer servers.
//
// An agent keeps one outbound websocket to the broker's web listener at AgentPath
// (wss://admin.<domain>/agent/v1/connect), authenticated with HTTP Basic credentials
// "<customer>/<system>" and the agent's secret. Over the websocket (binary messages) runs
// one session of the yamux protocol (package mux): the broker is the client, the agent the
// server.
//
// # Protocol v1
//
// Features. The broker's login answer (the 101) lists what it offers beyond the first
// release in FeaturesHeader ("Maintproxy-Features: policy-updates"); an agent uses only
// what is offered, and a broker uses only what the agent's hello reports, so agents and
// brokers of different releases work together.
//
// Hello. The agent opens the first stream and writes its policy as one JSON object
// (Policy), then closes its side. The broker registers the session only after it has read
// the hello, so an online system is always a ready one. The hello's "header" field is the
// highest stream header version the agent reads (absent: 1); "network" lists the systems
// it reaches for the broker (network.systems).
//
// Policy updates (where the broker offers policy-updates). Whenever the customer's
// settings change, the agent sends the new Policy as one websocket text message (at most
// 64 KiB), between the binary messages that carry the session. The broker puts it in force for
// the session and tells the registry's OnChange hook. The link's reader takes it, so an
// idle session costs the broker no goroutine for this.
//
// Open. For every tunnel the broker opens a stream and writes a header. Version 1 (for
// agents that report no "header") is 24 bytes:
//
//	byte 0      version (1)
//	byte 1      flags (0; reserved)
//	bytes 2-3   port, big endian
//	bytes 4-7   co-located IPv4 address, or 0.0.0.0 for the server itself
//	bytes 8-23  session id (random, shared with the broker's audit record)
//
// Version 2 has byte 0 = 2, then the same 23 bytes, then:
//
//	bytes 24-25 length n of the fields, big endian (at most 2048)
//	n bytes     fields, each: 1 byte tag, 1 byte length, value (UTF-8, at most 255 bytes)
//	            tag 1 user (who the broker let in), tag 2 the technician's address,
//	            tag 3 a system of the agent's network.systems that is the target;
//	            unknown tags are skipped
//
// The agent answers with a reply before any payload:
//
//	byte 0      version (1)
//	byte 1      code (Code: 0 ok, otherwise the reason the tunnel was refused)
//	bytes 2-3   length n of a message, big endian (at most 1024)
//	n bytes     UTF-8 message for the technician (no secrets)
//
// On ok, the stream carries the tunnel's bytes both ways. Closing a stream's write side
// (a FIN) is the half-close: the other direction stays open until it ends too.
package tunnel
