package linkbatch

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
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

// waitFor polls cond until it holds or ten seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriterJoins: a data frame's header and body leave in one send, behind the room, and
// control frames go before the batch; Write returns before anything is sent.
func TestWriterJoins(t *testing.T) {
	s := &sink{gate: make(chan struct{})}
	w := NewWriter(nil, 3, s.send)
	head := frameHeader(TypeData, 5)
	for i, b := range [][]byte{head, []byte("hello")} {
		if n, err := w.Write(b); err != nil || n != len(b) {
			t.Fatalf("Write: %d, %v", n, err)
		}
		if i == 0 && (w.Queued() != 0 || !w.Waiting()) {
			t.Fatalf("a data frame's header was queued (%d bytes) without its body", w.Queued())
		}
	}
	if err := w.Control([]byte("ctl"), false); err != nil {
		t.Fatal(err)
	}
	close(s.gate) // the flusher may send only now
	if !w.WaitFlushed(10 * time.Second) {
		t.Fatal("not flushed")
	}
	// The first flush may have taken the data before the control frame was queued.
	got := bytes.Join(s.all(), nil)
	want1 := append(append([]byte("ctl\x00\x00\x00"), head...), "hello"...)
	want2 := append(append(append([]byte("\x00\x00\x00"), head...), "hello"...), "ctl"...)
	if !bytes.Equal(got, want1) && !bytes.Equal(got, want2) {
		t.Fatalf("sent %q", got)
	}
	for _, one := range s.all() {
		if bytes.Contains(one, head) && !bytes.Contains(one, []byte("hello")) {
			t.Fatalf("header sent without its body: %q", one)
		}
	}
	if w.Queued() != 0 {
		t.Fatalf("%d bytes still queued", w.Queued())
	}
}

// TestWriterBackpressure: with the send held, a writer stops once a batch is full, and
// Fail releases it with the error; a closed control side refuses more.
func TestWriterBackpressure(t *testing.T) {
	s := &sink{gate: make(chan struct{})}
	defer close(s.gate)
	w := NewWriter(nil, 0, s.send)
	upd := frameHeader(TypeWindowUpdate, 1)
	done := make(chan error, 1)
	go func() {
		for range 4 * MaxBatch / FrameHeaderLen {
			if _, err := w.Write(upd); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	waitFor(t, "a full batch", func() bool { return w.Queued() >= MaxBatch })
	select {
	case err := <-done:
		t.Fatalf("the writer ended (%v) with a full batch and the send held", err)
	default:
	}
	if w.Queued() > MaxBatch+FrameHeaderLen {
		t.Fatalf("%d bytes queued: the writer did not wait", w.Queued())
	}
	w.Fail(net.ErrClosed)
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("writer ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Fail did not release a writer waiting for the flusher")
	}
	if _, err := w.Write(upd); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Fail: %v", err)
	}
}

// TestWriterStickyError: the first send error fails every later write, and a later Fail
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
	if _, err := w.Write(frameHeader(TypeWindowUpdate, 1)); err != boom {
		t.Fatalf("Write after a failed send: %v, want %v", err, boom)
	}
	if err := w.Queue([]byte("x")); err != boom {
		t.Fatalf("Queue after a failed send: %v, want %v", err, boom)
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
	head := frameHeader(TypeData, 5)
	w.Write(head)
	w.Write([]byte("hello"))
	buf := make([]byte, 1024)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := b.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], append(head, "hello"...)) {
		t.Fatalf("socket read %q, %v; want header and body in one write", buf[:n], err)
	}
}
