// Package mux multiplexes streams over one link (the agent link's websocket, the peer
// link's TLS connection), speaking the yamux protocol, version 0, so that agents and
// brokers of earlier releases, which run github.com/hashicorp/yamux, interoperate with it
// (frame.go has the wire format).
//
// It is built for few copies and few goroutine handoffs per byte. Sending: a stream's
// Write appends each frame, header and body, straight into the link's pooled batch
// (linkbatch.Writer.Frame: the one copy) from the writer's own goroutine; the link's
// flusher sends batches. There is no send loop and no channel per frame. Receiving: one
// goroutine per session reads frame headers, and reads each data frame's body straight
// from the link into the stream's pooled 64 KiB chunks; Read copies out of them, and
// ReadMore hands over what is buffered without waiting, so a relay fills large frames.
//
// Receive windows are built in (window.go): each stream's window grows with its reader's
// speed × the link's round trip, and a per-session budget bounds what peers may have sent
// and readers not yet taken.
//
// Stream.Close is a half-close (FIN) that also stops reading; CloseWrite is a half-close
// that reads on to the peer's end. A stream closed here whose peer never finishes is reset
// after Config.CloseTimeout.
package mux
