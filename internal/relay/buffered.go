package relay

import (
	"bufio"
	"errors"
	"net"
)

// BufferedConn is a connection whose first reads drain a reader that had already taken
// bytes off it: after a CONNECT exchange, bytes that arrived right behind the request or the
// answer sit in the HTTP reader's buffer and belong to the tunnel. Once they are read it
// lets the reader go (and, through it, the HTTP server's or client's connection state), so
// its reads, like a relay's, must come from one goroutine at a time.
type BufferedConn struct {
	net.Conn               // the underlying connection; writes, deadlines and Close go straight to it
	r        *bufio.Reader // nil once drained
	more     MoreReader    // the underlying connection's, or nil
}

// WithBuffered returns c itself when br holds nothing, else a *BufferedConn that reads
// through br. br must be the reader that was reading c.
func WithBuffered(c net.Conn, br *bufio.Reader) net.Conn {
	if br == nil || br.Buffered() == 0 {
		return c
	}
	return &BufferedConn{Conn: c, r: br, more: moreReader(c)}
}

// Read reads the buffered bytes first, then from the connection.
func (c *BufferedConn) Read(p []byte) (int, error) {
	if n, ok := c.readBuffered(p); ok {
		return n, nil
	}
	return c.Conn.Read(p)
}

// readBuffered reads from the buffered bytes, if any are left (ok).
func (c *BufferedConn) readBuffered(p []byte) (n int, ok bool) {
	if c.r == nil {
		return 0, false
	}
	if b := c.r.Buffered(); b > 0 {
		n, _ = c.r.Read(p[:min(len(p), b)]) // from the buffer only: never blocks
	}
	if c.r.Buffered() == 0 {
		c.r = nil
	}
	return n, n > 0
}

// ReadMore reads what is buffered, else what the underlying connection has ready, without
// waiting (see MoreReader); errors.ErrUnsupported when the connection cannot tell.
func (c *BufferedConn) ReadMore(p []byte) (int, error) {
	if n, ok := c.readBuffered(p); ok {
		return n, nil
	}
	if c.more == nil {
		return 0, errors.ErrUnsupported
	}
	return c.more.ReadMore(p)
}

// CloseWrite half-closes the underlying connection when it can (TCP, TLS), else closes it.
func (c *BufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
