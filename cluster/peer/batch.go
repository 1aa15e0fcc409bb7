package peer

// Writes on a peer link are batched the way the agent link's are: yamux's send loop hands
// each frame to linkConn, which appends it to a pooled buffer and returns at once; a flusher
// goroutine, running only while there is something to send, gives the buffer to TLS in one
// write, and sockConn under TLS sends all of that write's records with one system call.
//
// Without it yamux's send loop encrypts and writes each frame itself while the stream's
// writer waits for it: a relay could not read the next chunk while the last one was being
// encrypted, a 16 KiB frame and its 12-byte header made two records, and each record cost
// a system call. With it a forwarded tunnel is pipelined like a local one.

import (
	"encoding/binary"
	"net"
	"sync"
)

const (
	// maxBatch is where the send loop stops adding to a batch and waits for the flusher:
	// four full TLS records.
	maxBatch = 64 << 10
	// maxPooled is the largest buffer kept for reuse; a batch grows past maxBatch by at
	// most one frame, and a rare huge frame should not pin its buffer.
	maxPooled = 4 * maxBatch
)

var (
	batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 2*maxBatch); return &b }}
	// sealPool holds the records of one flush: a batch plus TLS's 22 bytes per record.
	sealPool = sync.Pool{New: func() any { b := make([]byte, 0, 2*maxBatch+4<<10); return &b }}
)

func putBuf(p *sync.Pool, b *[]byte) {
	if cap(*b) > maxPooled {
		return
	}
	*b = (*b)[:0]
	p.Put(b)
}

// linkConn is the TLS connection of a peer link as yamux sees it: reads go straight to TLS,
// writes are queued for the flusher.
type linkConn struct {
	net.Conn           // the TLS connection
	sock     *sockConn // the TCP connection under it

	mu       sync.Mutex
	space    sync.Cond // signalled when the flusher takes a batch or stops
	batch    *[]byte   // frames waiting for the flusher; nil when none
	pend     [yamuxHeaderLen]byte
	hasPend  bool // pend is a data frame's header waiting for its body
	flushing bool
	werr     error // sticky: the link is dead once a write failed
}

func newLinkConn(tc net.Conn, sock *sockConn) *linkConn {
	c := &linkConn{Conn: tc, sock: sock}
	c.space.L = &c.mu
	return c
}

// Write takes what yamux's send loop writes: a 12-byte frame header and, for a data frame,
// its body in the next call. It queues whole frames and returns; a full batch waits until
// the flusher has taken it, so a peer that stops reading stops the send loop, and yamux's
// write timeout and keepalive see it as before.
func (c *linkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	switch {
	case c.hasPend:
		c.hasPend = false
		c.append(c.pend[:], b)
	case len(b) == yamuxHeaderLen && b[1] == yamuxTypeData && binary.BigEndian.Uint32(b[8:12]) > 0:
		copy(c.pend[:], b)
		c.hasPend = true
		return len(b), nil
	default:
		c.append(b, nil)
	}
	for c.batch != nil && len(*c.batch) >= maxBatch && c.werr == nil {
		c.space.Wait()
	}
	if c.werr != nil {
		return 0, c.werr
	}
	return len(b), nil
}

// append adds a and b to the batch and starts the flusher if it is not running. c.mu is
// held.
func (c *linkConn) append(a, b []byte) {
	if c.batch == nil {
		c.batch = batchPool.Get().(*[]byte)
	}
	*c.batch = append(append(*c.batch, a...), b...)
	if !c.flushing {
		c.flushing = true
		go c.flush()
	}
}

// flush writes batches until none is left, then ends.
func (c *linkConn) flush() {
	c.mu.Lock()
	for c.werr == nil && c.batch != nil {
		batch := c.batch
		c.batch = nil
		c.space.Broadcast()
		c.mu.Unlock()
		c.sock.begin()
		_, err := c.Conn.Write(*batch)
		if serr := c.sock.end(); err == nil {
			err = serr
		}
		putBuf(&batchPool, batch)
		c.mu.Lock()
		if err != nil && c.werr == nil {
			c.werr = err
		}
	}
	c.flushing = false
	c.space.Broadcast()
	c.mu.Unlock()
}

// Close fails queued and later writes and closes the connection, which also ends a flush
// stuck on a peer that stopped reading.
func (c *linkConn) Close() error {
	c.mu.Lock()
	if c.werr == nil {
		c.werr = net.ErrClosed
	}
	c.space.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}

// sockConn is the TCP connection under a peer link's TLS. TLS writes each record (at most
// 16 KiB) with its own socket write; between begin and end sockConn collects them and
// sends them with one.
type sockConn struct {
	net.Conn
	mu  sync.Mutex
	buf *[]byte // collecting while non-nil
}

func (c *sockConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.buf != nil {
		*c.buf = append(*c.buf, b...)
		c.mu.Unlock()
		return len(b), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *sockConn) begin() {
	c.mu.Lock()
	c.buf = sealPool.Get().(*[]byte)
	c.mu.Unlock()
}

func (c *sockConn) end() error {
	c.mu.Lock()
	buf := c.buf
	c.buf = nil
	c.mu.Unlock()
	_, err := c.Conn.Write(*buf)
	putBuf(&sealPool, buf)
	return err
}
