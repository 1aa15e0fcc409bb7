package peer

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"maintproxy/internal/linkbatch"
)

// TestLinkConnBatches: a frame's header and body leave in one socket write, and a frame
// that never waits does not wait for the socket; a peer that stops reading stops a sender
// of data once a batch is full, and Close releases it with an error.
func TestLinkConnBatches(t *testing.T) {
	a, b := net.Pipe() // unbuffered: a write waits until the other side reads
	defer b.Close()
	sock := &linkbatch.Sock{Conn: a}
	lc := newLinkConn(sock, sock)

	hdr := []byte("0123456789ab")
	// Nobody reads yet: the frame must be queued anyway.
	if err := lc.w.Frame(hdr, []byte("hello"), nil); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := b.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], append(hdr, "hello"...)) {
		t.Fatalf("first socket read: %q, %v; want header and body together", buf[:n], err)
	}

	// 640 KiB of data with nobody reading, behind a flusher stuck in its write: at most a
	// batch queued fits, so the sender must still be waiting when Close comes.
	body := make([]byte, 32<<10)
	if err := lc.w.Frame(hdr, body, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for range 20 {
			if err := lc.w.Frame(hdr, body, &linkbatch.Wait{}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if lc.w.Queued() >= linkbatch.MaxBatch {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the sender ended (%v) with nobody reading: no backpressure", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch never filled")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the sender ended (%v) with a full batch and nobody reading", err)
	default:
	}
	if err := lc.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("sender ended with %v, want the link closed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release a sender waiting for the flusher")
	}
}
