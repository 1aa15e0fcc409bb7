package credit

import (
	"encoding/binary"
	"testing"
	"time"

	"maintproxy/internal/linkbatch"
)

// TestShaperAgainstYamux drives a Shaper with a model of yamux's receive side and a sender
// that uses the window it is given: the sender is never allowed more than yamux granted
// (yamux would fail the session); readers that stall leave at most the budget plus each
// stream's initial window unread; once they read again every stream completes. (The links'
// budget tests stall readers whose windows have grown, over real connections.)
func TestShaperAgainstYamux(t *testing.T) {
	const (
		window  = 4 << 20
		budget  = 1 << 20
		streams = 6
		size    = 16 << 20 // per stream
		frame   = 16 << 10
	)
	type model struct {
		recvWindow int64 // yamux: what it believes the sender may still send
		buffered   int64 // yamux's receive buffer
		sendWindow int64 // what the sender was really told it may send
		sent, read int64
	}
	m := map[uint32]*model{}
	var c *Shaper
	queue := func(frames []byte) error {
		for ; len(frames) >= linkbatch.FrameHeaderLen; frames = frames[linkbatch.FrameHeaderLen:] {
			id := binary.BigEndian.Uint32(frames[4:8])
			m[id].sendWindow += int64(binary.BigEndian.Uint32(frames[8:12]))
		}
		return nil
	}
	rtt := &RTT{}
	rtt.Pin(time.Millisecond)
	c = New(window, budget, rtt, queue)
	// yamux's update: what it sends after a read, as Stream.sendWindowUpdate computes it.
	update := func(id uint32, s *model, flags uint16) {
		delta := (window - s.buffered) - s.recvWindow
		if delta < window/2 && flags == 0 {
			return
		}
		s.recvWindow += delta
		var h [linkbatch.FrameHeaderLen]byte
		h[1] = linkbatch.TypeWindowUpdate
		binary.BigEndian.PutUint16(h[2:4], flags)
		binary.BigEndian.PutUint32(h[4:8], id)
		binary.BigEndian.PutUint32(h[8:12], uint32(delta))
		if c.Outgoing(h[:]) {
			s.sendWindow += int64(binary.BigEndian.Uint32(h[8:12]))
		}
	}
	for i := range streams {
		id := uint32(2*i + 1)
		s := &model{recvWindow: InitialWindow, sendWindow: InitialWindow}
		m[id] = s
		update(id, s, 1) // the SYN, before the stream is registered
		c.Register(id)
	}
	slow := func(id uint32) bool { return id > 1 } // stream 1's reader always keeps up
	check := func(step int) {
		for id, s := range m {
			if s.sendWindow > s.recvWindow {
				t.Fatalf("step %d: stream %d may send %d, yamux expects at most %d", step, id, s.sendWindow, s.recvWindow)
			}
		}
	}
	for step := 0; step < 20000; step++ {
		stalled := step >= 1000 && step < 6000
		done := true
		for id, s := range m {
			// The sender sends a frame if it may; while readers stall, all it may.
			if n := min(frame, s.sendWindow, size-s.sent); n > 0 {
				if stalled {
					n = min(s.sendWindow, size-s.sent)
				}
				s.sent += n
				s.sendWindow -= n
				s.recvWindow -= n
				s.buffered += n
			}
			// The reader takes what is buffered, unless it is stalled.
			if n := min(s.buffered, 64<<10); n > 0 && !(stalled && slow(id)) {
				s.buffered -= n
				s.read += n
				update(id, s, 0)
				c.Consumed(id, int(n), s.buffered == 0)
			}
			if s.read < size {
				done = false
			}
		}
		check(step)
		{
			var unread int64
			for _, s := range m {
				unread += s.sent - s.read
			}
			if limit := int64(budget + streams*InitialWindow); unread > limit {
				t.Fatalf("step %d: %d bytes sent and unread, want at most %d", step, unread, limit)
			}
		}
		if done {
			return
		}
	}
	for id, s := range m {
		if s.read < size {
			t.Errorf("stream %d stalled: read %d of %d", id, s.read, size)
		}
	}
}

// A stream's window grows while its reader waits for data and takes more than the window
// per round trip.
func TestShaperWindowsGrow(t *testing.T) {
	var frames []byte
	rtt := &RTT{}
	rtt.Pin(time.Millisecond)
	c := New(4<<20, 32<<20, rtt, func(f []byte) error { frames = append(frames, f...); return nil })
	c.Register(1)
	deadline := time.Now().Add(10 * time.Second)
	for c.LargestWindow() <= InitialWindow && time.Now().Before(deadline) {
		c.Consumed(1, 64<<10, true) // a reader far faster than 128 KiB per millisecond
	}
	if c.LargestWindow() <= InitialWindow || len(frames) == 0 {
		t.Fatalf("window %d, %d bytes of updates: did not grow", c.LargestWindow(), len(frames))
	}
}
