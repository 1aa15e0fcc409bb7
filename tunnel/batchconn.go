package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"maintproxy/internal/linkbatch"
)

// batchConn is the TCP connection under an agent link's TLS: while the link flushes a
// batch it collects TLS's records and sends them with one write (linkbatch.Sock).
type batchConn = linkbatch.Sock

// batchListener gives every accepted connection a batchConn.
type batchListener struct{ net.Listener }

// Listener wraps the listener the agent endpoint is served on, so that agent links can
// send their batches with one system call each. Other connections are not affected.
func Listener(ln net.Listener) net.Listener { return batchListener{ln} }

func (l batchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &batchConn{Conn: c}, nil
}

// dialSlot receives the connection the HTTP client dials for an agent's handshake.
type dialSlot struct{ conn *batchConn }

type dialSlotKey struct{}

// batchDial dials like d and hands the connection, as a batchConn, to the dialSlot in ctx.
func batchDial(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		bc := &batchConn{Conn: c}
		if slot, ok := ctx.Value(dialSlotKey{}).(*dialSlot); ok {
			slot.conn = bc
		}
		return bc, nil
	}
}

// BatchWrites returns c so that each Write, however many TLS records it makes, leaves in
// one system call — if c is a TLS connection accepted on a Listener; else c itself. The
// broker gives it the technicians' connections, whose relays write up to 64 KiB at once.
func BatchWrites(c net.Conn) net.Conn {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c
	}
	sock, ok := tc.NetConn().(*batchConn)
	if !ok {
		return c
	}
	return &batchedTLS{Conn: tc, sock: sock}
}

// batchedTLS is a TLS connection whose large writes go out in one system call.
type batchedTLS struct {
	*tls.Conn
	sock *batchConn
}

// maxRecord is TLS's largest record payload: a smaller write is one record anyway.
const maxRecord = 16 << 10

func (c *batchedTLS) Write(b []byte) (int, error) {
	if len(b) <= maxRecord {
		return c.Conn.Write(b)
	}
	c.sock.Begin()
	n, err := c.Conn.Write(b)
	if serr := c.sock.End(); err == nil {
		err = serr
	}
	return n, err
}

// ReadMore reads what TLS holds or the socket has ready, without waiting, so that a relay
// can fill its buffer with several records (relay.MoreReader).
func (c *batchedTLS) ReadMore(p []byte) (int, error) {
	c.sock.SetNoWait(true)
	n, err := c.Conn.Read(p)
	c.sock.SetNoWait(false)
	if errors.Is(err, linkbatch.ErrNotReady) {
		err = nil
	}
	return n, err
}

// BatchConn wraps c, the connection a TLS server connection will run over, so that
// BatchWrites and the agent link can batch their writes: what Listener does for each
// connection it accepts, for a listener that admits connections itself.
func BatchConn(c net.Conn) net.Conn { return &batchConn{Conn: c} }
