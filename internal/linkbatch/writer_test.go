package linkbatch

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"maintproxy/internal/testkit"
)

// sink records what a Writer sends, and can hold sends or fail them.
type sink struct {
	mu    sync.Mutex
	sends [][]byte // ctrl then batch of each flush, copied
	gate  chan struct{}
	err   error
}

func (s *sink) send(ctrl, batch []byte) error {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends = append(s.sends, append(append([]byte(nil), ctrl...), batch...))
	return s.err
}

func (s *sink) all() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.sends...)
}

// waitFor waits for cond, ten seconds at most.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, what, cond)
}

// TestWriterFrames: a frame's header and body leave together, behind the room, and
// control frames go before the batch; while a flusher runs, Frame returns before anything
// is sent.
func TestWriterFrames(t *testing.T) {
	s := &sink{gate: make(chan struct{})}
	w := NewWriter(nil, 3, s.send)
	if err := w.Control([]byte("ctl"), false); err != nil { // starts a flusher, held at the gate
		t.Fatal(err)
	}
	head := []byte("HEADER")
	if err := w.Frame(head, []byte("hello"), &Wait{}); err != nil {
		t.Fatal(err)
	}
	close(s.gate) // the flusher may send only now
	if !w.WaitFlushed(10 * time.Second) {
		t.Fatal("not flushed")
	}
	// The first flush may have taken the control frame before the data was queued.
	got := bytes.Join(s.all(), nil)
	want := []byte("ctl\x00\x00\x00HEADERhello")
	if !bytes.Equal(got, want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
	if w.Queued() != 0 {
		t.Fatalf("%d bytes still queued", w.Queued())
	}
}

// TestWriterInline: with no flusher running, a data frame is sent by Frame itself before it
// returns; frames queued meanwhile go out after it, through a flusher.
func TestWriterInline(t *testing.T) {
	s := &sink{gate: make(chan struct{})}
	w := NewWriter(nil, 0, s.send)
	done := make(chan error, 1)
	go func() { done <- w.Frame([]byte("1"), []byte("a"), &Wait{}) }()
	waitFor(t, "the inline send to start", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.flushing })
	if err := w.Frame([]byte("2"), []byte("b"), &Wait{}); err != nil { // queued behind it
		t.Fatal(err)
	}
	w.Frame([]byte("3"), []byte("c"), nil)
	select {
	case err := <-done:
		t.Fatalf("Frame returned (%v) while its send was held", err)
	default:
	}
	s.gate <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := s.all(); len(got) != 1 || string(got[0]) != "1a" {
		t.Fatalf("sent %q when the inline Frame returned, want only its own frame", got)
	}
	close(s.gate)
	if !w.WaitFlushed(10 * time.Second) {
		t.Fatal("frames queued behind the inline send were not flushed")
	}
	if got := bytes.Join(s.all(), nil); string(got) != "1a2b3c" {
		t.Fatalf("sent %q, want 1a2b3c", got)
	}
}

// TestWriterBackpressure: with the send held, a data frame waits once a batch is full;
// its timeout, its cancel channel and Fail each end the wait with their error; frames that
// never wait go on, up to a bound; a closed control side refuses more.
func TestWriterBackpressure(t *testing.T) {
	s := &sink{gate: make(chan struct{})}
	defer close(s.gate)
	w := NewWriter(nil, 0, s.send)
	body := make([]byte, 16<<10)
	// The first batch goes to a flusher, which blocks on the gate; fill the next.
	if err := w.Frame([]byte("h"), body, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flusher to take the first batch", func() bool { return w.Queued() == 0 })
	for w.Queued() < MaxBatch {
		if err := w.Frame([]byte("h"), body, &Wait{Timeout: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Frame([]byte("h"), body, &Wait{Timeout: 50 * time.Millisecond}); err != ErrTimeout {
		t.Fatalf("a data frame on a full batch: %v, want ErrTimeout", err)
	}
	cancel := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- w.Frame([]byte("h"), body, &Wait{Cancel: cancel}) }()
	select {
	case err := <-done:
		t.Fatalf("a data frame did not wait on a full batch: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(cancel)
	if err := <-done; err != ErrCanceled {
		t.Fatalf("canceled wait: %v", err)
	}
	// Control frames never wait, but do not pile up without bound.
	var err error
	for i := 0; i < 2*maxBacklog && err == nil; i += len(body) {
		err = w.Frame(body, nil, nil)
	}
	if err != ErrBacklog || w.Queued() > maxBacklog+len(body) {
		t.Fatalf("control frames on a stuck link: %v with %d queued", err, w.Queued())
	}
	go func() { done <- w.Frame([]byte("h"), body, &Wait{}) }()
	w.Fail(net.ErrClosed)
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("waiting frame ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Fail did not release a frame waiting for the flusher")
	}
	if err := w.Frame([]byte("h"), nil, nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Frame after Fail: %v", err)
	}
}

// TestWriterStickyError: the first send error fails every later frame, and a later Fail
// does not replace it; after the last control frame, more are refused.
func TestWriterStickyError(t *testing.T) {
	boom := errors.New("boom")
	s := &sink{err: boom, gate: make(chan struct{})}
	w := NewWriter(nil, 0, s.send)
	if err := w.Control([]byte("close"), true); err != nil {
		t.Fatal(err)
	}
	if err := w.Control([]byte("late"), false); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("control frame after the last one: %v", err)
	}
	close(s.gate)
	if !w.WaitFlushed(10 * time.Second) {
		t.Fatal("not flushed")
	}
	w.Fail(net.ErrClosed)
	if err := w.Frame([]byte("x"), nil, &Wait{}); err != boom {
		t.Fatalf("Frame after a failed send: %v, want %v", err, boom)
	}
	if got := s.all(); len(got) != 1 || string(got[0]) != "close" {
		t.Fatalf("sent %q, want only the close frame", got)
	}
}

// TestWriterSock: a flush's writes through Sock leave in one socket write.
func TestWriterSock(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	defer a.Close()
	sock := &Sock{Conn: a}
	w := NewWriter(sock, 0, func(_, batch []byte) error {
		for len(batch) > 0 { // as TLS would: a record of at most 4 bytes per write
			n := min(len(batch), 4)
			if _, err := sock.Write(batch[:n]); err != nil {
				return err
			}
			batch = batch[n:]
		}
		return nil
	})
	head := []byte("HEADER")
	w.Frame(head, []byte("hello"), nil)
	buf := make([]byte, 1024)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := b.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], append(head, "hello"...)) {
		t.Fatalf("socket read %q, %v; want header and body in one write", buf[:n], err)
	}
}
