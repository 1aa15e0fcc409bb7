package mux

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"maintproxy/internal/linkbatch"
)

// maxFrame is the most one data frame carries: a relay's whole buffer, and no more than a
// link's batch holds.
const maxFrame = linkbatch.MaxBatch

// Received data waits in pooled chunks: 64 KiB for bulk data, and small ones for the small
// frames of requests, replies and interactive sessions, so that those do not each take (or
// allocate) 64 KiB.
const (
	chunkSize      = 64 << 10
	smallChunkSize = 4 << 10
)

// chunk is a buffer of received data: bytes [r, w) wait to be read. Only the receive
// goroutine writes into it (beyond w, outside the stream's lock) and moves w.
type chunk struct {
	buf  []byte
	r, w int
}

var (
	chunks      = sync.Pool{New: func() any { return &chunk{buf: make([]byte, chunkSize)} }}
	smallChunks = sync.Pool{New: func() any { return &chunk{buf: make([]byte, smallChunkSize)} }}
)

// getChunk returns an empty chunk for a frame body of which n bytes are still to come.
func getChunk(n int64) *chunk {
	if n <= smallChunkSize {
		return smallChunks.Get().(*chunk)
	}
	return chunks.Get().(*chunk)
}

func putChunk(c *chunk) {
	c.r, c.w = 0, 0
	if len(c.buf) == smallChunkSize {
		smallChunks.Put(c)
	} else {
		chunks.Put(c)
	}
}

// Stream is one stream of a session: a net.Conn whose Close is a half-close with
// reading stopped, and CloseWrite a half-close that reads on to the peer's end.
type Stream struct {
	id uint32
	s  *Session

	// Guarded by s.mu.
	rw   recvWin
	live bool // in s.streams

	wmu sync.Mutex // one writer at a time, so that frames keep their order

	mu         sync.Mutex
	queue      []*chunk // received, unread
	buffered   int
	filling    bool // the receive goroutine writes into the last chunk
	sendWindow int64
	acked      bool
	ackCh      chan struct{} // closed when acked; only for a stream opened here
	remoteFin  bool
	reset      bool
	readClosed bool // also written under s.mu
	waited     bool // WaitReadable waited; the next read tells the window
	wrClosed   bool
	stop       chan struct{} // closed when this end stops writing (or the stream is reset)
	stopped    bool
	openTimer  *time.Timer
	closeTimer *time.Timer

	readable chan struct{} // a token when data or an end arrived
	writable chan struct{} // a token when window arrived
	rdl, wdl deadline
}

func newStream(s *Session, id uint32) *Stream {
	return &Stream{
		id:         id,
		s:          s,
		sendWindow: InitialWindow,
		stop:       make(chan struct{}),
		readable:   make(chan struct{}, 1),
		writable:   make(chan struct{}, 1),
	}
}

// Acknowledged is closed once the peer has accepted a stream opened here (nil for a stream
// the peer opened): the link and the peer's session are alive, whatever the stream's
// answer will be.
func (st *Stream) Acknowledged() <-chan struct{} { return st.ackCh }

// StreamID returns the stream's id.
func (st *Stream) StreamID() uint32 { return st.id }

// Session returns the stream's session.
func (st *Stream) Session() *Session { return st.s }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// notify wakes a waiting reader and writer.
func (st *Stream) notify() {
	signal(st.readable)
	signal(st.writable)
}

// Read reads received data, waiting for it until the read deadline.
func (st *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	waited := false
	for {
		st.mu.Lock()
		if st.buffered > 0 {
			n := st.take(p)
			waited = waited || st.waited
			st.waited = false
			st.mu.Unlock()
			st.s.consumed(st, n, waited)
			return n, nil
		}
		err := st.readErr()
		st.mu.Unlock()
		if err != nil {
			return 0, err
		}
		select {
		case <-st.readable:
		case <-st.rdl.wait():
			return 0, ErrTimeout
		case <-st.s.done:
			st.mu.Lock()
			n := st.buffered
			st.mu.Unlock()
			if n == 0 {
				return 0, st.sessionErr()
			}
		}
		waited = true
	}
}

