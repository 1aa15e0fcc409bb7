package tunnel

import (
	"io"

	"github.com/hashicorp/yamux"

	"maintproxy/internal/credit"
)

// Receive windows (package credit): what each end grants its peer is shaped.
const (
	// maxStreamWindow is yamux's window. Up to this much per stream may be granted when
	// the round trip and the reader's speed call for it. yamux tops its grant up only
	// after half of it was read, so at worst half of it is open: 16 MiB, 160 MB/s at 100 ms.
	maxStreamWindow = 32 << 20
	// sessionBudget bounds, per session, what peers may have sent and readers not yet
	// taken, beyond the initial window of each stream.
	sessionBudget = 32 << 20
)

// muxLink is one agent link on either end: yamux over the websocket, the receive-window
// shaper, and the liveness watch (liveness.go) whose pings also measure the round trip.
type muxLink struct {
	ws      *wsConn
	live    *liveRW // ws as yamux reads it, noting when data arrives
	mux     *yamux.Session
	credits *credit.Shaper
	probe   *credit.RTT
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
	l := &muxLink{ws: ws, live: newLiveRW(ws), probe: &credit.RTT{}}
	l.credits = credit.New(cfg.MaxStreamWindowSize, sessionBudget, l.probe, ws.w.Queue)
	ws.w.ShapeWindows(l.credits.Outgoing)
	mux, err := start(l.live, cfg)
	if err != nil {
		ws.closeNow()
		return nil, err
	}
	l.mux = mux
	l.probe.SetPing(mux.Ping)
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
	credits *credit.Shaper
}

func (l *muxLink) track(st *yamux.Stream) *stream {
	l.credits.Register(st.StreamID())
	return &stream{Stream: st, credits: l.credits}
}

func (s *stream) Read(p []byte) (int, error) { return s.credits.Read(s.StreamID(), s.Stream, p) }

// CloseWrite half-closes: yamux's Close sends FIN and keeps the read side open.
func (s *stream) CloseWrite() error { return s.Stream.Close() }

// Close closes both directions and stops shaping the stream.
func (s *stream) Close() error {
	s.credits.Forget(s.StreamID())
	return s.Stream.Close()
}

var _ io.ReadWriteCloser = (*stream)(nil)
