package echo

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"maintproxy/internal/testkit"
)

// TestEchoHalfCloseAndClose: bytes come back, the client's half-close is answered with
// one, and Close ends open connections and every goroutine.
func TestEchoHalfCloseAndClose(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := make([]byte, 1<<20)
	rand.Read(msg)
	go func() { c.Write(msg); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echoed %d of %d bytes (equal %v), err %v", len(got), len(msg), bytes.Equal(got, msg), err)
	}

	idle, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.Write([]byte("x"))
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(idle, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatalf("connection still open after Close (read %d bytes)", n)
	}
	if _, err := net.Dial("tcp", s.Addr()); err == nil {
		t.Fatal("still accepting after Close")
	}
	testkit.WaitGoroutines(t, before)
}

// TestEchoStopsWithContext: cancelling the context given to Start stops the server.
func TestEchoStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting 10s after the context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Close()
}
