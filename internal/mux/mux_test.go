package mux

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"maintproxy/internal/linkbatch"
	"maintproxy/internal/testkit"
)

// dialPair returns both ends of a loopback TCP connection.
func dialPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

// writerFor queues frames for c as a link does, one write per batch.
func writerFor(c net.Conn) *linkbatch.Writer {
	return linkbatch.NewWriter(nil, 0, func(_, batch []byte) error {
		_, err := c.Write(batch)
		return err
	})
}

// start runs our session on c.
func start(t *testing.T, c net.Conn, client bool, cfg Config) *Session {
	t.Helper()
	var s *Session
	if client {
		s = Client(c, writerFor(c), c.Close, cfg)
	} else {
		s = Server(c, writerFor(c), c.Close, cfg)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// pair returns a client and a server session over loopback TCP.
func pair(t *testing.T, cc, sc Config) (*Session, *Session) {
	a, b := dialPair(t)
	return start(t, a, true, cc), start(t, b, false, sc)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// conn is what the exchange helpers need of a stream, ours or yamux's.
type conn interface {
	io.ReadWriter
	SetDeadline(time.Time) error
}

// send writes size random bytes to c, then half-closes with closeWrite; it returns their
// SHA-256.
func send(c conn, size int, closeWrite func() error) ([32]byte, error) {
	h := sha256.New()
	buf := make([]byte, 48<<10)
	for left := size; left > 0; {
		n := min(left, len(buf))
		rand.Read(buf[:n])
		h.Write(buf[:n])
		if _, err := c.Write(buf[:n]); err != nil {
			return [32]byte{}, err
		}
		left -= n
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, closeWrite()
}

// recv reads c to its end and returns how much came and its SHA-256.
func recv(c io.Reader) (int64, [32]byte, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, struct{ io.Reader }{c}, make([]byte, 40<<10))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return n, sum, err
}

// exchange sends size bytes each way over a and b at once, half-closing each direction
// when done, and checks both arrive intact.
func exchange(t *testing.T, a, b conn, closeA, closeB func() error, size int) {
	t.Helper()
	a.SetDeadline(time.Now().Add(30 * time.Second))
	b.SetDeadline(time.Now().Add(30 * time.Second))
	var wg sync.WaitGroup
	var sumA, sumB, gotA, gotB [32]byte
	var nA, nB int64
	var errs [4]error
	wg.Add(4)
	go func() { defer wg.Done(); sumA, errs[0] = send(a, size, closeA) }()
	go func() { defer wg.Done(); sumB, errs[1] = send(b, size, closeB) }()
	go func() { defer wg.Done(); nB, gotB, errs[2] = recv(b) }()
	go func() { defer wg.Done(); nA, gotA, errs[3] = recv(a) }()
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatal(err)
	}
	if nA != int64(size) || nB != int64(size) || gotB != sumA || gotA != sumB {
		t.Fatalf("received %d and %d bytes of %d; intact %v %v", nB, nA, size, gotB == sumA, gotA == sumB)
	}
}

// TestStreams: several streams at once carry data both ways, intact, each direction
// half-closed on its own; closed streams leave the session.
func TestStreams(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := c.Open(ctx(t))
			if err != nil {
				t.Error(err)
				return
			}
			a.Write([]byte{byte(i)}) // the accepting side learns which stream it got
			b, err := s.Accept(ctx(t))
			if err != nil {
				t.Error(err)
				return
			}
			_ = b
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// One stream at a time is enough to check pairing; exchange on fresh ones.
	for range 3 {
		a, err := c.Open(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Accept(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		exchange(t, a, b, a.CloseWrite, b.CloseWrite, 3<<20+17)
		a.Close()
		b.Close()
	}
	waitFor(t, "closed streams to leave", func() bool { return c.NumStreams() == 4 && s.NumStreams() == 4 })
	// The four left open (and unread) hold at most their initial windows; closed ones hold
	// nothing, so a long-lived session's budget does not leak away.
	if u := s.Unread(); u != 4*InitialWindow {
		t.Fatalf("server: %d bytes unread and granted, want %d", u, 4*InitialWindow)
	}
	if u := c.Unread(); u != 4*InitialWindow {
		t.Fatalf("client: %d bytes unread and granted, want %d", u, 4*InitialWindow)
	}
}

// waitFor waits for cond, ten seconds at most.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, what, cond)
}

// TestHalfClose: after one side's CloseWrite the other still sends, and reads see EOF only
// after all data; Close stops reading with ErrStreamClosed (a net.ErrClosed).
func TestHalfClose(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	a, _ := c.Open(ctx(t))
	a.Write([]byte("request"))
	a.CloseWrite()
	if _, err := a.Write([]byte("x")); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("write after CloseWrite: %v", err)
	}
	b, err := s.Accept(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	b.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(b)
	if string(got) != "request" || err != nil {
		t.Fatalf("read %q, %v", got, err)
	}
	b.Write([]byte("answer"))
	b.CloseWrite()
	a.SetDeadline(time.Now().Add(10 * time.Second))
	got, err = io.ReadAll(a)
	if string(got) != "answer" || err != nil {
		t.Fatalf("read %q, %v", got, err)
	}
	waitFor(t, "the stream to leave both ends", func() bool { return c.NumStreams() == 0 && s.NumStreams() == 0 })

	a, _ = c.Open(ctx(t))
	b, _ = s.Accept(ctx(t))
	b.Write([]byte("unread"))
	a.Close()
	if _, err := a.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
}

// TestDeadlines: a read with nothing to read and a write with no window wait until their
// deadlines, and fail with a timeout; moving the deadline lets them on.
func TestDeadlines(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	a, _ := c.Open(ctx(t))
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := a.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v", err)
	}
	// Nobody reads on the other side: the initial window fills and the write waits.
	a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := a.Write(make([]byte, 2*InitialWindow))
	if err != ErrTimeout || n != InitialWindow {
		t.Fatalf("write beyond the window: %d, %v", n, err)
	}
	b, _ := s.Accept(ctx(t))
	a.SetWriteDeadline(time.Time{})
	a.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := a.Write(make([]byte, InitialWindow))
		done <- err
	}()
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(b, make([]byte, 2*InitialWindow)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestBacklog: with AcceptBacklog 1, one unaccepted stream waits; the next is reset at
// once, and the session goes on.
func TestBacklog(t *testing.T) {
	c, s := pair(t, Config{AcceptBacklog: 1}, Config{})
	_ = c
	first, _ := s.Open(ctx(t))
	first.Write([]byte("1"))
	extra, _ := s.Open(ctx(t))
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err != ErrStreamReset {
		t.Fatalf("stream beyond the backlog: %v, want ErrStreamReset", err)
	}
	st, err := c.Accept(ctx(t))
	if err != nil || st.StreamID() != first.StreamID() {
		t.Fatalf("accepted %v, %v", st, err)
	}
	if _, err := s.Ping(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseTimeout: a stream closed here whose peer never closes its side is reset after
// CloseTimeout; the peer's reads and writes then fail.
func TestCloseTimeout(t *testing.T) {
	c, s := pair(t, Config{CloseTimeout: 100 * time.Millisecond}, Config{})
	a, _ := c.Open(ctx(t))
	b, _ := s.Accept(ctx(t))
	a.Close()
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(b); err != nil {
		t.Fatalf("the peer's FIN: %v", err)
	}
	waitFor(t, "the reset", func() bool { return c.NumStreams() == 0 && s.NumStreams() == 0 })
	if _, err := b.Write([]byte("late")); err != ErrStreamReset {
		t.Fatalf("write after the reset: %v", err)
	}
}

// TestAcknowledged: a stream opened here is acknowledged when the peer accepts it, not
// before; a stream the peer opened has no such signal.
func TestAcknowledged(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	a, err := c.Open(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("x")) // reaches the peer's accept queue, which nobody takes yet
	waitFor(t, "the stream at the peer", func() bool { return s.NumStreams() == 1 })
	select {
	case <-a.Acknowledged():
		t.Fatal("acknowledged before the peer accepted it")
	default:
	}
	b, err := s.Accept(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Acknowledged():
	case <-time.After(10 * time.Second):
		t.Fatal("not acknowledged after the peer accepted it")
	}
	if b.Acknowledged() != nil {
		t.Fatal("a stream the peer opened has an acknowledgement signal")
	}
}

// TestOpenTimeout: with OpenTimeout, a stream the peer does not acknowledge ends the
// session; without it, only the caller's deadline ends the wait.
func TestOpenTimeout(t *testing.T) {
	c, s := pair(t, Config{OpenTimeout: 100 * time.Millisecond}, Config{AcceptBacklog: 1})
	_ = s
	st, err := c.Open(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session outlived an unacknowledged open")
	}
	if c.Err() != ErrOpenTimeout {
		t.Fatalf("session ended with %v", c.Err())
	}
	if _, err := st.Write([]byte("x")); err != ErrSessionShutdown {
		t.Fatalf("write on a dead session: %v", err)
	}

	c, _ = pair(t, Config{}, Config{AcceptBacklog: 1})
	st, _ = c.Open(ctx(t))
	st.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := st.Read(make([]byte, 1)); err != ErrTimeout {
		t.Fatalf("unanswered read: %v", err)
	}
	if c.IsClosed() {
		t.Fatal("an unanswered open ended the session")
	}
}

// TestReadMore: ReadMore returns what is buffered without waiting, (0, nil) when nothing is.
func TestReadMore(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	a, _ := c.Open(ctx(t))
	b, _ := s.Accept(ctx(t))
	if n, err := b.ReadMore(make([]byte, 10)); n != 0 || err != nil {
		t.Fatalf("nothing buffered: %d, %v", n, err)
	}
	for i := range 3 {
		a.Write(bytes.Repeat([]byte{byte(i)}, 1000))
	}
	a.CloseWrite()
	buf := make([]byte, 4000)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := b.Read(buf)
	for err == nil && n < 3000 {
		var m int
		m, err = b.ReadMore(buf[n:])
		if m == 0 && err == nil {
			var k int
			k, err = b.Read(buf[n:])
			m = k
		}
		n += m
	}
	if n != 3000 || buf[0] != 0 || buf[2999] != 2 {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	// The end may come in a later batch than the data: wait for it, then ReadMore must
	// report it too.
	if m, err := b.Read(buf); m != 0 || err != io.EOF {
		t.Fatalf("Read after the data: %d, %v; want the end", m, err)
	}
	if m, err := b.ReadMore(buf); m != 0 || err != io.EOF {
		t.Fatalf("ReadMore after the end: %d, %v", m, err)
	}
}

// TestSessionClose: closing one end fails the other's streams and Accept, and marks both
// closed.
func TestSessionClose(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	a, _ := c.Open(ctx(t))
	a.Write([]byte("x"))
	b, _ := s.Accept(ctx(t))
	c.Close()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the peer's session did not end")
	}
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(b); string(got) != "x" || err != ErrSessionShutdown {
		t.Fatalf("read on a dead session: %q, %v", got, err)
	}
	if _, err := s.Accept(ctx(t)); err != ErrSessionShutdown {
		t.Fatalf("accept on a dead session: %v", err)
	}
	if _, err := c.Open(ctx(t)); err != ErrSessionShutdown {
		t.Fatalf("open on a closed session: %v", err)
	}
}

// TestBudget: streams whose windows have grown and whose readers then stop leave at most
// the budget plus each stream's initial window unread, a sender never exceeds what it was
// granted (the session would fail), and once the readers read again every stream
// completes; a stream held back by the budget is never left without credit.
func TestBudget(t *testing.T) {
	const (
		streams = 6
		size    = 6 << 20
		budget  = 1 << 20
	)
	c, s := pair(t, Config{}, Config{MaxWindow: 4 << 20, Budget: budget})
	var writers, readers []*Stream
	for range streams {
		w, err := c.Open(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte{0})
		r, err := s.Accept(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		io.ReadFull(r, make([]byte, 1))
		writers, readers = append(writers, w), append(readers, r)
	}
	s.GrowWindows(1 << 20) // as autotuning would for fast readers on a long path
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			w.SetWriteDeadline(time.Now().Add(60 * time.Second))
			for sent := 0; sent < size; sent += len(buf) {
				if _, err := w.Write(buf); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
			w.CloseWrite()
		}()
	}
	// Each reader takes 512 KiB, passing on credit up to its grown window as far as the
	// budget lets it; then they stop.
	for _, r := range readers {
		r.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.CopyN(io.Discard, r, 512<<10); err != nil {
			t.Fatal(err)
		}
	}
	var unread int64
	for deadline, stable := time.Now().Add(10*time.Second), 0; stable < 20 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if now := s.Unread(); now == unread {
			stable++
		} else {
			stable, unread = 0, now
		}
	}
	if limit := int64(budget + streams*InitialWindow); unread > limit || unread < InitialWindow {
		t.Fatalf("granted and unread: %d bytes, want at most %d", unread, limit)
	}
	for i, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.SetReadDeadline(time.Now().Add(60 * time.Second))
			if n, err := io.Copy(io.Discard, r); err != nil || n != size-512<<10 {
				t.Errorf("stream %d: read %d more bytes: %v", i, n, err)
			}
		}()
	}
	wg.Wait()
	if c.IsClosed() || s.IsClosed() {
		t.Fatalf("session ended: %v %v", c.Err(), s.Err())
	}
	for _, r := range readers {
		r.Close()
	}
	waitFor(t, "the budget to be free again", func() bool { return s.Unread() == 0 && s.NumStreams() == 0 })
}

// TestDeadlineWhileWaiting: a deadline set (or moved into the past) while a Read or Write
// waits without one ends the wait, as a cancelled request does.
func TestDeadlineWhileWaiting(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	a, _ := c.Open(ctx(t))
	a.Write(make([]byte, InitialWindow)) // the peer reads nothing: the window is used up
	errs := make(chan error, 2)
	go func() { _, err := a.Read(make([]byte, 1)); errs <- err }()
	go func() { _, err := a.Write([]byte("x")); errs <- err }()
	select {
	case err := <-errs:
		t.Fatalf("returned before any deadline: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	a.SetReadDeadline(time.Now().Add(time.Millisecond))
	a.SetWriteDeadline(time.Now())
	for range 2 {
		select {
		case err := <-errs:
			if err != ErrTimeout {
				t.Fatalf("after the deadline: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a deadline set while waiting did not end the wait")
		}
	}
	_ = s
}

// TestWaitReadable: WaitReadable returns once data or the end is there (not before), and
// at the read deadline; ReadMore then takes what came.
func TestWaitReadable(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	a, _ := c.Open(ctx(t))
	b, _ := s.Accept(ctx(t))
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := b.WaitReadable(); !errors.Is(err, ErrTimeout) {
		t.Fatalf("nothing sent, at the deadline: %v, want ErrTimeout", err)
	}
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	waited := make(chan error, 1)
	go func() { waited <- b.WaitReadable() }()
	select {
	case err := <-waited:
		t.Fatalf("returned with nothing sent: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	a.Write([]byte("hello"))
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if n, err := b.ReadMore(buf); n != 5 || err != nil {
		t.Fatalf("after the wait: %d, %v", n, err)
	}
	a.CloseWrite()
	if err := b.WaitReadable(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.ReadMore(buf); n != 0 || err != io.EOF {
		t.Fatalf("after the end: %d, %v", n, err)
	}
}

// TestCloseAfterSessionEnd: a stream closed after its session ended starts no close timer,
// which would keep the dead session for CloseTimeout.
func TestCloseAfterSessionEnd(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	a, err := c.Open(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Accept(ctx(t)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	a.Close()
	a.mu.Lock()
	timer := a.closeTimer
	a.mu.Unlock()
	if timer != nil {
		t.Error("a close timer runs for a stream of an ended session")
	}
}

// TestReset: after Reset the peer's reads fail with ErrStreamReset (after what was already
// buffered), not a clean EOF.
func TestReset(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	a, _ := c.Open(ctx(t))
	b, err := s.Accept(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("last"))
	a.Reset()
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(b)
	if string(got) != "last" || !errors.Is(err, ErrStreamReset) {
		t.Fatalf("read %q, %v; want the buffered bytes, then ErrStreamReset", got, err)
	}
}
