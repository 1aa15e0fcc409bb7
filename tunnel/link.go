package tunnel

import (
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// muxLink is one agent link on either end: yamux over the websocket, the receive-window
// shaper, and the liveness watch (liveness.go) whose pings also measure the round trip.
type muxLink struct {
	ws      *wsConn
	live    *liveRW // ws as yamux reads it, noting when data arrives
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
	l := &muxLink{ws: ws, live: newLiveRW(ws), probe: &rttProbe{}}
	l.credits = newCredits(ws, l.probe, sessionBudget)
	mux, err := start(l.live, cfg)
	if err != nil {
		ws.closeNow()
		return nil, err
	}
	l.mux, l.probe.ping = mux, mux.Ping
	l.watch(t)
	return l, nil
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
