package peer

// Writes on a peer link are batched the way the agent link's are (linkbatch.Writer):
// yamux's send loop hands each frame to linkConn, which queues it and returns at once; a
// flusher goroutine, running only while there is something to send, gives a batch to TLS in
// one write, and the linkbatch.Sock under TLS sends all of that write's records with one
// system call.
//
// Without it yamux's send loop encrypts and writes each frame itself while the stream's
// writer waits for it: a relay could not read the next chunk while the last one was being
// encrypted, a 16 KiB frame and its 12-byte header made two records, and each record cost
// a system call. With it a forwarded tunnel is pipelined like a local one.

import (
	"net"

	"github.com/hashicorp/yamux"

	"maintproxy/internal/credit"
	"maintproxy/internal/linkbatch"
)

// linkConn is the TLS connection of a peer link as yamux sees it: reads go straight to TLS,
// writes are queued for the flusher.
type linkConn struct {
	net.Conn // the TLS connection
	w        *linkbatch.Writer
}

func newLinkConn(tc net.Conn, sock *linkbatch.Sock) *linkConn {
	return &linkConn{Conn: tc, w: linkbatch.NewWriter(sock, 0, func(_, batch []byte) error {
		_, err := tc.Write(batch)
		return err
	})}
}

// Write queues what yamux's send loop writes (see linkbatch.Writer.Write).
func (c *linkConn) Write(b []byte) (int, error) { return c.w.Write(b) }

// Close fails queued and later writes and closes the connection, which also ends a flush
// stuck on a peer that stopped reading.
func (c *linkConn) Close() error {
	c.w.Fail(net.ErrClosed)
	return c.Conn.Close()
}

// session is one peer link's yamux session with its receive-window shaper (package credit,
// as on the agent link): a tunnel whose reader is slower than the other broker (a slow
// technician behind the forwarding broker, a slow agent link behind the holder) has at
// most its window unread here, and all the link's tunnels together at most Tuning.Budget
// beyond their initial 256 KiB windows.
type session struct {
	*yamux.Session
	credits *credit.Shaper
	rtt     *credit.RTT
}

// startPings is how many pings measure the round trip when a link starts.
const startPings = 4

// newSession starts yamux on c, the yamux client on the dialing side.
func newSession(c *linkConn, client bool, t Tuning) (*session, error) {
	cfg := t.mux()
	s := &session{rtt: &credit.RTT{}}
	s.credits = credit.New(cfg.MaxStreamWindowSize, t.budget(), s.rtt, c.w.Queue)
	c.w.ShapeWindows(s.credits.Outgoing)
	start := yamux.Server
	if client {
		start = yamux.Client
	}
	ys, err := start(c, cfg)
	if err != nil {
		return nil, err
	}
	s.Session = ys
	s.rtt.SetPing(ys.Ping)
	return s, nil
}

// measure pings a few times, for the round trip the windows grow from; it ends early when
// the link does.
func (s *session) measure() {
	for range startPings {
		if s.rtt.Measure() != nil {
			return
		}
	}
}

// stream starts shaping st, just opened or accepted, and returns it as a Stream.
func (s *session) stream(st *yamux.Stream, server bool) *Stream {
	s.credits.Register(st.StreamID())
	return &Stream{st: st, sess: s, credits: s.credits, server: server}
}
