// Package linkbatch holds what the agent link and the peer link share to send their
// multiplexed frames (package mux) over TLS with few system calls: a Writer that appends
// whole frames to a pooled batch sent by a flusher goroutine, and a socket that sends all
// records of one large TLS write with one write (and reads without waiting when asked).
package linkbatch

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// MaxBatch is how much a link collects before it waits for its flusher: four full TLS
// records.
const MaxBatch = 64 << 10

// maxPooled is the largest buffer kept for reuse: a rare huge write should not pin it.
const maxPooled = 4 * MaxBatch

// Pool is a pool of byte buffers of about size bytes.
type Pool struct{ p sync.Pool }

// NewPool returns a Pool of buffers with capacity size.
func NewPool(size int) *Pool {
	return &Pool{p: sync.Pool{New: func() any { b := make([]byte, 0, size); return &b }}}
}

// Get returns an empty buffer.
func (p *Pool) Get() *[]byte { return p.p.Get().(*[]byte) }

// Put returns b for reuse unless it grew too large.
func (p *Pool) Put(b *[]byte) {
	if cap(*b) > maxPooled {
		return
	}
	*b = (*b)[:0]
	p.p.Put(b)
}

// sealed holds the records of one flush: a batch plus TLS's overhead per record.
var sealed = NewPool(2*MaxBatch + 4<<10)

// Sock is the TCP connection under a link's TLS. TLS writes each record (at most 16 KiB)
// with its own socket write; between Begin and End, Sock collects them and sends them with
// one, so a 64 KiB batch costs one system call instead of five and the peer can read it
// with one too.
type Sock struct {
	net.Conn
	mu  sync.Mutex
	buf *[]byte // collecting while non-nil
	// nowait makes Read a single attempt that never waits (see ReadNow); only the
	// connection's one reader sets it, around a read of its own.
	nowait atomic.Bool
}

// NetConn returns the connection under the batching.
func (c *Sock) NetConn() net.Conn { return c.Conn }

// Write sends b, or collects it between Begin and End.
func (c *Sock) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.buf != nil {
		*c.buf = append(*c.buf, b...)
		c.mu.Unlock()
		return len(b), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// Begin starts collecting writes.
func (c *Sock) Begin() {
	c.mu.Lock()
	c.buf = sealed.Get()
	c.mu.Unlock()
}

// End sends what was collected since Begin.
func (c *Sock) End() error {
	c.mu.Lock()
	buf := c.buf
	c.buf = nil
	c.mu.Unlock()
	_, err := c.Conn.Write(*buf)
	sealed.Put(buf)
	return err
}

// SetNoWait switches Read to single attempts that never wait (ErrNotReady when nothing is
// there), for a reader that wants only what has arrived already.
func (c *Sock) SetNoWait(on bool) { c.nowait.Store(on) }

// Read reads from the socket; in no-wait mode it takes only what is there already.
func (c *Sock) Read(p []byte) (int, error) {
	if c.nowait.Load() {
		return c.readNow(p)
	}
	return c.Conn.Read(p)
}

// ErrNotReady is a no-wait read's "nothing there yet". It is a temporary net.Error, which
// TLS passes up without failing the connection, keeping any partial record for the next
// read.
var ErrNotReady error = notReady{}

type notReady struct{}

func (notReady) Error() string   { return "no data ready" }
func (notReady) Timeout() bool   { return true }
func (notReady) Temporary() bool { return true }

// readNow makes one read system call that does not wait: ErrNotReady when the socket holds
// nothing. Without access to the socket it reports nothing ready.
func (c *Sock) readNow(p []byte) (int, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return 0, ErrNotReady
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, ErrNotReady
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
		return 0, ErrNotReady
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}
