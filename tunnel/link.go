package tunnel

import (
	"cmp"
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// muxLink is one agent link on either end: yamux over the websocket, the receive-window
// shaper, and the keepalive that also measures the round trip.
type muxLink struct {
	ws      *wsConn
	mux     *yamux.Session
	credits *credits
	probe   *rttProbe
}

// startPings is how many pings measure the round trip when a link starts.
const startPings = 4

// newMuxLink starts yamux on ws: the broker is the yamux client, the agent the server.
func newMuxLink(ws *wsConn, client bool, t Tuning) (*muxLink, error) {
	cfg := t.muxConfig()
	start := yamux.Server
	if client {
		start = yamux.Client
		// The broker accepts only the hello; a stream the agent opens later waits in this
		// backlog unanswered and any beyond it are reset, so none can hold memory here.
		cfg.AcceptBacklog = 1
	}
	l := &muxLink{ws: ws, probe: &rttProbe{}}
	l.credits = newCredits(ws, l.probe, sessionBudget)
	mux, err := start(ws, cfg)
	if err != nil {
		ws.closeNow()
		return nil, err
	}
	l.mux, l.probe.ping = mux, mux.Ping
	l.keepalive(cmp.Or(t.KeepAliveInterval, defaultKeepAliveInterval))
	return l, nil
}

// keepalive pings every interval on a timer (no goroutine waits in between); a ping not
// answered within the write timeout ends the session. The first ping goes at once, for the
// round trip the receive windows start from.
func (l *muxLink) keepalive(interval time.Duration) {
	var t *time.Timer
	tick := func() {
		if err := l.probe.measure(); err != nil {
			l.mux.Close()
			return
		}
		t.Reset(interval)
	}
	t = time.AfterFunc(interval, tick)
	go func() {
		// A few pings while the link is still idle, as one can be delayed by the machine.
		for range startPings {
			if l.probe.measure() != nil {
				return
			}
		}
	}()
}

// close ends the session at once: the connection goes first, so that nothing waits for a
// peer that may be gone.
func (l *muxLink) close() {
	l.ws.closeNow()
	l.mux.Close()
}

// stream is a yamux stream whose reads are counted for the receive-window shaper.
type stream struct {
	*yamux.Stream
	credits *credits
}

func (l *muxLink) track(st *yamux.Stream) *stream {
	l.credits.register(st.StreamID())
	return &stream{Stream: st, credits: l.credits}
}

// readWaited is how long a read must take to count as having waited for data.
const readWaited = 50 * time.Microsecond

func (s *stream) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := s.Stream.Read(p)
	s.credits.consumed(s.StreamID(), n, time.Since(start) > readWaited)
	return n, err
}

// CloseWrite half-closes: yamux's Close sends FIN and keeps the read side open.
func (s *stream) CloseWrite() error { return s.Stream.Close() }

// Close closes both directions and stops shaping the stream.
func (s *stream) Close() error {
	s.credits.forget(s.StreamID())
	return s.Stream.Close()
}

var _ io.ReadWriteCloser = (*stream)(nil)
