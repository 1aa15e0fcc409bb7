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
