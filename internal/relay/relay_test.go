package relay

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); accepted <- c }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestCopyHalfClose: EOF from the client reaches the server as a half-close, and the
// server's reply still reaches the client afterwards.
func TestCopyHalfClose(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	type res struct{ up, down int64 }
	done := make(chan res, 1)
	go func() { up, down, _ := Copy(a, b); done <- res{up, down} }()

	client.Write([]byte("request"))
	client.CloseWrite()
	got, err := io.ReadAll(server) // ends only if the half-close arrived
	if err != nil || string(got) != "request" {
		t.Fatalf("server read %q, %v", got, err)
	}
	server.Write([]byte("reply after half-close"))
	server.CloseWrite()
	reply, err := io.ReadAll(client)
	if err != nil || string(reply) != "reply after half-close" {
		t.Fatalf("client read %q, %v", reply, err)
	}
	select {
	case r := <-done:
		if r.up != 7 || r.down != 22 {
			t.Errorf("counted %d up, %d down", r.up, r.down)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Copy did not return after both directions ended")
	}
}

// TestCopyTearsDownOnReset: a reset on one side closes the other at once.
func TestCopyTearsDownOnReset(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	done := make(chan error, 1)
	go func() { _, _, err := Copy(a, b); done <- err }()
	server.SetLinger(0)
	server.Close() // RST
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(client); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("client was left hanging after the target reset")
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Copy did not return")
	}
}
