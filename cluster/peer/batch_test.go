package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"maintproxy/internal/linkbatch"
)

// TestLinkConnBatches: a data frame's header and body leave in one socket write and Write
// does not wait for the socket; a peer that stops reading stops the writer once a batch
// is full, and Close releases it with an error.
func TestLinkConnBatches(t *testing.T) {
	a, b := net.Pipe() // unbuffered: a write waits until the other side reads
	defer b.Close()
	sock := &linkbatch.Sock{Conn: a}
	lc := newLinkConn(sock, sock)

	hdr := make([]byte, linkbatch.FrameHeaderLen)
	hdr[1] = linkbatch.TypeData
	binary.BigEndian.PutUint32(hdr[4:8], 1)
	binary.BigEndian.PutUint32(hdr[8:12], 5)
	// Nobody reads yet: both writes must return anyway.
	if _, err := lc.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := b.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], append(hdr, "hello"...)) {
		t.Fatalf("first socket read: %q, %v; want header and body together", buf[:n], err)
	}

	// 240 KiB of window updates with nobody reading: at most a batch queued and one in the
	// flusher's write fit, so the writer must still be waiting when Close comes.
	upd := make([]byte, linkbatch.FrameHeaderLen)
	upd[1] = 1
	done := make(chan error, 1)
	go func() {
		for range 20000 {
			if _, err := lc.Write(upd); err != nil {
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
			t.Fatalf("the writer ended (%v) with nobody reading: no backpressure", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch never filled")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the writer ended (%v) with a full batch and nobody reading", err)
	default:
	}
	if err := lc.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("writer ended with %v, want the link closed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release a writer waiting for the flusher")
	}
}
