package tunnel

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"maintproxy/internal/mux"
)

// AgentPath is the broker's websocket endpoint for agents (versioned with the protocol).
const AgentPath = "/agent/v1/connect"

// Tuning holds the agent link's keepalive settings; the zero value means the defaults.
// Both ends of a link should use the same; see liveness.go for how they stay safe on a
// slow customer link (128 kbit/s, 200 ms).
type Tuning struct {
	// KeepAliveInterval is the time between pings (default 5 s: well under the 60 s idle
	// cut of common middleboxes, and a third of KeepAliveTimeout).
	KeepAliveInterval time.Duration
	// KeepAliveTimeout is how long the link may stay silent, nothing at all arriving from
	// the peer, before it is declared dead (default 15 s, so that a frozen or vanished
	// peer is noticed within 20 s on both ends).
	KeepAliveTimeout time.Duration
}

func (t Tuning) keepAliveInterval() time.Duration {
	return cmp.Or(t.KeepAliveInterval, defaultKeepAliveInterval)
}
func (t Tuning) keepAliveTimeout() time.Duration {
	return cmp.Or(t.KeepAliveTimeout, defaultKeepAliveTimeout)
}

// Link timeouts.
const (
	defaultKeepAliveInterval = 5 * time.Second
	defaultKeepAliveTimeout  = 15 * time.Second
	// writeTimeout bounds the wait of one frame for the link. It waits behind at most one
	// frame per busy stream (64 KiB with relay's buffers: 4 s at 128 kbit/s), so 30 s
	// covers seven busy streams on a link that slow; beyond, a write fails (that tunnel
	// only, never the session). A dead link is noticed sooner, by the liveness watch.
	writeTimeout = 30 * time.Second
	// replyTimeout bounds the wait for the agent's answer to a header; it exceeds the
	// agent's own dial timeout so that a dial timeout is reported as such.
	replyTimeout = 20 * time.Second
	helloTimeout = 10 * time.Second
)

func (t Tuning) muxConfig() mux.Config {
	return mux.Config{
		// muxLink watches liveness itself (liveness.go), on a timer rather than a goroutine
		// per session: a keepalive that waits for each answer would fail a healthy session
		// whose ping answer waits behind data on a slow link.
		KeepAlive:    0,
		WriteTimeout: writeTimeout,
		MaxWindow:    maxStreamWindow,
		Budget:       sessionBudget,
		// No OpenTimeout: an unanswered open fails that request only, by its own deadline.
		// A half-closed stream whose peer never finishes is reset after this.
		CloseTimeout: 5 * time.Minute,
	}
}

// Session is the broker's side of one agent connection.
type Session struct {
	id         Identity
	link       *muxLink
	policy     atomic.Pointer[Policy]
	since      time.Time
	remote     string
	secretHash string
	active     atomic.Int64
}

// Identity returns the system this session serves.
func (s *Session) Identity() Identity { return s.id }

// Policy returns the policy the agent reported last (at login, or in an update since).
func (s *Session) Policy() Policy {
	if p := s.policy.Load(); p != nil {
		return *p
	}
	return Policy{}
}

// setPolicy puts a policy the agent reported in force.
func (s *Session) setPolicy(p Policy) { s.policy.Store(&p) }

// Active returns the number of open tunnels.
func (s *Session) Active() int64 { return s.active.Load() }

// Open asks the agent for a tunnel. The header goes in the highest version the agent
// reads: an agent of an earlier release gets neither User, Client nor System (a System
// it could not honour is refused with ErrNoSuchSystem). On success the returned stream carries the payload;
// a refusal is a *RefusedError (errors.Is with ErrRefused, ErrNoTunnelEntry, …).
func (s *Session) Open(ctx context.Context, h Header) (net.Conn, error) {
	if h.System != "" && s.Policy().headerVersion() < HeaderV2 {
		return nil, &RefusedError{Code: CodeNoSuchSystem}
	}
	if h.Session == ([16]byte{}) {
		rand.Read(h.Session[:])
	}
	st, err := s.link.mux.Open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("tunnel request abandoned: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("%w: %v", ErrSessionClosed, err)
	}
	deadline := time.Now().Add(replyTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	st.SetDeadline(deadline)
	// A cancelled request (the technician hung up) stops waiting at once: the deadline
	// wakes the read, Close tells the agent.
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()); st.Close() })
	defer stop()
	if _, err := st.Write(h.marshalVersion(s.Policy().headerVersion())); err != nil {
		st.Close()
		return nil, fmt.Errorf("%w: %v", ErrSessionClosed, err)
	}
	if err := readReply(st); err != nil {
		st.Close()
		var re *RefusedError
		if errors.As(err, &re) {
			return nil, err
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, fmt.Errorf("tunnel request abandoned: %w", context.Cause(ctx))
		}
		if errors.Is(err, mux.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: no answer from the agent", ErrTimeout)
		}
		return nil, fmt.Errorf("%w: %v", ErrSessionClosed, err)
	}
	st.SetDeadline(time.Time{})
	s.active.Add(1)
	return &countedStream{stream: st, s: s}, nil
}

// Close ends the session at once; its tunnels fail and the agent reconnects.
func (s *Session) Close() { s.link.close() }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.link.mux.Done() }

// countedStream decrements the session's tunnel count once when fully closed.
type countedStream struct {
	*stream
	s    *Session
	done atomic.Bool
}

// Close closes both directions.
func (c *countedStream) Close() error {
	if c.done.CompareAndSwap(false, true) {
		c.s.active.Add(-1)
	}
	return c.stream.Close()
}
