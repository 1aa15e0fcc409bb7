package linkbatch

import (
	"errors"
	"net"
	"sync"
	"time"
)

// maxRoom is what a pooled batch has beyond two batches for the bytes a link reserves in
// front of it.
const maxRoom = 64

// batches holds the links' write buffers; a batch grows past MaxBatch by at most one frame.
var batches = NewPool(maxRoom + 2*MaxBatch)

// Writer is a link's sending side. It takes whole frames (Frame) and copies each once into
// a pooled batch. A data frame that finds no send running is sent at once by its own
// writer; otherwise it joins the batch and Frame returns, and a flusher goroutine, running
// only while something is queued, sends it. Each batch goes out with one call of the link's
// send function, between Sock's Begin and End so that all its TLS records leave in one
// system call. While one send runs, the next frames collect behind it, so under load each
// send carries up to MaxBatch bytes, and an idle link holds no buffer. A full batch holds a
// data frame until the flusher takes it (backpressure), and the first error is sticky: the
// link is dead once a send failed.
type Writer struct {
	sock *Sock // may be nil: the link's connection cannot batch
	room int
	send func(ctrl, batch []byte) error

	mu       sync.Mutex
	space    sync.Cond     // signalled when the flusher takes a batch or stops
	taken    chan struct{} // closed (and dropped) when the flusher takes a batch; nil if none waits
	batch    *[]byte       // room, then frames; nil when none is queued
	ctrl     []byte        // the link's control frames, sent before the batch
	flushing bool          // a flusher goroutine is running
	ctrlDone bool          // the last control frame is queued
	err      error         // sticky
}

// NewWriter returns a Writer for a link over sock (nil if it cannot batch). Each batch
// starts with room bytes (at most 64) the link may fill when sending it, for its own frame
// header. send writes one flush: queued control frames (if any), then the batch (nil if
// none is queued), beginning with its room; it may change the batch's bytes.
func NewWriter(sock *Sock, room int, send func(ctrl, batch []byte) error) *Writer {
	w := &Writer{sock: sock, room: room, send: send}
	w.space.L = &w.mu
	return w
}

// Errors of Frame.
var (
	// ErrTimeout: the frame waited for the flusher longer than it may.
	ErrTimeout = errors.New("linkbatch: timed out waiting for the link")
	// ErrCanceled: the frame's sender gave up waiting (Wait.Cancel or Wait.Done).
	ErrCanceled = errors.New("linkbatch: write canceled")
	// ErrBacklog: frames that never wait piled up far beyond a batch: the peer does not
	// read, yet keeps asking for answers.
	ErrBacklog = errors.New("linkbatch: too many frames queued for a link that does not drain")
)

// maxBacklog is how far frames that never wait may fill a batch.
const maxBacklog = 16 * MaxBatch

// Wait says how long a data frame may wait for room in the batch. Any of its channels may be
// nil.
type Wait struct {
	// Cancel and Done end the wait with ErrCanceled when closed (the stream or the
	// session closed).
	Cancel, Done <-chan struct{}
	// Expired ends the wait with ErrTimeout when closed (the caller's deadline passed).
	Expired <-chan struct{}
	// Timeout bounds the wait; zero means no bound.
	Timeout time.Duration
}

