package peer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maintproxy/internal/testkit"
)

// book is a stand-in for the cluster directory: published fingerprints and addresses.
type book struct {
	mu    sync.Mutex
	addr  map[string]string
	fp    map[string]string
	nodes map[string]string // fp → node
}

func newBook() *book {
	return &book{addr: map[string]string{}, fp: map[string]string{}, nodes: map[string]string{}}
}

func (b *book) publish(node, addr string, id *Identity) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.fp[node]; ok {
		delete(b.nodes, old)
	}
	b.addr[node], b.fp[node], b.nodes[id.Fingerprint()] = addr, id.Fingerprint(), node
}

func (b *book) trust(fp string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, ok := b.nodes[fp]
	return n, ok
}

func (b *book) resolve(node string) (string, string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.addr[node]
	return a, b.fp[node], ok
}

func identity(t *testing.T, node string) *Identity {
	t.Helper()
	id, err := NewIdentity(node)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startServer runs a Server for node on addr ("127.0.0.1:0" for any port) and publishes it.
func startServer(t *testing.T, b *book, node, addr string, id *Identity, h func(context.Context, Request, *Stream)) (*Server, *countingListener) {
	t.Helper()
	return startServerOn(t, b, node, addr, id, Tuning{}, h)
}

// startServerTuned runs a Server with tuning for node on any port and publishes it.
func startServerTuned(t *testing.T, b *book, node string, id *Identity, tuning Tuning, h func(context.Context, Request, *Stream)) {
	t.Helper()
	startServerOn(t, b, node, "127.0.0.1:0", id, tuning, h)
}

func startServerOn(t *testing.T, b *book, node, addr string, id *Identity, tuning Tuning, h func(context.Context, Request, *Stream)) (*Server, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	s := &Server{Identity: id, Trust: b.trust, Handle: h, Tuning: tuning}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(cl)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	b.publish(node, ln.Addr().String(), id)
	return s, cl
}

func newDialer(t *testing.T, b *book, node string) *Dialer {
	t.Helper()
	id := identity(t, node)
	b.publish(node, "127.0.0.1:1", id) // a dialer's node is published too (its own server)
	d := &Dialer{Identity: id, Resolve: b.resolve}
	t.Cleanup(func() { d.Close() })
	return d
}

func stream(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

// A 16 MiB transfer each way at once: both arrive intact, and after the client's half-close
// the holder still writes (a trailer with the hash of what it read) and the client reads it.
func TestStreamIntegrityAndHalfClose(t *testing.T) {
	const size = 16 << 20
	up, down := stream(1, size), stream(2, size)
	b := newBook()
	startServer(t, b, "b1", "127.0.0.1:0", identity(t, "b1"), func(ctx context.Context, req Request, s *Stream) {
		if err := s.Reply(Reply{Code: CodeOK}); err != nil {
			return
		}
		wrote := make(chan error, 1)
		go func() {
			_, err := s.Write(down)
			wrote <- err
		}()
		h := sha256.New()
		if _, err := io.Copy(h, s); err != nil {
			return
		}
		if <-wrote != nil {
			return
		}
		s.Write(h.Sum(nil)) // after the client's FIN: proves the reverse half stays open
		s.Close()
	})
	d := newDialer(t, b, "b3")
	conn, rep, err := d.Open(testkit.Context(t, 30*time.Second), "b1", Request{Customer: "12345", System: "se1", Port: 22})
	if err != nil || rep.Code != CodeOK {
		t.Fatalf("open: %v %+v", err, rep)
	}
	defer conn.Close()
	start := time.Now()
	wErr := make(chan error, 1)
	go func() {
		_, err := conn.Write(up)
		if err == nil {
			err = conn.(interface{ CloseWrite() error }).CloseWrite()
		}
		wErr <- err
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-wErr; err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if len(got) != size+sha256.Size {
		t.Fatalf("read %d bytes, want %d", len(got), size+sha256.Size)
	}
	if sha256.Sum256(got[:size]) != sha256.Sum256(down) {
		t.Error("holder→client bytes differ")
	}
	if want := sha256.Sum256(up); !bytes.Equal(got[size:], want[:]) {
		t.Error("client→holder bytes differ (hash reported by the holder)")
	}
	t.Logf("32 MiB through the link in %s (%.0f MiB/s each way)", el, 16/el.Seconds())
}

// Requests arrive intact with the verified sender; non-OK codes come back as a Reply with
// no connection; a handler that forgets to answer yields CodeNoAnswer; one link carries
// every stream.
func TestRequestReplyAndLinkReuse(t *testing.T) {
	b := newBook()
	got := make(chan Request, 1)
	_, ln := startServer(t, b, "b1", "127.0.0.1:0", identity(t, "b1"), func(ctx context.Context, req Request, s *Stream) {
		got <- req
		switch req.Port {
		case 1:
			s.Reply(Reply{Code: 7, Message: "10.0.0.9:1: the target refused the connection"})
		case 2:
			// no answer
		default:
			s.Reply(Reply{Code: CodeOK})
		}
	})
	d := newDialer(t, b, "b2")
	ctx := testkit.Context(t, 10*time.Second)
	want := Request{Customer: "12345", System: "se2", IP: "10.0.0.9", Port: 1, Account: "resa", ClientAddr: "192.0.2.1:5555", SessionID: "abc", From: "forged"}
	conn, rep, err := d.Open(ctx, "b1", want)
	if err != nil || conn != nil || rep.Code != 7 || rep.Message != "10.0.0.9:1: the target refused the connection" {
		t.Fatalf("refusal: conn=%v rep=%+v err=%v", conn, rep, err)
	}
	r := <-got
	want.From = "b2" // the server sets it from the certificate, whatever was sent
	if r != want {
		t.Errorf("request %+v, want %+v", r, want)
	}
	if _, rep, err = d.Open(ctx, "b1", Request{Port: 2}); err != nil || rep.Code != CodeNoAnswer {
		t.Errorf("no answer: %+v %v", rep, err)
	}
	<-got
	var lat []time.Duration
	for i := 0; i < 200; i++ {
		start := time.Now()
		conn, rep, err := d.Open(ctx, "b1", Request{Port: 22})
		if err != nil || rep.Code != CodeOK {
			t.Fatalf("open %d: %+v %v", i, rep, err)
		}
		lat = append(lat, time.Since(start))
		conn.Close()
		<-got
	}
	slices.Sort(lat)
	t.Logf("stream open + request + reply on a live link: p50 %s p99 %s", lat[len(lat)/2], lat[len(lat)*99/100])
	if n := ln.n.Load(); n != 1 {
		t.Errorf("%d TCP connections for 202 streams, want 1", n)
	}
}

// A broker whose certificate is not published cannot get a stream, neither through the
// Dialer nor with a hand-made TLS client; a client without a certificate neither. And the
// Dialer refuses a server that does not present the published certificate.
func TestStrangerRefused(t *testing.T) {
	b := newBook()
	var calls atomic.Int32
	startServer(t, b, "b1", "127.0.0.1:0", identity(t, "b1"), func(ctx context.Context, req Request, s *Stream) {
		calls.Add(1)
		s.Reply(Reply{Code: CodeOK})
	})
	stranger := &Dialer{Identity: identity(t, "b2"), Resolve: b.resolve} // not published
	defer stranger.Close()
	ctx := testkit.Context(t, 10*time.Second)
	if _, _, err := stranger.Open(ctx, "b1", Request{Port: 22}); err == nil {
		t.Fatal("an unpublished certificate got a stream")
	}

	addr, _, _ := b.resolve("b1")
	for _, certs := range [][]tls.Certificate{{identity(t, "x").Certificate()}, nil} {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: certs, NextProtos: []string{ALPN}})
		if err == nil {
			// TLS 1.3: the client finishes first; the server's refusal shows on the next read.
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte{0, 0, 0, 0})
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil {
			t.Errorf("TLS client with %d certificates was not refused", len(certs))
		}
	}

	// The right server certificate is pinned: publish another fingerprint for b1.
	d := newDialer(t, b, "b3")
	a, _, _ := b.resolve("b1")
	b.publish("b1", a, identity(t, "b1"))
	if _, _, err := d.Open(ctx, "b1", Request{Port: 22}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("impostor server: err = %v, want ErrUntrusted", err)
	}
	if _, _, err := d.Open(ctx, "nobody", Request{Port: 22}); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("unknown node: err = %v", err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("handler called %d times for strangers", n)
	}
}

// A link whose peer died is redialled: the peer comes back on the same address with the same
// certificate (a link cut), then restarts with a new certificate (a new process).
func TestDeadPeerRedialled(t *testing.T) {
	b := newBook()
	h := func(ctx context.Context, req Request, s *Stream) { s.Reply(Reply{Code: CodeOK}) }
	id := identity(t, "b1")
	s1, _ := startServer(t, b, "b1", "127.0.0.1:0", id, h)
	addr, _, _ := b.resolve("b1")
	d := newDialer(t, b, "b2")
	ctx := testkit.Context(t, 20*time.Second)
	open := func(what string) {
		t.Helper()
		conn, rep, err := d.Open(ctx, "b1", Request{Port: 22})
		if err != nil || rep.Code != CodeOK {
			t.Fatalf("%s: %+v %v", what, rep, err)
		}
		conn.Close()
	}
	open("first")
	s1.Close()
	if _, _, err := d.Open(ctx, "b1", Request{Port: 22}); err == nil {
		t.Fatal("open succeeded with the peer down")
	}
	_, ln2 := startServer(t, b, "b1", addr, id, h)
	open("after the link was cut")
	if ln2.n.Load() != 1 {
		t.Errorf("restarted peer saw %d links", ln2.n.Load())
	}
	startServer(t, b, "b1", "127.0.0.1:0", identity(t, "b1"), h) // new process, new address and certificate
	open("after a restart")
}

// When the link dies, the holder's handlers see their context end and the forwarding side's
// stream ends: no tunnel hangs on a dead broker. Afterwards no goroutine is left.
func TestLinkDeathEndsTunnels(t *testing.T) {
	before := runtime.NumGoroutine()
	b := newBook()
	ended := make(chan struct{})
	srv, _ := startServer(t, b, "b1", "127.0.0.1:0", identity(t, "b1"), func(ctx context.Context, req Request, s *Stream) {
		s.Reply(Reply{Code: CodeOK})
		<-ctx.Done()
		close(ended)
	})
	d := &Dialer{Identity: identity(t, "b2"), Resolve: b.resolve}
	b.publish("b2", "127.0.0.1:1", d.Identity)
	conn, _, err := d.Open(testkit.Context(t, 10*time.Second), "b1", Request{Port: 22})
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		read <- err
	}()
	d.Close()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("handler context did not end when the link closed")
	}
	select {
	case err := <-read:
		if err == nil {
			t.Error("read on a dead link returned data")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream read hangs after the link closed")
	}
	srv.Close()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left after close (before: %d)", n, before)
	}
}

