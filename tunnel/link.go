package tunnel

import (
	"maintproxy/internal/mux"
)

// Receive windows (package mux): what each end grants its peer grows with the reader's
// speed × the link's round trip, within these bounds.
const (
	// maxStreamWindow is the most one stream may be granted, when the round trip and the
	// reader's speed call for it: 320 MB/s at 100 ms.
	maxStreamWindow = 32 << 20
	// sessionBudget bounds, per session, what peers may have sent and readers not yet
	// taken, beyond the initial window of each stream.
	sessionBudget = 32 << 20
)

// muxLink is one agent link on either end: the multiplexed session over the websocket and
// the liveness watch (liveness.go), whose pings also measure the round trip the receive
// windows grow from.
type muxLink struct {
	ws   *wsConn
	live *liveRW // ws as the session reads it, noting when data arrives
	mux  *mux.Session
}

// startPings is how many pings measure the round trip when a link starts.
const startPings = 4

// newMuxLink starts the session on ws: the broker is the client, the agent the server.
func newMuxLink(ws *wsConn, client bool, t Tuning) (*muxLink, error) {
	cfg := t.muxConfig()
	l := &muxLink{ws: ws, live: newLiveRW(ws)}
	if client {
		// The broker accepts only the hello; a stream the agent opens later waits in this
		// backlog unanswered and any beyond it are reset, so none can hold memory here.
		cfg.AcceptBacklog = 1
		l.mux = mux.Client(l.live, ws.w, l.live.Close, cfg)
	} else {
		l.mux = mux.Server(l.live, ws.w, l.live.Close, cfg)
	}
	l.watch(t)
	return l, nil
}

// close ends the session at once: the connection goes first, so that nothing waits for a
// peer that may be gone.
func (l *muxLink) close() {
	l.ws.closeNow()
	l.mux.Close()
}

// stream is one tunnel's stream: Close is the full close (reading stops, the peer gets no
// more window), CloseWrite the half-close.
type stream = mux.Stream