// Frame queues one whole frame, hdr then body, copied once into the batch. With wait nil it
// never waits (the answers and window updates a link's receive side queues must never wait
// for the peer to read); it fails with ErrBacklog when far too much is queued. With wait,
// it first waits while the batch is full until the flusher takes it, so a peer that stops
// reading stops the sender, and with no send running it sends the batch itself. It returns
// the link's sticky error once a send has failed.
func (w *Writer) Frame(hdr, body []byte, wait *Wait) error {
	var timer *time.Timer
	var expired <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	w.mu.Lock()
	for {
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return err
		}
		if w.batch == nil || len(*w.batch) < w.room+MaxBatch {
			break
		}
		if wait == nil {
			if len(*w.batch) >= w.room+maxBacklog {
				w.mu.Unlock()
				return ErrBacklog
			}
			break
		}
		if w.taken == nil {
			w.taken = make(chan struct{})
		}
		taken := w.taken
		w.mu.Unlock()
		if timer == nil && wait.Timeout > 0 {
			timer = time.NewTimer(wait.Timeout)
			expired = timer.C
		}
		select {
		case <-taken:
		case <-wait.Cancel:
			return ErrCanceled
		case <-wait.Done:
			return ErrCanceled
		case <-wait.Expired:
			return ErrTimeout
		case <-expired:
			return ErrTimeout
		}
		w.mu.Lock()
	}
	w.appendFrame(hdr, body)
	if wait == nil || w.flushing {
		w.kick()
		w.mu.Unlock()
		return nil
	}
	// A data frame with no flusher running is sent by its own writer: no goroutine to
	// start and wake per batch. What others queue meanwhile goes on in a flusher.
	w.flushing = true
	w.sendQueued()
	if w.batch != nil || len(w.ctrl) > 0 {
		go w.flush()
	} else {
		w.flushing = false
		w.wake()
	}
	w.mu.Unlock()
	return nil
}

// wake releases the frames waiting for room. w.mu is held.
func (w *Writer) wake() {
	w.space.Broadcast()
	if w.taken != nil {
		close(w.taken)
		w.taken = nil
	}
}

// Control queues a whole control frame of the link, sent before any queued frames. last
// marks the last one (a close): later control frames fail with net.ErrClosed.
func (w *Writer) Control(frame []byte, last bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.ctrlDone {
		return net.ErrClosed
	}
	w.ctrl = append(w.ctrl, frame...)
	w.ctrlDone = last
	w.kick()
	return nil
}

// Queued returns how many bytes of frames wait for the flusher.
func (w *Writer) Queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.batch == nil {
		return 0
	}
	return len(*w.batch) - w.room
}

// appendFrame adds a and b to the batch. w.mu is held.
func (w *Writer) appendFrame(a, b []byte) {
	if w.batch == nil {
		w.batch = batches.Get()
		*w.batch = append(*w.batch, make([]byte, w.room)...)
	}
	*w.batch = append(append(*w.batch, a...), b...)
}

// kick starts the flusher if it is not running. w.mu is held.
func (w *Writer) kick() {
	if !w.flushing {
		w.flushing = true
		go w.flush()
	}
}

// flush sends what is queued until nothing is left, then ends.
func (w *Writer) flush() {
	w.mu.Lock()
	for w.err == nil && (w.batch != nil || len(w.ctrl) > 0) {
		w.sendQueued()
	}
	w.flushing = false
	w.wake()
	w.mu.Unlock()
}

// sendQueued takes what is queued and sends it as one flush. w.mu is held, and released
// while sending; the caller is the flusher.
func (w *Writer) sendQueued() {
	batch, ctrl := w.batch, w.ctrl
	w.batch, w.ctrl = nil, nil
	w.wake()
	w.mu.Unlock()
	var b []byte
	if batch != nil {
		b = *batch
	}
	if w.sock != nil {
		w.sock.Begin()
	}
	err := w.send(ctrl, b)
	if w.sock != nil {
		if serr := w.sock.End(); err == nil {
			err = serr
		}
	}
	if batch != nil {
		batches.Put(batch)
	}
	w.mu.Lock()
	if err != nil && w.err == nil {
		w.err = err
	}
}

// Fail makes err (if none came first) fail queued and later writes, and releases a writer
// waiting for the flusher. A flusher stuck in a send stays until the link closes its
// connection.
func (w *Writer) Fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.wake()
	w.mu.Unlock()
}

// WaitFlushed waits at most d for the flusher to send everything queued and reports
// whether it did.
func (w *Writer) WaitFlushed(d time.Duration) bool {
	expired := false
	t := time.AfterFunc(d, func() {
		w.mu.Lock()
		expired = true
		w.space.Broadcast()
		w.mu.Unlock()
	})
	defer t.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.flushing && !expired {
		w.space.Wait()
	}
	return !w.flushing
}
