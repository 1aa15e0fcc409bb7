package conns

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestServeLimitAndClose: beyond max open connections a new one is closed at once; Close
// ends the handlers of the open ones (blocked reading) and returns after them.
func TestServeLimitAndClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 4)
	ended := make(chan struct{}, 4)
	s := Serve(ln, 2, func(c net.Conn) {
		started <- struct{}{}
		io.Copy(io.Discard, c) // until Close closes c
		ended <- struct{}{}
	})
	defer s.Close()
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("handler not started")
		}
	}
	extra, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection beyond the limit: read %v, want EOF", err)
	}
	s.Close()
	if len(ended) != 2 {
		t.Fatalf("%d handlers ended by the time Close returned, want 2", len(ended))
	}
	open[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := open[0].Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("open connection after Close: read %v, want EOF", err)
	}
}

// TestSetRefusesAfterClose: Close closes what the Set holds, and Add refuses afterwards.
func TestSetRefusesAfterClose(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	var s Set
	if !s.Add(a, 0) {
		t.Fatal("Add refused on an open Set")
	}
	s.Close()
	if _, err := a.Write([]byte{1}); err == nil {
		t.Fatal("a held connection is still open after Close")
	}
	c, d := net.Pipe()
	defer c.Close()
	defer d.Close()
	if s.Add(c, 0) {
		t.Fatal("Add accepted after Close")
	}
}
