package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// The wire format (yamux protocol version 0): every frame starts with a 12-byte header,
// all fields big endian:
//
//	byte 0      version (0)
//	byte 1      type: 0 data, 1 window update, 2 ping, 3 go away
//	bytes 2-3   flags: 1 SYN, 2 ACK, 4 FIN, 8 RST
//	bytes 4-7   stream id (0 for ping and go away)
//	bytes 8-11  length: of the body for data; the window increment for a window update;
//	            the opaque value for a ping; the reason for a go away
//
// Only data frames have a body. A stream opens with a SYN (on a window update), is
// acknowledged with an ACK, half-closes with a FIN and is aborted with an RST. Each
// direction of a stream may carry at most what the receiver granted: 256 KiB implicitly,
// plus every window update since.
const (
	headerLen = 12
	version   = 0

	typeData   = 0
	typeWindow = 1
	typePing   = 2
	typeGoAway = 3

	flagSYN = 1
	flagACK = 2
	flagFIN = 4
	flagRST = 8

	// InitialWindow is what each direction of a new stream may carry before any window
	// update: fixed by the protocol.
	InitialWindow = 256 << 10

	goAwayNormal   = 0
	goAwayProtocol = 1
)

// Errors. A Stream's and a Session's timeouts are net.Errors with Timeout() true.
var (
	// ErrSessionShutdown: the session is closed (by either end, or the link failed).
	ErrSessionShutdown = errors.New("mux: session shutdown")
	// ErrStreamClosed: this end closed the stream (its direction, for a write). It wraps
	// net.ErrClosed, so a relay sees it as the normal end of a torn-down tunnel.
	ErrStreamClosed = fmt.Errorf("mux: stream closed: %w", net.ErrClosed)
	// ErrStreamReset: the stream was aborted, by the peer or after its close timed out.
	ErrStreamReset = errors.New("mux: stream reset")
	// ErrRemoteGoAway: the peer said it takes no more streams.
	ErrRemoteGoAway = errors.New("mux: the peer refuses new streams (go away)")
	// ErrStreamsExhausted: this end has used all its stream ids.
	ErrStreamsExhausted = errors.New("mux: stream ids exhausted")
	// ErrProtocol: the peer broke the protocol; the session ends.
	ErrProtocol = errors.New("mux: protocol error")
	// ErrKeepAlive: a keepalive ping went unanswered; the session ends.
	ErrKeepAlive = errors.New("mux: keepalive ping unanswered")
	// ErrOpenTimeout: a stream opened here was not acknowledged within OpenTimeout; the
	// session ends.
	ErrOpenTimeout = errors.New("mux: the peer did not acknowledge a new stream in time")
	// ErrTimeout: a deadline or the write timeout passed.
	ErrTimeout error = timeoutError{}
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "mux: i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// header is a frame header.
type header [headerLen]byte

func makeHeader(typ byte, flags uint16, id, length uint32) header {
	var h header
	h[0] = version
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

func (h *header) typ() byte      { return h[1] }
func (h *header) flags() uint16  { return binary.BigEndian.Uint16(h[2:4]) }
func (h *header) id() uint32     { return binary.BigEndian.Uint32(h[4:8]) }
func (h *header) length() uint32 { return binary.BigEndian.Uint32(h[8:12]) }

func protocolErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}
