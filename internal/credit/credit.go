// Package credit shapes the receive windows of a yamux session, for the agent link and the
// peer link alike.
//
// yamux grants each stream a fixed window (MaxStreamWindowSize) and tops it up only after
// half of it is read. A window big enough for one stream at full speed on a long path
// (16 MiB at 100 ms) would, granted to every stream, let a session buffer streams × 16 MiB
// here, and fill that much memory whenever the local reader is slower than the peer — on
// loopback, every bulk transfer.
//
// A Shaper sits between yamux and the link and shapes the window updates yamux sends. Per
// stream it grants no more than a target window, which starts at yamux's initial 256 KiB
// and grows like TCP's receive-buffer autotuning: to twice what the stream's reader takes
// in one round trip of the link (measured with pings, so it includes queueing). Across the
// session, what the peer may have sent but the local readers have not taken is kept under
// a budget; every stream may always reach the initial window. Credit yamux granted that
// is held back is passed on as the readers take data. The peer sees ordinary yamux window
// updates, never more than yamux granted, so the protocol is unchanged.
//
// What a link provides: every window update yamux sends passes through Outgoing before it
// is queued (linkbatch.Writer.ShapeWindows), a way to queue whole frames from outside
// yamux's send loop (linkbatch.Writer.Queue), each stream's reads through Read, Register
// right after a stream is opened or accepted and Forget when it is closed, and a round
// trip (RTT, from yamux's Session.Ping).
package credit

import (
	"encoding/binary"
	"io"
	"sync"
	"time"

	"maintproxy/internal/linkbatch"
)

const (
	// InitialWindow is yamux's implicit window of every new stream.
	InitialWindow = 256 << 10
	// rttRefresh is how old a round-trip sample may get while streams are busy.
	rttRefresh = 2 * time.Second
	// minRTT keeps rate sampling periods from getting shorter than timer resolution makes
	// sensible.
	minRTT = 200 * time.Microsecond
	// readWaited is how long a read must take to count as having waited for data.
	readWaited = 50 * time.Microsecond
)

// Shaper is one session's receive-window shaper (see the package comment). Safe for
// concurrent use.
type Shaper struct {
	queue  func(frames []byte) error
	window int64 // yamux's MaxStreamWindowSize
	rtt    *RTT

	mu      sync.Mutex
	budget  int64
	streams map[uint32]*stream
	total   int64 // Σ granted − consumed over registered streams
	starved int   // streams holding credit back because of the budget
}

type stream struct {
	granted  int64 // credit passed to the peer, initial window included
	consumed int64 // bytes the local reader took
	owed     int64 // credit yamux granted that is held back
	target   int64 // window this stream may have now
	starved  bool
	// Rate sampling for the target.
	mark      time.Time
	markBytes int64
	waited    bool // the reader waited for data since mark
}

// New returns the shaper of a session whose yamux MaxStreamWindowSize is window, keeping
// what peers may have sent and readers not yet taken under budget beyond each stream's
// initial window. queue sends whole yamux frames (window updates) outside yamux's send
// loop; rtt gives the link's round trip.
func New(window uint32, budget int64, rtt *RTT, queue func(frames []byte) error) *Shaper {
	return &Shaper{queue: queue, window: int64(window), budget: budget, rtt: rtt, streams: map[uint32]*stream{}}
}

// Register starts shaping a stream right after yamux opened or accepted it: by then yamux
// has granted its whole window in its SYN or ACK update, of which the peer got only the
// initial window.
func (c *Shaper) Register(id uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.streams[id] = &stream{granted: InitialWindow, owed: c.window - InitialWindow, target: InitialWindow}
	c.total += InitialWindow
}

// Forget stops shaping a stream (it is closed; nothing more will be read): it gets no
// more credit.
func (c *Shaper) Forget(id uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.streams[id]
	if s == nil {
		return
	}
	c.total -= s.granted - s.consumed
	if s.starved {
		c.starved--
	}
	delete(c.streams, id)
}

// allowance is how much held-back credit s may be given now. c.mu is held.
func (c *Shaper) allowance(s *stream) int64 {
	exposed := s.granted - s.consumed
	f := min(s.owed, s.target-exposed)
	if room := max(c.budget-c.total, InitialWindow-exposed); f > room {
		f = room
		if !s.starved {
			s.starved = true
			c.starved++
		}
	} else if s.starved {
		s.starved = false
		c.starved--
	}
	return max(f, 0)
}

func (c *Shaper) grant(s *stream, f int64) {
	s.owed -= f
	s.granted += f
	c.total += f
}

// Outgoing sees a window update yamux is about to send and lowers its length to what the
// stream may have; it returns false when the frame has nothing left to say.
func (c *Shaper) Outgoing(hdr []byte) bool {
	flags := binary.BigEndian.Uint16(hdr[2:4])
	id := binary.BigEndian.Uint32(hdr[4:8])
	delta := int64(binary.BigEndian.Uint32(hdr[8:12]))
	c.mu.Lock()
	defer c.mu.Unlock()
	var f int64
	if s := c.streams[id]; s != nil {
		s.owed += delta
		f = c.allowance(s)
		c.grant(s, f)
	}
	// Unregistered streams (being opened, refused or already closed) keep the initial
	// window and no more; Register accounts for what is held back here.
	binary.BigEndian.PutUint32(hdr[8:12], uint32(f))
	return f > 0 || flags != 0
}

