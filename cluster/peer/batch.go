package peer

// Writes on a peer link are batched the way the agent link's are: yamux's send loop hands
// each frame to linkConn, which appends it to a pooled buffer and returns at once; a flusher
// goroutine, running only while there is something to send, gives the buffer to TLS in one
// write, and the linkbatch.Sock under TLS sends all of that write's records with one system call.
//
// Without it yamux's send loop encrypts and writes each frame itself while the stream's
// writer waits for it: a relay could not read the next chunk while the last one was being
// encrypted, a 16 KiB frame and its 12-byte header made two records, and each record cost
// a system call. With it a forwarded tunnel is pipelined like a local one.

import (
	"net"
	"sync"

	"maintproxy/internal/linkbatch"
)

// maxBatch is where the send loop stops adding to a batch and waits for the flusher.
const maxBatch = linkbatch.MaxBatch

// batchPool holds write buffers; a batch grows past maxBatch by at most one frame.
var batchPool = linkbatch.NewPool(2 * maxBatch)

// linkConn is the TLS connection of a peer link as yamux sees it: reads go straight to TLS,
// writes are queued for the flusher.
type linkConn struct {
	net.Conn                 // the TLS connection
	sock     *linkbatch.Sock // the TCP connection under it

	mu       sync.Mutex
	space    sync.Cond // signalled when the flusher takes a batch or stops
	batch    *[]byte   // frames waiting for the flusher; nil when none
	frames   linkbatch.Joiner
	flushing bool
	werr     error // sticky: the link is dead once a write failed
}

func newLinkConn(tc net.Conn, sock *linkbatch.Sock) *linkConn {
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
	head, body, ok := c.frames.Add(b)
	if !ok {
		return len(b), nil
	}
	c.append(head, body)
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
		c.batch = batchPool.Get()
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
		c.sock.Begin()
		_, err := c.Conn.Write(*batch)
		if serr := c.sock.End(); err == nil {
			err = serr
		}
		batchPool.Put(batch)
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
