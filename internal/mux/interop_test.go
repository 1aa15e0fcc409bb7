package mux

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// Agents and brokers of earlier releases run github.com/hashicorp/yamux; these tests pair
// our session with it in both roles over loopback TCP.

func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.MaxStreamWindowSize = 4 << 20 // as earlier releases: more than the initial window
	c.LogOutput = io.Discard
	return c
}

// ourConfig lets windows grow; the round trip is pinned well above loopback's, so that a
// reader that waits for data grows its window.
var ourConfig = Config{MaxWindow: 16 << 20}

func TestInteropOursClient(t *testing.T) {
	a, b := dialPair(t)
	ours := start(t, a, true, ourConfig)
	theirs, err := yamux.Server(b, yamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	interop(t, ours, theirs)
}

func TestInteropOursServer(t *testing.T) {
	a, b := dialPair(t)
	theirs, err := yamux.Client(a, yamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	ours := start(t, b, false, ourConfig)
	interop(t, ours, theirs)
}

// interop: streams opened by either end carry data both ways, intact, with each direction
// half-closed on its own; our windows grow and yamux's grown windows are used; pings go
// both ways; yamux's go away stops our opens.
func interop(t *testing.T, ours *Session, theirs *yamux.Session) {
	ours.PinRTT(2 * time.Millisecond)
	const size = 8<<20 + 5

	// Opened by us.
	a, err := ours.Open(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("!"))
	b, err := theirs.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(b, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	exchange(t, a, b, a.CloseWrite, b.Close, size)
	a.Close()

	// Opened by yamux; it sends while we read, and our window grows.
	y, err := theirs.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	y.Write([]byte("?"))
	o, err := ours.Accept(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	o.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(o, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	var largest atomic.Int64
	watch := &windowWatch{r: o, s: ours, largest: &largest}
	go func() {
		buf := make([]byte, 64<<10)
		for range 256 {
			if _, err := y.Write(buf); err != nil {
				return
			}
		}
		y.Close()
	}()
	if n, err := io.Copy(io.Discard, watch); n != 256*64<<10 || err != nil {
		t.Fatalf("read %d bytes from yamux's stream: %v", n, err)
	}
	if largest.Load() <= InitialWindow {
		t.Fatalf("our window did not grow past %d (largest %d)", InitialWindow, largest.Load())
	}
	o.Close()
	if y, err = theirs.OpenStream(); err != nil {
		t.Fatal(err)
	}
	y.Write([]byte("?"))
	if o, err = ours.Accept(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(o, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	exchange(t, o, y, o.CloseWrite, y.Close, 1<<20)
	o.Close()

	if _, err := ours.Ping(); err != nil {
		t.Fatalf("our ping: %v", err)
	}
	if _, err := theirs.Ping(); err != nil {
		t.Fatalf("yamux's ping: %v", err)
	}
	waitFor(t, "closed streams to leave", func() bool { return ours.NumStreams() == 0 && theirs.NumStreams() == 0 })

	if err := theirs.GoAway(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the go away", func() bool {
		st, err := ours.Open(context.Background())
		if err == nil {
			st.Close()
		}
		return err == ErrRemoteGoAway
	})
	if ours.IsClosed() {
		t.Fatalf("session ended: %v", ours.Err())
	}
}

// windowWatch reads r, noting the session's largest window as it goes.
type windowWatch struct {
	r       io.Reader
	s       *Session
	largest *atomic.Int64
}

func (w *windowWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if l := w.s.LargestWindow(); l > w.largest.Load() {
		w.largest.Store(l)
	}
	return n, err
}

var _ net.Conn = (*yamux.Stream)(nil)