// ReadMore reads what is buffered without waiting: (0, nil) when nothing is (relay's
// MoreReader, so that a relay fills its buffer before it writes).
func (st *Stream) ReadMore(p []byte) (int, error) {
	st.mu.Lock()
	if st.buffered == 0 || len(p) == 0 {
		err := st.readErr()
		st.mu.Unlock()
		if err == nil && st.s.IsClosed() {
			err = st.sessionErr()
		}
		return 0, err
	}
	n := st.take(p)
	waited := st.waited
	st.waited = false
	st.mu.Unlock()
	st.s.consumed(st, n, waited)
	return n, nil
}

// WaitReadable waits, holding no buffer, until data or the stream's end is there, for the
// next ReadMore to take (relay's ReadyReader: an idle tunnel's relay holds no buffer).
func (st *Stream) WaitReadable() error {
	for {
		st.mu.Lock()
		if st.buffered > 0 || st.readErr() != nil {
			st.mu.Unlock()
			return nil
		}
		st.mu.Unlock()
		select {
		case <-st.readable:
		case <-st.rdl.wait():
			return ErrTimeout
		case <-st.s.done:
			return nil // ReadMore tells what is left, or the session's end
		}
		st.mu.Lock()
		st.waited = true
		st.mu.Unlock()
	}
}

// take copies buffered data into p and recycles the chunks read to the end. st.mu is held.
func (st *Stream) take(p []byte) int {
	n := 0
	for n < len(p) && len(st.queue) > 0 {
		c := st.queue[0]
		k := copy(p[n:], c.buf[c.r:c.w])
		c.r += k
		n += k
		if c.r < c.w {
			break
		}
		if len(st.queue) == 1 && st.filling {
			break // the receive goroutine is writing into it
		}
		st.queue[0] = nil
		st.queue = st.queue[1:]
		putChunk(c)
	}
	st.buffered -= n
	return n
}

// readErr is why a read finds nothing: nil if more may come. st.mu is held.
func (st *Stream) readErr() error {
	switch {
	case st.readClosed:
		return ErrStreamClosed
	case st.remoteFin:
		return io.EOF
	case st.reset:
		return ErrStreamReset
	}
	return nil
}

func (st *Stream) sessionErr() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.readErr(); err != nil {
		return err
	}
	return ErrSessionShutdown
}

// Write sends p in frames of at most 64 KiB, each as soon as the peer's window has room,
// waiting for the window until the write deadline, and for room on the link at most the
// session's WriteTimeout per frame.
func (st *Stream) Write(p []byte) (int, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	total := 0
	for len(p) > 0 {
		st.mu.Lock()
		for st.sendWindow == 0 && !st.wrClosed && !st.reset {
			st.mu.Unlock()
			select {
			case <-st.writable:
			case <-st.stop:
			case <-st.wdl.wait():
				return total, ErrTimeout
			case <-st.s.done:
				return total, ErrSessionShutdown
			}
			st.mu.Lock()
		}
		switch {
		case st.s.IsClosed():
			st.mu.Unlock()
			return total, ErrSessionShutdown
		case st.reset:
			st.mu.Unlock()
			return total, ErrStreamReset
		case st.wrClosed:
			st.mu.Unlock()
			return total, ErrStreamClosed
		}
		n := int(min(int64(len(p)), st.sendWindow, maxFrame))
		st.sendWindow -= int64(n)
		st.mu.Unlock()
		h := makeHeader(typeData, 0, st.id, uint32(n))
		err := st.s.w.Frame(h[:], p[:n], &linkbatch.Wait{
			Cancel: st.stop, Done: st.s.done, Expired: st.wdl.wait(), Timeout: st.s.cfg.WriteTimeout,
		})
		if err != nil {
			st.mu.Lock()
			st.sendWindow += int64(n) // not sent
			st.mu.Unlock()
			return total, st.writeErr(err)
		}
		total += n
		p = p[n:]
	}
	return total, nil
}

func (st *Stream) writeErr(err error) error {
	switch {
	case errors.Is(err, linkbatch.ErrTimeout):
		return ErrTimeout
	case st.s.IsClosed():
		return ErrSessionShutdown
	case errors.Is(err, linkbatch.ErrCanceled):
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.reset {
			return ErrStreamReset
		}
		return ErrStreamClosed
	}
	return ErrSessionShutdown
}

