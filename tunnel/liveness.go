package tunnel

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Liveness of the agent link. A link is dead when nothing at all has arrived from the peer
// for KeepAliveTimeout; any byte counts, not only a ping's answer. Each end pings every
// KeepAliveInterval without waiting for the previous answer, so that a peer whose own
// sending direction is idle always has something arriving from us, and the other way
// round.
//
// Why not a keepalive like yamux's (earlier releases used it): it waits for each ping's
// answer and fails the session when the answer is late. A ping queues behind the data already waiting to go out on its
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

// liveRW is the byte stream under a link's session; it notes when data last
// arrived. The websocket returns data as it arrives (at most a TLS record, 16 KiB, at a
// time), so a slow but live link shows as a read at least every second at 128 kbit/s.
type liveRW struct {
	io.ReadCloser
	last atomic.Int64 // Unix nanoseconds of the last read that returned data
}

func newLiveRW(c io.ReadCloser) *liveRW {
	l := &liveRW{ReadCloser: c}
	l.last.Store(time.Now().UnixNano())
	return l
}

func (c *liveRW) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// watch pings every KeepAliveInterval and closes the link once nothing has arrived for
// KeepAliveTimeout, until the session ends. It runs on a timer: an idle link costs no
// goroutine between ticks. The first pings go at once, for the round trip the receive
// windows start from.
func (l *muxLink) watch(t Tuning) {
	w := &watcher{link: l, interval: t.keepAliveInterval(), timeout: t.keepAliveTimeout()}
	// Each ping waits for its answer in a goroutine, at most twice writeTimeout; the answer
	// may be late by however much the peer has queued, and we must keep pinging meanwhile,
	// or a peer that is only sending would hear nothing from us. So the bound lets the
	// pings of one writeTimeout wait at once (7 with the defaults); an idle link has none.
	w.maxPings = int32(writeTimeout/w.interval) + 2
	w.mu.Lock()
	w.nextPing = time.Now().Add(w.interval)
	w.timer = time.AfterFunc(w.interval, w.tick)
	w.mu.Unlock()
	l.ws.onClose(w.stop)
	go func() {
		// A few pings while the link is still idle, as one can be delayed by the machine.
		for range startPings {
			if _, err := l.mux.Ping(); err != nil {
				return
			}
		}
	}()
}

type watcher struct {
	link              *muxLink
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
	if w.stopped || w.link.mux.IsClosed() {
		w.mu.Unlock()
		return
	}
	now := time.Now()
	last := time.Unix(0, w.link.live.last.Load())
	if now.Sub(last) >= w.timeout {
		w.stopped = true
		w.mu.Unlock()
		// Closing the link fails every stream at once.
		w.link.close()
		return
	}
	defer w.mu.Unlock()
	if !now.Before(w.nextPing) {
		w.nextPing = now.Add(w.interval)
		if w.pings.Load() < w.maxPings {
			w.pings.Add(1)
			go func() {
				defer w.pings.Add(-1)
				// The answer matters as traffic and as a round trip; a failure is the
				// watcher's call, not the ping's.
				w.link.mux.Ping()
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
