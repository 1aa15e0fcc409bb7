package peer

import (
	"cmp"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"maintproxy/internal/mux"
)

// ALPN is the protocol name both ends of a peer link insist on, so a peer connection cannot
// be confused with any other TLS service (or the other way round).
const ALPN = "maintproxy-peer/1"

// Sentinel errors.
var (
	// ErrUntrusted: the other broker's certificate is not the one published for it.
	ErrUntrusted = errors.New("peer: certificate not published in the cluster directory")
	// ErrUnknownNode: the directory has no peer address or fingerprint for the node.
	ErrUnknownNode = errors.New("peer: node unknown to the cluster directory")
	// ErrReplied: a handler answered twice, or wrote before answering.
	ErrReplied = errors.New("peer: reply already sent or missing before data")
	// ErrClosed: the Dialer or Server was closed.
	ErrClosed = errors.New("peer: closed")
)

// Tuning sets the link's timeouts and window; zero fields take the defaults noted.
type Tuning struct {
	// HandshakeTimeout bounds dialing plus the TLS handshake (default 10 s).
	HandshakeTimeout time.Duration
	// HeaderTimeout bounds reading a stream's request on the holder (default 10 s).
	HeaderTimeout time.Duration
	// AnswerWait bounds how long an Open waits for a link being dialled, and then for the
	// holder's link to acknowledge the new stream (default 3 s). A holder that misses it
	// (hung, or its host gone without a reset) counts as unreachable, so the caller moves
	// on to another holder instead of waiting out the handshake or keepalive timeouts; the
	// dial itself goes on, for the next Open. Once acknowledged, the holder's answer (which
	// waits for the agent's dial) is awaited as long as the caller's context allows.
	AnswerWait time.Duration
	// KeepAliveInterval is the time between pings on an idle link (default 5 s: brokers
	// share a LAN, and a dead peer must be noticed well before technicians give up).
	KeepAliveInterval time.Duration
	// WriteTimeout bounds any write on the link; a peer that stops reading for this long is
	// dead (default 10 s).
	WriteTimeout time.Duration
	// StreamWindow is the most a stream's receive window may grow to (default 4 MiB). A
	// stream starts at the protocol's 256 KiB and grows with its reader's speed × the link's round
	// trip (package mux), so on a LAN it stays small; 4 MiB lets one tunnel between
	// WAN-separated brokers move 2 MiB per round trip.
	StreamWindow uint32
	// Budget bounds, per link, what the other broker may have sent on the link's streams
	// that their readers have not taken, beyond each stream's initial 256 KiB (default
	// 32 MiB, as on an agent link: enough for several tunnels at full speed with grown
	// windows; the rest share it).
	Budget int64
}

func (t Tuning) handshake() time.Duration { return cmp.Or(t.HandshakeTimeout, 10*time.Second) }
func (t Tuning) header() time.Duration    { return cmp.Or(t.HeaderTimeout, 10*time.Second) }
func (t Tuning) answer() time.Duration    { return cmp.Or(t.AnswerWait, 3*time.Second) }
func (t Tuning) budget() int64            { return cmp.Or(t.Budget, 32<<20) }

func (t Tuning) mux() mux.Config {
	return mux.Config{
		AcceptBacklog: 1024,
		// Brokers share a LAN: a peer that does not answer a ping within the write timeout
		// is dead, and its tunnels must end well before technicians give up.
		KeepAlive:    cmp.Or(t.KeepAliveInterval, 5*time.Second),
		WriteTimeout: cmp.Or(t.WriteTimeout, 10*time.Second),
		MaxWindow:    cmp.Or(t.StreamWindow, 4<<20),
		Budget:       t.budget(),
		// An open that the holder does not acknowledge means the link is stuck: the
		// session then ends and the next Open redials.
		OpenTimeout: t.header(),
		// A half-closed stream whose other half never closes is reset after this.
		CloseTimeout: time.Minute,
	}
}

// baseTLS is what both ends share: TLS 1.3 only, the peer ALPN, our certificate. Trust is
// checked in VerifyConnection by fingerprint, never by the system roots.
func baseTLS(id *Identity) *tls.Config {
	return &tls.Config{
		Certificates:           []tls.Certificate{id.Certificate()},
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPN},
		SessionTicketsDisabled: true,
	}
}

func peerFingerprint(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", ErrUntrusted
	}
	if cs.NegotiatedProtocol != ALPN {
		return "", errors.New("peer: the other side does not speak " + ALPN)
	}
	return Fingerprint(cs.PeerCertificates[0].Raw), nil
}

// Stream is one tunnel over the peer link, after the request and reply. CloseWrite is the
// half-close (a FIN; reading goes on until the other side closes too); Close sends the same
// FIN and also ends reading: the other side gets no more window.
type Stream struct {
	st   *mux.Stream
	sess *session

	// server side only: whether Reply was sent.
	mu      sync.Mutex
	server  bool
	replied bool
}

// Reply answers the request (holder side). It must come exactly once, before any data;
// CodeOK means bytes follow, any other code ends the stream after the reply.
func (s *Stream) Reply(r Reply) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.server || s.replied {
		return ErrReplied
	}
	s.replied = true
	return writeReply(s.st, r)
}

func (s *Stream) answered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replied
}

// Read reads tunnel bytes.
func (s *Stream) Read(p []byte) (int, error) { return s.st.Read(p) }

// ReadMore reads what has arrived already, without waiting (relay.MoreReader).
func (s *Stream) ReadMore(p []byte) (int, error) { return s.st.ReadMore(p) }

// WaitReadable waits for data without a buffer (relay.ReadyReader).
func (s *Stream) WaitReadable() error { return s.st.WaitReadable() }

// Reset ends the tunnel at once on both brokers (a relay torn down by an error).
func (s *Stream) Reset() error { return s.st.Reset() }

// Write writes tunnel bytes; on the holder side only after Reply.
func (s *Stream) Write(p []byte) (int, error) {
	if s.server && !s.answered() {
		return 0, ErrReplied
	}
	return s.st.Write(p)
}

// Close ends the tunnel on this side: no more writes, and nothing more is read, so the
// other side gets no more window (what it sent already may still be read).
func (s *Stream) Close() error { return s.st.Close() }

// CloseWrite half-closes the stream: no more writes; reads continue to the other side's EOF.
func (s *Stream) CloseWrite() error { return s.st.CloseWrite() }

// LocalAddr is the link's local address.
func (s *Stream) LocalAddr() net.Addr { return s.st.LocalAddr() }

// RemoteAddr is the other broker's address.
func (s *Stream) RemoteAddr() net.Addr { return s.st.RemoteAddr() }

// SetDeadline sets both deadlines.
func (s *Stream) SetDeadline(t time.Time) error { return s.st.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (s *Stream) SetReadDeadline(t time.Time) error { return s.st.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.st.SetWriteDeadline(t) }
