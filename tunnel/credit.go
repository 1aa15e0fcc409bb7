package tunnel

// Receive windows. yamux grants each stream a fixed window (MaxStreamWindowSize) and tops
// it up only after half of it is read. A window big enough for one stream at full speed on
// a long path (16 MiB at 100 ms) would, granted to every stream, let a session buffer
// streams × 16 MiB here, and fill that much memory whenever the local reader is slower
// than the peer — on loopback, every bulk transfer.
//
// credits sits between yamux and the link and shapes the window updates yamux sends. Per
// stream it grants no more than a target window, which starts at yamux's initial 256 KiB
// and grows like TCP's receive-buffer autotuning: to twice what the stream's reader takes
// in one round trip of the link (measured with pings, so it includes queueing). Across the
// session, what the peer may have sent but the local readers have not taken is kept under
// a budget; every stream may always reach the initial window. Credit yamux granted that
// is held back is passed on as the readers take data. The peer sees ordinary yamux window
// updates, never more than yamux granted, so the protocol is unchanged.

import (
	"encoding/binary"
	"sync"
	"time"

	"maintproxy/internal/linkbatch"
)

const (
	yamuxHeaderLen        = linkbatch.FrameHeaderLen
	yamuxTypeData         = linkbatch.TypeData
	yamuxTypeWindowUpdate = linkbatch.TypeWindowUpdate
	// initialWindow is yamux's implicit window of every new stream.
	initialWindow = 256 << 10
	// maxStreamWindow is yamux's window. Up to this much per stream may be granted when
	// the round trip and the reader's speed call for it. yamux tops its grant up only
	// after half of it was read, so at worst half of it is open: 16 MiB, 160 MB/s at 100 ms.
	maxStreamWindow = 32 << 20
	// sessionBudget bounds, per session, what peers may have sent and readers not yet
	// taken, beyond the initial window of each stream.
	sessionBudget = 32 << 20
	// rttRefresh is how old a round-trip sample may get while streams are busy.
	rttRefresh = 2 * time.Second
	// minRTT keeps rate sampling periods from getting shorter than timer resolution makes
	// sensible.
	minRTT = 200 * time.Microsecond
)

// credits is one session's receive-window shaper (see above).
type credits struct {
	link   *wsConn
	budget int64
	rtt    *rttProbe

	mu      sync.Mutex
	streams map[uint32]*streamCredit
	total   int64 // Σ granted − consumed over registered streams
	starved int   // streams holding credit back because of the budget
}

type streamCredit struct {
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

func newCredits(link *wsConn, rtt *rttProbe, budget int64) *credits {
	c := &credits{link: link, budget: budget, rtt: rtt, streams: map[uint32]*streamCredit{}}
	link.onWindow = c.outgoing
	return c
}

// register starts shaping a stream right after yamux opened or accepted it: by then yamux
// has granted the whole maxStreamWindow in its SYN or ACK update, of which the peer got
// only the initial window.
func (c *credits) register(id uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.streams[id] = &streamCredit{granted: initialWindow, owed: maxStreamWindow - initialWindow, target: initialWindow}
	c.total += initialWindow
}

// forget stops shaping a stream (it is closed).
func (c *credits) forget(id uint32) {
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
func (c *credits) allowance(s *streamCredit) int64 {
	exposed := s.granted - s.consumed
	f := min(s.owed, s.target-exposed)
	if room := max(c.budget-c.total, initialWindow-exposed); f > room {
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

func (c *credits) grant(s *streamCredit, f int64) {
	s.owed -= f
	s.granted += f
	c.total += f
}

// outgoing sees a window update yamux is about to send and lowers its length to what the
// stream may have; it returns false when the frame has nothing left to say.
func (c *credits) outgoing(hdr []byte) bool {
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
	// Unregistered streams (the agent's hello, streams being refused or already closed)
	// keep the initial window and no more; register accounts for what is held back here.
	binary.BigEndian.PutUint32(hdr[8:12], uint32(f))
	return f > 0 || flags != 0
}

// consumed records that the local reader of stream id took n bytes (having waited for
// them if waited), adjusts the stream's target, and passes on held-back credit.
func (c *credits) consumed(id uint32, n int, waited bool) {
	if n <= 0 {
		return
	}
	now := time.Now()
	rtt := max(c.rtt.get(now), minRTT)
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
			s.target = max(min(want, maxStreamWindow, c.budget), initialWindow)
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
		c.link.writeFrames(out)
	}
}

// release appends a window update passing on s's held-back credit, if enough of it may go
// to be worth a frame. c.mu is held.
func (c *credits) release(out []byte, id uint32, s *streamCredit) []byte {
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
	var h [yamuxHeaderLen]byte
	h[1] = yamuxTypeWindowUpdate
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], uint32(f))
	return append(out, h[:]...)
}

// rttProbe keeps the link's round-trip time: the least of all yamux pings so far, as data
// and window updates queue in socket buffers on a busy link and a busy round trip would
// grow the windows that fill those buffers.
type rttProbe struct {
	ping func() (time.Duration, error)

	mu       sync.Mutex
	rtt      time.Duration
	at       time.Time
	inFlight bool
}

// get returns the last sample and starts a new measurement if it is stale.
func (p *rttProbe) get(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.at) > rttRefresh && !p.inFlight && p.ping != nil {
		p.inFlight = true
		go p.measure()
	}
	return p.rtt
}

// measure pings once and records the result; it returns the ping's error.
func (p *rttProbe) measure() error {
	d, err := p.ping()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight = false
	if err == nil {
		if p.rtt == 0 || d < p.rtt {
			p.rtt = d
		}
		p.at = time.Now()
	}
	return err
}
