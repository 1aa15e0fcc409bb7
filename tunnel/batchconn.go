package tunnel

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
)

// batchConn is the TCP connection under an agent link's TLS. TLS writes each record of at
// most 16 KiB with its own socket write; while the link flushes a batch, batchConn collects
// those records and sends them with one write, so a 64 KiB batch costs one system call
// instead of five, and the peer can read it with one too.
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	buf *[]byte // collecting while non-nil
}

var cipherPool = sync.Pool{New: func() any { b := make([]byte, 0, 2*maxBatch+4<<10); return &b }}

func (c *batchConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.buf != nil {
		*c.buf = append(*c.buf, b...)
		c.mu.Unlock()
		return len(b), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// begin starts collecting writes.
func (c *batchConn) begin() {
	c.mu.Lock()
	c.buf = cipherPool.Get().(*[]byte)
	c.mu.Unlock()
}

// end sends what was collected since begin.
func (c *batchConn) end() error {
	c.mu.Lock()
	buf := c.buf
	c.buf = nil
	c.mu.Unlock()
	_, err := c.Conn.Write(*buf)
	*buf = (*buf)[:0]
	cipherPool.Put(buf)
	return err
}

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
	c.sock.begin()
	n, err := c.Conn.Write(b)
	if serr := c.sock.end(); err == nil {
		err = serr
	}
	return n, err
}
