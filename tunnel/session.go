package tunnel

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// AgentPath is the broker's websocket endpoint for agents (versioned with the protocol).
const AgentPath = "/agent/v1/connect"

// Tuning holds the agent link's keepalive settings; the zero value means the defaults.
type Tuning struct {
	// KeepAliveInterval is the time between pings (default 20 s: well under the 60 s idle
	// cut of common middleboxes).
	KeepAliveInterval time.Duration
	// KeepAliveTimeout bounds the wait for a ping's answer and for any write (default 30 s:
	// long enough that a bulk transfer on a slow customer link, which the ping queues
	// behind, does not kill a healthy session).
	KeepAliveTimeout time.Duration
}

// Link timeouts.
const (
	defaultKeepAliveInterval = 20 * time.Second
	defaultKeepAliveTimeout  = 30 * time.Second
	// replyTimeout bounds the wait for the agent's answer to a header; it exceeds the
	// agent's own dial timeout so that a dial timeout is reported as such.
	replyTimeout = 20 * time.Second
	helloTimeout = 10 * time.Second
)

func (t Tuning) muxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	// muxLink runs the keepalive itself, on a timer rather than a goroutine per session,
	// and keeps the round trip it measures.
	c.EnableKeepAlive = false
	c.KeepAliveInterval = cmp.Or(t.KeepAliveInterval, defaultKeepAliveInterval)
	c.ConnectionWriteTimeout = cmp.Or(t.KeepAliveTimeout, defaultKeepAliveTimeout)
	// The credit shaper decides how much of this each stream really gets.
	c.MaxStreamWindowSize = maxStreamWindow
	// yamux would close the whole session when one stream's open goes unanswered; Open
	// bounds each request by its own deadline instead.
	c.StreamOpenTimeout = 0
	// A half-closed stream whose peer never finishes is reset after this.
	c.StreamCloseTimeout = 5 * time.Minute
	c.LogOutput = io.Discard
	c.Logger = nil
	return c
}

// Session is the broker's side of one agent connection.
type Session struct {
	id         Identity
	link       *muxLink
	policy     Policy
	since      time.Time
	remote     string
	secretHash string
	active     atomic.Int64
}

// Identity returns the system this session serves.
func (s *Session) Identity() Identity { return s.id }

// Policy returns the policy the agent reported.
func (s *Session) Policy() Policy { return s.policy }

// Active returns the number of open tunnels.
func (s *Session) Active() int64 { return s.active.Load() }

// Open asks the agent for a tunnel. On success the returned stream carries the payload;
// a refusal is a *RefusedError (errors.Is with ErrRefused, ErrNoTunnelEntry, …).
func (s *Session) Open(ctx context.Context, h Header) (net.Conn, error) {
	if h.Session == ([16]byte{}) {
		rand.Read(h.Session[:])
	}
	raw, err := s.link.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSessionClosed, err)
	}
	st := s.link.track(raw)
	deadline := time.Now().Add(replyTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	st.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	if _, err := st.Write(h.marshal()); err != nil {
		st.Close()
		return nil, fmt.Errorf("%w: %v", ErrSessionClosed, err)
	}
	if err := readReply(st); err != nil {
		st.Close()
		var re *RefusedError
		if errors.As(err, &re) {
			return nil, err
		}
		if errors.Is(err, yamux.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
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
func (s *Session) Done() <-chan struct{} { return s.link.mux.CloseChan() }

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
