package gate

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"maintproxy/internal/testkit"
)

// serverTLS is a self-signed identity for gate.test and a client config trusting it.
func serverTLS(t *testing.T) (*tls.Config, *tls.Config) {
	t.Helper()
	cert, pool := testkit.SelfSigned(t, "gate.test")
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		&tls.Config{RootCAs: pool, ServerName: "gate.test"}
}

// testListener is a gate listener on 127.0.0.1:0 whose accepted connections are collected.
type testListener struct {
	net.Listener
	g        *Gate
	accepted chan net.Conn
	done     chan struct{}
}

func listen(t *testing.T, s Settings, tlsConfig *tls.Config, logger *slog.Logger) *testListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := New(func() Settings { return s }, logger)
	l := &testListener{Listener: g.Listen("test", ln, tlsConfig, nil), g: g, accepted: make(chan net.Conn, 100), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			l.accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-l.done
		for len(l.accepted) > 0 {
			(<-l.accepted).Close()
		}
	})
	return l
}

func (l *testListener) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-l.accepted:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted within 10s")
		return nil
	}
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused dials addr from src and reports whether the listener closed the connection at
// once: reset before the dial returned, or closed within a second.
func refused(t *testing.T, src, addr string) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closed, _ := closedWithin(c, time.Second)
	return closed
}

// closedWithin reports whether the far end closes c within d, and when.
func closedWithin(c net.Conn, d time.Duration) (bool, time.Duration) {
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, time.Since(start)
	}
	return err != nil, time.Since(start)
}

func waitStats(t *testing.T, g *Gate, what string, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := g.Stats()["test"]
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCapsRefuseAtOnce: beyond PerAddress for one address, or Total for all, a connection
// is closed right after accept and counted; closing an admitted one makes room again.
func TestCapsRefuseAtOnce(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	l := listen(t, Settings{PerAddress: 3, Total: 5}, nil, slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, nil)))
	addr := l.Addr().String()
	var held []net.Conn
	for range 3 {
		dialFrom(t, "127.0.0.1", addr)
		held = append(held, l.next(t))
	}
	if !refused(t, "127.0.0.1", addr) {
		t.Fatal("4th connection from one address not refused")
	}
	for range 2 {
		dialFrom(t, "127.0.0.2", addr)
		held = append(held, l.next(t))
	}
	if !refused(t, "127.0.0.3", addr) {
		t.Fatal("6th connection in total not refused")
	}
	st := waitStats(t, l.g, "counted", func(s Stats) bool { return s.RefusedPerAddress == 1 && s.RefusedTotal == 1 })
	if st.Accepted != 5 || st.Open != 5 {
		t.Errorf("stats %+v, want 5 accepted and open", st)
	}
	held[0].Close()
	held[0].Close() // twice: one place given back
	waitStats(t, l.g, "place given back", func(s Stats) bool { return s.Open == 4 })
	dialFrom(t, "127.0.0.3", addr)
	l.next(t)
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), `"reason":"per_address"`) || !strings.Contains(logs.String(), `"reason":"total"`) {
		t.Errorf("refusals not logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestHandshakeDeadline: a client that never finishes TLS is closed at the deadline and
// holds nobody up meanwhile; one speaking HTTP gets a 400 that says so.
func TestHandshakeDeadline(t *testing.T) {
	srv, cli := serverTLS(t)
	const limit = 300 * time.Millisecond
	l := listen(t, Settings{PerAddress: 100, Total: 100, Handshake: limit}, srv, nil)
	addr := l.Addr().String()
	silent := dialFrom(t, "127.0.0.1", addr)
	partial := dialFrom(t, "127.0.0.1", addr)
	partial.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a ClientHello that never ends
	start := time.Now()
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cli)
	if err != nil {
		t.Fatalf("a real client behind two stalled ones: %v", err)
	}
	defer tc.Close()
	if c := l.next(t).(*tls.Conn); !c.ConnectionState().HandshakeComplete {
		t.Error("Accept returned a connection whose handshake is not done")
	}
	for name, c := range map[string]net.Conn{"silent": silent, "partial ClientHello": partial} {
		closed, _ := closedWithin(c, 5*time.Second)
		took := time.Since(start)
		if !closed || took < limit-50*time.Millisecond || took > limit+2*time.Second {
			t.Errorf("%s client: closed %v after %v, want at about %v", name, closed, took, limit)
		}
	}
	waitStats(t, l.g, "handshake timeouts counted", func(s Stats) bool { return s.HandshakeTimeouts == 2 && s.Open == 1 })

	plain := dialFrom(t, "127.0.0.1", addr)
	io.WriteString(plain, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	plain.SetReadDeadline(time.Now().Add(5 * time.Second))
	body, _ := io.ReadAll(plain)
	if !strings.HasPrefix(string(body), "HTTP/1.0 400") || !strings.Contains(string(body), "HTTPS") {
		t.Errorf("plain HTTP on the TLS listener: %q", body)
	}
}

// TestWriteProgressDeadline: a write to a client that stopped reading fails after the
// progress deadline; a reading client gets everything, however long it takes in total.
func TestWriteProgressDeadline(t *testing.T) {
	const limit = 300 * time.Millisecond
	l := listen(t, Settings{PerAddress: 10, Total: 10, WriteProgress: limit}, nil, nil)
	addr := l.Addr().String()

	reader := dialFrom(t, "127.0.0.1", addr)
	sc := l.next(t)
	const size = 16 << 20
	go func() {
		defer sc.Close()
		sc.Write(make([]byte, size))
	}()
	n, err := io.Copy(io.Discard, reader)
	if n != size || err != nil {
		t.Fatalf("reading client got %d bytes, %v; want %d", n, err, size)
	}

	dialFrom(t, "127.0.0.1", addr) // never reads
	sc = l.next(t)
	buf := make([]byte, 1<<20)
	start := time.Now()
	var werr error
	for i := 0; werr == nil && i < 1024; i++ {
		_, werr = sc.Write(buf)
	}
	var ne net.Error
	if !errors.As(werr, &ne) || !ne.Timeout() {
		t.Fatalf("writing to a client that does not read: %v, want a timeout", werr)
	}
	if took := time.Since(start); took > limit+5*time.Second {
		t.Errorf("stalled write failed after %v", took)
	}
	// A deadline the user set earlier than the progress deadline still applies.
	dialFrom(t, "127.0.0.1", addr)
	sc = l.next(t)
	sc.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := sc.Write([]byte("x")); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("write after a past user deadline: %v", err)
	}
}

// TestAcceptedInRequestContext: an http.Server behind a gate listener sees when each
// connection was accepted.
func TestAcceptedInRequestContext(t *testing.T) {
	srv, cli := serverTLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := New(func() Settings { return Settings{PerAddress: 10, Total: 10, Handshake: time.Second} }, nil)
	got := make(chan time.Time, 1)
	hs := &http.Server{ConnContext: ConnContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at, _ := Accepted(r.Context())
		got <- at
		if r.TLS == nil {
			t.Error("request without TLS state")
		}
	})}
	// A layer between the gate's connection and TLS (as the broker puts one) hides nothing.
	go hs.Serve(g.Listen("test", ln, srv, func(c net.Conn) net.Conn { return layer{c} }))
	defer hs.Close()
	before := time.Now()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cli}}
	resp, err := c.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if at := <-got; at.Before(before) || at.After(time.Now()) {
		t.Errorf("accepted at %v, request made at %v", at, before)
	}
}

