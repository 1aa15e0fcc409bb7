package mux

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"time"

	"maintproxy/internal/linkbatch"
)

// receive is the session's one receive goroutine: it reads frames until the link fails or
// the peer breaks the protocol, then ends the session.
func (s *Session) receive() {
	var h header
	for {
		_, err := io.ReadFull(s.r, h[:])
		if err == nil {
			err = s.frame(&h)
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, ErrProtocol):
			s.fail(err)
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
			s.shutdown(ErrSessionShutdown) // the link ended
		default:
			s.shutdown(err)
		}
		return
	}
}

// frame handles one frame whose header is h; a data frame's body is read here.
func (s *Session) frame(h *header) error {
	if h[0] != version {
		return protocolErr("version %d, want %d", h[0], version)
	}
	switch h.typ() {
	case typeData, typeWindow:
		return s.streamFrame(h)
	case typePing:
		if h.id() != 0 {
			return protocolErr("ping on stream %d", h.id())
		}
		switch {
		case h.flags()&flagSYN != 0:
			return s.control(typePing, flagACK, 0, h.length())
		case h.flags()&flagACK != 0:
			s.mu.Lock()
			if ch := s.pings[h.length()]; ch != nil {
				delete(s.pings, h.length())
				close(ch)
			}
			s.mu.Unlock()
		}
		return nil
	case typeGoAway:
		s.mu.Lock()
		s.remoteGoAway = true
		s.mu.Unlock()
		return nil
	}
	return protocolErr("unknown frame type %d", h.typ())
}

// streamFrame handles a data or window update frame.
func (s *Session) streamFrame(h *header) error {
	id, flags, n := h.id(), h.flags(), h.length()
	if id == 0 {
		return protocolErr("stream frame on stream 0")
	}
	st, err := s.lookup(id, flags)
	if err != nil {
		return err
	}
	if flags&flagACK != 0 && st != nil {
		st.mu.Lock()
		if !st.acked && st.ackCh != nil {
			close(st.ackCh)
		}
		st.acked = true
		if st.openTimer != nil {
			st.openTimer.Stop()
		}
		st.mu.Unlock()
	}
	if h.typ() == typeData {
		if err := s.data(st, id, int64(n)); err != nil {
			return err
		}
	} else if n > 0 && st != nil {
		st.mu.Lock()
		st.sendWindow += int64(n)
		over := st.sendWindow > math.MaxUint32
		st.mu.Unlock()
		if over {
			return protocolErr("window of stream %d grown past 4 GiB", id)
		}
		signal(st.writable)
	}
	if st == nil {
		return nil
	}
	if flags&flagRST != 0 {
		st.markReset()
	} else if flags&flagFIN != 0 {
		s.mu.Lock()
		st.mu.Lock()
		st.remoteFin = true
		done := st.wrClosed
		st.mu.Unlock()
		s.win.stop(&st.rw)
		if done {
			s.remove(st)
		}
		s.mu.Unlock()
		if done {
			st.stopTimers()
		}
		signal(st.readable)
	}
	return nil
}

// lookup returns the stream of a frame, creating it for a SYN; nil for a stream that is
// gone (or refused), whose frames are dropped.
func (s *Session) lookup(id uint32, flags uint16) (*Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if flags&flagSYN == 0 {
		return st, nil
	}
	if st != nil {
		return nil, protocolErr("stream %d opened twice", id)
	}
	if (id%2 == 1) == s.client {
		return nil, protocolErr("stream %d opened with this end's parity", id)
	}
	st = newStream(s, id)
	if s.localGoAway {
		s.rstLater(id)
		return nil, nil
	}
	select {
	case s.accept <- st:
	default:
		// The backlog is full: refused, so that nothing unaccepted piles up here.
		s.rstLater(id)
		return nil, nil
	}
	s.add(st)
	return st, nil
}

// rstLater resets a refused stream. s.mu is held, so the frame is queued from here without
// waiting.
func (s *Session) rstLater(id uint32) {
	h := makeHeader(typeWindow, flagRST, id, 0)
	s.w.Frame(h[:], nil, nil)
}

// data reads a data frame's body of n bytes into st's buffer (or drops it for a stream
// that is gone or closed for reading).
func (s *Session) data(st *Stream, id uint32, n int64) error {
	if n == 0 {
		return nil
	}
	if st != nil {
		s.mu.Lock()
		live := st.live
		ok := !live || s.win.receive(&st.rw, n)
		s.mu.Unlock()
		if !ok {
			return protocolErr("stream %d sent %d bytes beyond its window", id, n)
		}
		if !live {
			st = nil // reset here since it was looked up: drop what it sent
		}
	}
	for n > 0 {
		var c *chunk
		var start int
		if st != nil {
			st.mu.Lock()
			if !st.readClosed {
				if len(st.queue) > 0 {
					if last := st.queue[len(st.queue)-1]; last.w < len(last.buf) {
						c = last
					}
				}
				if c == nil {
					c = getChunk(n)
					st.queue = append(st.queue, c)
				}
				st.filling = true
				start = c.w
			}
			st.mu.Unlock()
		}
		if c == nil {
			// Dropped: read into scratch space, and count it as taken.
			if s.scratch == nil {
				s.scratch = make([]byte, 16<<10)
			}
			k := min(n, int64(len(s.scratch)))
			if _, err := io.ReadFull(s.r, s.scratch[:k]); err != nil {
				return err
			}
			if st != nil {
				s.mu.Lock()
				s.win.drop(&st.rw, k)
				s.mu.Unlock()
			}
			n -= k
			continue
		}
		k := int(min(n, int64(len(c.buf)-start)))
		_, err := io.ReadFull(s.r, c.buf[start:start+k])
		st.mu.Lock()
		st.filling = false
		if err == nil {
			c.w = start + k
			if st.readClosed {
				// Closed while we read: Close dropped the queue but left this chunk.
				st.mu.Unlock()
				putChunk(c)
				s.mu.Lock()
				s.win.drop(&st.rw, int64(k))
				s.mu.Unlock()
				n -= int64(k)
				continue
			}
			st.buffered += k
		}
		st.mu.Unlock()
		if err != nil {
			return err
		}
		signal(st.readable)
		n -= int64(k)
	}
	return nil
}

// consumed records that st's reader took n bytes and passes on the credit due.
func (s *Session) consumed(st *Stream, n int, waited bool) {
	now := time.Now()
	var out []byte
	s.mu.Lock()
	s.win.consume(&st.rw, int64(n), waited, now)
	if st.live && !st.rw.stopped {
		out = s.appendRelease(out, st)
		if s.win.starved > 0 && s.win.total < s.win.budget {
			for _, o := range s.streams {
				if o.rw.starved && o != st {
					out = s.appendRelease(out, o)
				}
			}
		}
	}
	stale := s.win.stale(now)
	s.mu.Unlock()
	if stale {
		go s.measure()
	}
	if len(out) > 0 {
		// Credit that cannot be sent is lost to its stream for good, so a link too far
		// behind to take it ends, as with any control frame (see control).
		if err := s.w.Frame(out, nil, nil); err == linkbatch.ErrBacklog {
			go s.shutdown(err)
		}
	}
}

// appendRelease appends a window update with the credit due to st, if any. s.mu is held.
func (s *Session) appendRelease(out []byte, st *Stream) []byte {
	f := s.win.release(&st.rw)
	if f == 0 {
		return out
	}
	var h [headerLen]byte
	h[1] = typeWindow
	binary.BigEndian.PutUint32(h[4:8], st.id)
	binary.BigEndian.PutUint32(h[8:12], uint32(f))
	return append(out, h[:]...)
}
