package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// batchConn is the TCP connection under an agent link's TLS. TLS writes each record of at
// most 16 KiB with its own socket write; while the link flushes a batch, batchConn collects
// those records and sends them with one write, so a 64 KiB batch costs one system call
// instead of five, and the peer can read it with one too.
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	buf *[]byte // collecting while non-nil
	// nowait makes Read a single attempt that never waits (see readNow); only the
	// connection's one reader sets it, around a read of its own.
	nowait atomic.Bool
}

// Read reads from the socket; in nowait mode it takes only what is there already.
func (c *batchConn) Read(p []byte) (int, error) {
	if c.nowait.Load() {
		return c.readNow(p)
	}
	return c.Conn.Read(p)
}

// errNotReady is readNow's "nothing there yet". It is a temporary net.Error, which TLS
// passes up without failing the connection, keeping any partial record for the next read.
var errNotReady error = notReady{}

type notReady struct{}

func (notReady) Error() string   { return "no data ready" }
func (notReady) Timeout() bool   { return true }
func (notReady) Temporary() bool { return true }

// readNow makes one read system call that does not wait: errNotReady when the socket holds
// nothing. Without access to the socket it reports nothing ready.
func (c *batchConn) readNow(p []byte) (int, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return 0, errNotReady
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, errNotReady
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return true // one attempt: never wait for readiness
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, errNotReady
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
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

// ReadMore reads what TLS holds or the socket has ready, without waiting, so that a relay
// can fill its buffer with several records (relay.MoreReader).
func (c *batchedTLS) ReadMore(p []byte) (int, error) {
	c.sock.nowait.Store(true)
	n, err := c.Conn.Read(p)
	c.sock.nowait.Store(false)
	if errors.Is(err, errNotReady) {
		err = nil
	}
	return n, err
}

// BatchConn wraps c, the connection a TLS server connection will run over, so that
// BatchWrites and the agent link can batch their writes: what Listener does for each
// connection it accepts, for a listener that admits connections itself.
func BatchConn(c net.Conn) net.Conn { return &batchConn{Conn: c} }

// NetConn returns the connection under the batching.
func (c *batchConn) NetConn() net.Conn { return c.Conn }