// CloseWrite half-closes the stream: the peer reads to its end; reading here goes on until
// the peer closes its side too. A stream the peer never finishes is reset after the
// session's CloseTimeout.
func (st *Stream) CloseWrite() error {
	st.mu.Lock()
	if st.wrClosed || st.reset {
		st.mu.Unlock()
		return nil
	}
	st.wrClosed = true
	st.stopWriting()
	st.mu.Unlock()
	// A writer still at work leaves promptly (stop is closed); the FIN goes after its last
	// frame.
	st.wmu.Lock()
	err := st.s.control(typeWindow, flagFIN, st.id, 0)
	st.wmu.Unlock()
	s := st.s
	s.mu.Lock()
	st.mu.Lock()
	if st.remoteFin || st.reset {
		st.mu.Unlock()
		s.remove(st)
	} else if st.closeTimer == nil && st.live {
		st.closeTimer = time.AfterFunc(s.cfg.CloseTimeout, st.abort)
		st.mu.Unlock()
	} else {
		st.mu.Unlock()
	}
	s.mu.Unlock()
	return err
}

// Close half-closes the stream (as CloseWrite) and stops reading: what is buffered is
// dropped and the peer gets no more window; what it still sends within the window it has
// is discarded.
func (st *Stream) Close() error {
	err := st.CloseWrite()
	s := st.s
	s.mu.Lock()
	st.mu.Lock()
	if !st.readClosed {
		st.readClosed = true
		s.win.stop(&st.rw)
		s.win.drop(&st.rw, int64(st.buffered))
		st.buffered = 0
		for i, c := range st.queue {
			if i < len(st.queue)-1 || !st.filling {
				putChunk(c)
			}
		}
		st.queue = nil
	}
	st.mu.Unlock()
	s.mu.Unlock()
	signal(st.readable)
	return err
}

// Reset ends both directions at once and tells the peer (RST), whose reads and writes then
// fail: for a tunnel torn down by an error, where a FIN would read as a clean end and leave
// the peer's writer waiting for window until the close timeout.
func (st *Stream) Reset() error {
	st.abort()
	return nil
}

// abort resets the stream: the peer is told (RST) and both directions end.
func (st *Stream) abort() {
	if !st.markReset() {
		st.s.control(typeWindow, flagRST, st.id, 0)
	}
}

// markReset ends both directions at once and takes the stream out of its session; it
// says whether the stream was reset already.
func (st *Stream) markReset() (was bool) {
	s := st.s
	s.mu.Lock()
	st.mu.Lock()
	was = st.reset
	st.reset = true
	st.stopWriting()
	st.mu.Unlock()
	s.remove(st)
	s.mu.Unlock()
	st.stopTimers()
	st.notify()
	return was
}

// stopWriting closes stop once. st.mu is held.
func (st *Stream) stopWriting() {
	if !st.stopped {
		st.stopped = true
		close(st.stop)
	}
}

func (st *Stream) stopTimers() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.openTimer != nil {
		st.openTimer.Stop()
	}
	if st.closeTimer != nil {
		st.closeTimer.Stop()
	}
}

// LocalAddr is the link's local address.
func (st *Stream) LocalAddr() net.Addr { return st.s.local }

// RemoteAddr is the link's remote address.
func (st *Stream) RemoteAddr() net.Addr { return st.s.remote }

// SetDeadline sets both deadlines.
func (st *Stream) SetDeadline(t time.Time) error {
	st.rdl.set(t)
	st.wdl.set(t)
	return nil
}

// SetReadDeadline sets the read deadline: a Read waiting past it fails with ErrTimeout.
func (st *Stream) SetReadDeadline(t time.Time) error {
	st.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the write deadline: a Write waiting past it (for window or room on
// the link) fails with ErrTimeout.
func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.wdl.set(t)
	return nil
}

var _ net.Conn = (*Stream)(nil)

// deadline is a settable deadline whose channel closes when it passes.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	ch    chan struct{} // made on first use; replaced once closed and a new deadline is set
	gen   int           // which timer may close ch
}

// wait returns a channel that is closed once the deadline has passed. A deadline set later
// closes the same channel, so a waiter sees deadlines set while it waits.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.ch != nil {
		select {
		case <-d.ch:
			d.ch = nil // passed: the next deadline needs a new channel
		default:
		}
	}
	if t.IsZero() {
		return
	}
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.ch)
		return
	}
	ch, gen := d.ch, d.gen
	d.timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen {
			close(ch)
		}
	})
}