// Read reads stream id from r into p and records what the reader took.
func (c *Shaper) Read(id uint32, r io.Reader, p []byte) (int, error) {
	start := time.Now()
	n, err := r.Read(p)
	c.Consumed(id, n, time.Since(start) > readWaited)
	return n, err
}

// Consumed records that the local reader of stream id took n bytes (having waited for
// them if waited), adjusts the stream's target, and passes on held-back credit.
func (c *Shaper) Consumed(id uint32, n int, waited bool) {
	if n <= 0 {
		return
	}
	now := time.Now()
	rtt := max(c.rtt.Get(now), minRTT)
	var out []byte
	c.mu.Lock()
	s := c.streams[id]
	if s == nil {
		c.mu.Unlock()
		return
	}
	s.consumed += int64(n)
	c.total -= int64(n)
	// Autotuning: twice what the reader took in one round trip, if it had to wait for data
	// (a reader that never waits is the bottleneck, and more window only buffers more).
	if s.mark.IsZero() {
		s.mark, s.markBytes = now, s.consumed-int64(n)
	}
	s.waited = s.waited || waited
	if el := now.Sub(s.mark); el >= rtt {
		want := 2 * (s.consumed - s.markBytes) * int64(rtt) / int64(el)
		if want > s.target && s.waited {
			s.target = max(min(want, c.window, c.budget), InitialWindow)
		}
		s.mark, s.markBytes, s.waited = now, s.consumed, false
	}
	out = c.release(out, id, s)
	if c.starved > 0 && c.total < c.budget {
		for oid, o := range c.streams {
			if o.starved && o != s {
				out = c.release(out, oid, o)
			}
		}
	}
	c.mu.Unlock()
	if len(out) > 0 {
		c.queue(out)
	}
}

// release appends a window update passing on s's held-back credit, if enough of it may go
// to be worth a frame. c.mu is held.
func (c *Shaper) release(out []byte, id uint32, s *stream) []byte {
	if s.owed == 0 {
		return out
	}
	exposed := s.granted - s.consumed
	f := c.allowance(s)
	// A small update waits for more to collect, unless the peer is running short: when the
	// budget holds a stream back, what it may have can stay below an eighth of its target.
	if f == 0 || (f < s.owed && f < s.target/8 && exposed >= s.target/2) {
		return out
	}
	c.grant(s, f)
	var h [linkbatch.FrameHeaderLen]byte
	h[1] = linkbatch.TypeWindowUpdate
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], uint32(f))
	return append(out, h[:]...)
}

// SetBudget changes the session's budget (tests use a small one).
func (c *Shaper) SetBudget(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.budget = n
}

// Grow sets the window of every registered stream to at least n, as autotuning would for
// readers fast enough on a long path (tests of the budget, which must not depend on how
// fast a shared machine lets the readers run).
func (c *Shaper) Grow(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.streams {
		s.target = max(s.target, min(n, c.window))
	}
}

// Unread returns what the peer may have sent on the registered streams and their readers
// have not taken: credit granted (initial windows included) less bytes read.
func (c *Shaper) Unread() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// LargestWindow returns the largest target window of the registered streams.
func (c *Shaper) LargestWindow() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var m int64
	for _, s := range c.streams {
		m = max(m, s.target)
	}
	return m
}

// RTT keeps a link's round-trip time: the least of all pings so far, as data and window
// updates queue in socket buffers on a busy link and a busy round trip would grow the
// windows that fill those buffers.
type RTT struct {
	mu       sync.Mutex
	ping     func() (time.Duration, error)
	rtt      time.Duration
	at       time.Time
	inFlight bool
	pinned   bool
}

// SetPing sets how the link pings (yamux's Session.Ping); until then nothing is measured.
func (p *RTT) SetPing(ping func() (time.Duration, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ping = ping
}

// Get returns the last sample and starts a new measurement if it is stale.
func (p *RTT) Get(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.at) > rttRefresh && !p.inFlight && !p.pinned && p.ping != nil {
		p.inFlight = true
		go p.Measure()
	}
	return p.rtt
}

// Measure pings once and records the result; it returns the ping's error.
func (p *RTT) Measure() error {
	p.mu.Lock()
	ping := p.ping
	p.mu.Unlock()
	if ping == nil {
		return nil
	}
	d, err := ping()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight = false
	if err == nil && !p.pinned {
		if p.rtt == 0 || d < p.rtt {
			p.rtt = d
		}
		p.at = time.Now()
	}
	return err
}

// Pin fixes the round trip at d: no more pings, no other samples (tests).
func (p *RTT) Pin(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rtt, p.at, p.pinned = d, time.Now(), true
}
