package linkbatch

import (
	"net"
	"sync"
	"time"
)

// maxRoom is what a pooled batch has beyond two batches for the bytes a link reserves in
// front of it.
const maxRoom = 64

// batches holds the links' write buffers; a batch grows past MaxBatch by at most one frame.
var batches = NewPool(maxRoom + 2*MaxBatch)

// Writer is a link's sending side. It takes whole yamux frames (joining a data frame's
// header with its body), appends them to a pooled batch and returns at once; a flusher
// goroutine, running only while something is queued, sends each batch with one call of the
// link's send function, between Sock's Begin and End so that all its TLS records leave in
// one system call. While it sends, the next frames collect behind it, so under load each
// send carries up to MaxBatch bytes, and an idle link holds no buffer. A full batch holds
// the send loop until the flusher takes it (backpressure), and the first error is sticky:
// the link is dead once a send failed.
type Writer struct {
	sock  *Sock // may be nil: the link's connection cannot batch
	room  int
	send  func(ctrl, batch []byte) error
	shape func(hdr []byte) bool // see ShapeWindows

	mu       sync.Mutex
	space    sync.Cond // signalled when the flusher takes a batch or stops
	batch    *[]byte   // room, then frames; nil when none is queued
	ctrl     []byte    // the link's control frames, sent before the batch
	frames   Joiner
	flushing bool  // a flusher goroutine is running
	ctrlDone bool  // the last control frame is queued
	err      error // sticky
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

// Write takes what yamux's send loop writes: a 12-byte frame header and, for a data frame,
// its body in the next call. It queues whole frames and returns; a full batch waits until
// the flusher has taken it, so a peer that stops reading stops the send loop, and yamux's
// write timeout and keepalive see it.
func (w *Writer) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	if w.shape != nil && len(b) == FrameHeaderLen && b[1] == TypeWindowUpdate && !w.frames.Waiting() && !w.shape(b) {
		return len(b), nil
	}
	head, body, ok := w.frames.Add(b)
	if !ok {
		return len(b), nil
	}
	w.append(head, body)
	for w.batch != nil && len(*w.batch) >= w.room+MaxBatch && w.err == nil {
		w.space.Wait()
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(b), nil
}

// ShapeWindows makes every window update of the send loop pass through f before it is
// queued (credit shaping): f may lower its length, and returns false to drop a frame that no
// longer says anything. It must be set before the first Write; f must not call into w.
func (w *Writer) ShapeWindows(f func(hdr []byte) bool) { w.shape = f }

// Waiting reports whether a data frame's header waits for its body.
func (w *Writer) Waiting() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.frames.Waiting()
}

// Queue queues whole yamux frames written outside yamux's send loop; it does not wait for
// the flusher.
func (w *Writer) Queue(frames []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.append(frames, nil)
	return nil
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

// append adds a and b to the batch and makes sure a flusher runs. w.mu is held.
func (w *Writer) append(a, b []byte) {
	if w.batch == nil {
		w.batch = batches.Get()
		*w.batch = append(*w.batch, make([]byte, w.room)...)
	}
	*w.batch = append(append(*w.batch, a...), b...)
	w.kick()
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
		batch, ctrl := w.batch, w.ctrl
		w.batch, w.ctrl = nil, nil
		w.space.Broadcast()
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
	w.flushing = false
	w.space.Broadcast()
	w.mu.Unlock()
}

// Fail makes err (if none came first) fail queued and later writes, and releases a writer
// waiting for the flusher. A flusher stuck in a send stays until the link closes its
// connection.
func (w *Writer) Fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.space.Broadcast()
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