// layer wraps a connection the way tunnel.BatchConn does.
type layer struct{ net.Conn }

func (l layer) NetConn() net.Conn { return l.Conn }

// TestRecover: a panicking handler's client gets a bare 500; the log has the panic and
// its place, no stack trace.
func TestRecover(t *testing.T) {
	var logs bytes.Buffer
	h := Recover(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("secret-free failure")
	}), slog.New(slog.NewJSONHandler(&logs, nil)))
	srv := &http.Server{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || string(body) != "internal error\n" {
		t.Errorf("panicking handler: %d %q", resp.StatusCode, body)
	}
	out := logs.String()
	if !strings.Contains(out, "secret-free failure") || !strings.Contains(out, "gate.TestRecover") || strings.Contains(out, "goroutine ") {
		t.Errorf("log: %s", out)
	}
}

// TestCloseEndsEverything: closing a listener with handshakes under way ends them and
// every goroutine of the listener.
func TestCloseEndsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	srv, _ := serverTLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := New(func() Settings { return Settings{PerAddress: 10, Total: 10, Handshake: time.Hour} }, nil)
	gl := g.Listen("test", ln, srv, nil)
	accepted := make(chan error, 1)
	go func() { _, err := gl.Accept(); accepted <- err }()
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	waitStats(t, g, "three in their handshake", func(s Stats) bool { return s.Open == 3 })
	if err := gl.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	waitStats(t, g, "handshakes closed", func(s Stats) bool { return s.Open == 0 })
	for _, c := range clients {
		if closed, _ := closedWithin(c, 5*time.Second); !closed {
			t.Error("a client in its handshake still open after Close")
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left, %d before", n, before)
	}
}