// A peer that takes the TCP connection and then says nothing (a hung broker) costs an Open
// Tuning.AnswerWait, not the handshake timeout: the Open fails as a transport failure and
// the node is Suspect until a stream to it is acknowledged again.
func TestHungPeerSuspect(t *testing.T) {
	b := newBook()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16) // held open, never answered
	defer func() {
		ln.Close()
		for len(held) > 0 {
			(<-held).Close()
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case held <- c:
			default:
				c.Close()
			}
		}
	}()
	id := identity(t, "b1")
	b.publish("b1", ln.Addr().String(), id)
	d := newDialer(t, b, "b2")
	d.Tuning = Tuning{AnswerWait: 200 * time.Millisecond, HandshakeTimeout: time.Minute}
	ctx := testkit.Context(t, 30*time.Second)
	if d.Suspect("b1") {
		t.Fatal("suspect before any failure")
	}
	if _, _, err := d.Open(ctx, "b1", Request{Port: 22}); err == nil || ctx.Err() != nil {
		t.Fatalf("open to a hung peer: %v (context: %v)", err, ctx.Err())
	}
	if !d.Suspect("b1") {
		t.Fatal("a hung peer is not suspect")
	}
	// The broker is back (a new process): the next Open works and clears the mark.
	startServer(t, b, "b1", "127.0.0.1:0", identity(t, "b1"), func(ctx context.Context, req Request, s *Stream) {
		s.Reply(Reply{Code: CodeOK})
	})
	conn, rep, err := d.Open(ctx, "b1", Request{Port: 22})
	if err != nil || rep.Code != CodeOK {
		t.Fatalf("open after the peer came back: %+v %v", rep, err)
	}
	conn.Close()
	if d.Suspect("b1") {
		t.Fatal("still suspect after a stream was acknowledged")
	}
}
