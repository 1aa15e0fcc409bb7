package tunnel

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// Liveness of the agent link. A link is dead when nothing at all has arrived from the peer
// for KeepAliveTimeout; any byte counts, not only a ping's answer. Each end pings every
// KeepAliveInterval without waiting for the previous answer, so that a peer whose own
// sending direction is idle always has something arriving from us, and the other way
// round.
//
// Why not yamux's own keepalive: it waits for each ping's answer and fails the session
// when the answer is late. A ping queues behind the data already waiting to go out on its
// side (a frame per busy stream, up to 64 KiB each with relay's buffers, plus what the
// kernel holds), and its answer behind the data on the other side. On a customer link of
// 128 kbit/s (16 KB/s) that is about 4 s per busy stream and direction, so a few parallel
// downloads and uploads put a ping's round trip past any timeout short enough to notice a
// dead agent within 20 s. Counting every byte instead: a sending peer is heard through
// its data (a TLS record of at most 16 KiB arrives at least every second at 16 KB/s), and
// a peer that sends nothing has its pings, which wait behind nothing on its side, arrive
// every KeepAliveInterval plus one trip (≤ 200 ms). So a healthy link is never silent for
// much more than 5 s, whatever is queued, and 15 s of silence means a dead or frozen
// peer: it is noticed within 15 s (plus a timer's slack), on both ends.

// liveConn is the connection under a yamux session; it notes when data last arrived.
type liveConn struct {
	net.Conn
	last atomic.Int64 // Unix nanoseconds of the last read that returned data
}

func newLiveConn(c net.Conn) *liveConn {
	l := &liveConn{Conn: c}
	l.last.Store(time.Now().UnixNano())
	return l
}

// liveReadMax caps each read: the websocket fills a read's buffer whole before it
// returns, so a large read on a slow link would look like silence while it fills. 16 KiB
// (a TLS record) arrives in one second at 128 kbit/s.
const liveReadMax = 16 << 10

func (c *liveConn) Read(b []byte) (int, error) {
	if len(b) > liveReadMax {
		b = b[:liveReadMax]
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// watch pings over mux and closes it once c has been silent for KeepAliveTimeout, until
// stop is called or the session ends. It runs on a timer: an idle link costs no goroutine
// between ticks.
func (t Tuning) watch(mux *yamux.Session, c *liveConn) (stop func()) {
	w := &watcher{mux: mux, conn: c, interval: t.keepAliveInterval(), timeout: t.keepAliveTimeout()}
	// Each ping waits for its answer in a goroutine, at most twice writeTimeout; the answer
	// may be late by however much the peer has queued, and we must keep pinging meanwhile,
	// or a peer that is only sending would hear nothing from us. So the bound lets the
	// pings of one writeTimeout wait at once (7 with the defaults); an idle link has none.
	w.maxPings = int32(writeTimeout/w.interval) + 2
	w.mu.Lock()
	w.nextPing = time.Now().Add(w.interval)
	w.timer = time.AfterFunc(w.interval, w.tick)
	w.mu.Unlock()
	return w.stop
}

type watcher struct {
	mux               *yamux.Session
	conn              *liveConn
	interval, timeout time.Duration
	maxPings          int32
	pings             atomic.Int32

	mu       sync.Mutex
	timer    *time.Timer
	nextPing time.Time
	stopped  bool
}

func (w *watcher) tick() {
	w.mu.Lock()
	if w.stopped || w.mux.IsClosed() {
		w.mu.Unlock()
		return
	}
	now := time.Now()
	last := time.Unix(0, w.conn.last.Load())
	if now.Sub(last) >= w.timeout {
		w.stopped = true
		w.mu.Unlock()
		// Closing the session closes the connection under it: every stream fails now.
		w.mux.Close()
		return
	}
	defer w.mu.Unlock()
	if !now.Before(w.nextPing) {
		w.nextPing = now.Add(w.interval)
		if w.pings.Load() < w.maxPings {
			w.pings.Add(1)
			go func() {
				defer w.pings.Add(-1)
				w.mux.Ping() // its answer matters only as traffic; a failure is the watcher's call
			}()
		}
	}
	wake := min(w.nextPing.Sub(now), last.Add(w.timeout).Sub(now))
	w.timer.Reset(max(wake, time.Millisecond))
}

func (w *watcher) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.timer.Stop()
}
