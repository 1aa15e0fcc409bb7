package peer

// Writes on a peer link are batched the way the agent link's are (linkbatch.Writer): the
// session (package mux) appends each frame to the link's batch from the goroutine that
// sends it and returns at once; a flusher goroutine, running only while there is something
// to send, gives a batch to TLS in one write, and the linkbatch.Sock under TLS sends all
// of that write's records with one system call. So a forwarded tunnel is pipelined: a
// relay reads its next chunk while the last one is being encrypted.

import (
	"net"

	"maintproxy/internal/linkbatch"
	"maintproxy/internal/mux"
)

// linkConn is the TLS connection of a peer link: the session reads it directly and
// queues what it sends on w.
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

// Close fails queued and later writes and closes the connection, which also ends a flush
// stuck on a peer that stopped reading.
func (c *linkConn) Close() error {
	c.w.Fail(net.ErrClosed)
	return c.Conn.Close()
}

// session is one peer link's session. Its receive windows (package mux) keep a tunnel
// whose reader is slower than the other broker (a slow technician behind the forwarding
// broker, a slow agent link behind the holder) to at most its window unread here, and all
// the link's tunnels together to at most Tuning.Budget beyond their initial 256 KiB
// windows.
type session struct {
	*mux.Session
}

// startPings is how many pings measure the round trip when a link starts.
const startPings = 4

// newSession starts the session on c, the client on the dialing side.
func newSession(c *linkConn, client bool, t Tuning) (*session, error) {
	if client {
		return &session{mux.Client(c, c.w, c.Close, t.mux())}, nil
	}
	return &session{mux.Server(c, c.w, c.Close, t.mux())}, nil
}

// measure pings a few times, for the round trip the windows grow from; it ends early when
// the link does.
func (s *session) measure() {
	for range startPings {
		if _, err := s.Ping(); err != nil {
			return
		}
	}
}

// stream returns st, just opened or accepted, as a Stream.
func (s *session) stream(st *mux.Stream, server bool) *Stream {
	return &Stream{st: st, sess: s, server: server}
}
