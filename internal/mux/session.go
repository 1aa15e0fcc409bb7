package mux

import (
	"cmp"
	"context"
	"io"
	"math"
	"net"
	"sync"
	"time"

	"maintproxy/internal/linkbatch"
)

// Config tunes a session; zero fields take the defaults noted.
type Config struct {
	// AcceptBacklog is how many opened streams may wait for Accept; the peer's streams
	// beyond it are reset at once (default 256).
	AcceptBacklog int
	// WriteTimeout bounds the wait of one data frame for room on the link, and of a ping
	// for its answer (default 30 s). A write that times out fails that stream's write only.
	WriteTimeout time.Duration
	// MaxWindow is the most a stream's receive window may grow to (default and minimum:
	// InitialWindow).
	MaxWindow uint32
	// Budget bounds what the peer may have sent on this session's streams and their readers
	// have not taken, beyond each stream's initial window (default 32 MiB).
	Budget int64
	// KeepAlive, if set, pings this often; an unanswered ping (WriteTimeout) ends the
	// session.
	KeepAlive time.Duration
	// OpenTimeout, if set, ends the session when a stream it opened is not acknowledged
	// within it (the link is stuck). Without it an unanswered open concerns only that
	// stream's user, through its deadlines.
	OpenTimeout time.Duration
	// CloseTimeout is how long a stream closed here waits for the peer to close its side
	// before it is reset (default 5 min).
	CloseTimeout time.Duration
}

func (c *Config) fill() {
	c.AcceptBacklog = cmp.Or(c.AcceptBacklog, 256)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 30*time.Second)
	c.MaxWindow = max(c.MaxWindow, InitialWindow)
	c.Budget = cmp.Or(c.Budget, 32<<20)
	c.CloseTimeout = cmp.Or(c.CloseTimeout, 5*time.Minute)
}

// Session is one end of a multiplexed link. Its one receive goroutine reads frames from the
// link and puts data straight into the streams' buffers; everything sent is appended to the
// link's batch (linkbatch.Writer) by the goroutine that sends it. Safe for concurrent use.
type Session struct {
	cfg    Config
	client bool
	r      io.Reader
	w      *linkbatch.Writer
	closer func() error
	local  net.Addr
	remote net.Addr

	accept chan *Stream
	done   chan struct{}
	once   sync.Once
	err    error // why it ended; set before done is closed

	scratch []byte // the receive goroutine's, for data that is dropped

	mu           sync.Mutex
	streams      map[uint32]*Stream
	nextID       uint32
	localGoAway  bool
	remoteGoAway bool
	pings        map[uint32]chan struct{}
	pingID       uint32
	win          windows
}

// Client starts the client end of a session over a link: frames are read from r and queued
// on w; closer closes the link. The client opens odd-numbered streams.
func Client(r io.Reader, w *linkbatch.Writer, closer func() error, cfg Config) *Session {
	return newSession(r, w, closer, true, cfg)
}

// Server starts the server end (even-numbered streams); see Client.
func Server(r io.Reader, w *linkbatch.Writer, closer func() error, cfg Config) *Session {
	return newSession(r, w, closer, false, cfg)
}

func newSession(r io.Reader, w *linkbatch.Writer, closer func() error, client bool, cfg Config) *Session {
	cfg.fill()
	s := &Session{
		cfg:     cfg,
		client:  client,
		r:       r,
		w:       w,
		closer:  closer,
		local:   addr("local"),
		remote:  addr("remote"),
		accept:  make(chan *Stream, cfg.AcceptBacklog),
		done:    make(chan struct{}),
		streams: map[uint32]*Stream{},
		nextID:  2,
		pings:   map[uint32]chan struct{}{},
	}
	if client {
		s.nextID = 1
	}
	if a, ok := r.(interface {
		LocalAddr() net.Addr
		RemoteAddr() net.Addr
	}); ok {
		s.local, s.remote = a.LocalAddr(), a.RemoteAddr()
	}
	s.win.init(int64(cfg.MaxWindow), cfg.Budget)
	go s.receive()
	if cfg.KeepAlive > 0 {
		go s.keepAlive()
	}
	return s
}

// addr is a stream's address when the link has none.
type addr string

func (a addr) Network() string { return "mux" }
func (a addr) String() string  { return string(a) }

// Open opens a stream. It does not wait for the peer: the stream may be written at once,
// and whether the peer answers is for the caller to find out within its own deadline.
func (s *Session) Open(ctx context.Context) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	switch {
	case s.IsClosed():
		s.mu.Unlock()
		return nil, ErrSessionShutdown
	case s.remoteGoAway:
		s.mu.Unlock()
		return nil, ErrRemoteGoAway
	case s.nextID >= math.MaxUint32-1:
		s.mu.Unlock()
		return nil, ErrStreamsExhausted
	}
	st := newStream(s, s.nextID)
	st.ackCh = make(chan struct{})
	s.nextID += 2
	s.add(st)
	s.mu.Unlock()
	if err := s.control(typeWindow, flagSYN, st.id, 0); err != nil {
		st.abort()
		return nil, err
	}
	if s.cfg.OpenTimeout > 0 {
		st.mu.Lock()
		if !st.acked {
			st.openTimer = time.AfterFunc(s.cfg.OpenTimeout, func() {
				st.mu.Lock()
				acked := st.acked
				st.mu.Unlock()
				if !acked {
					s.shutdown(ErrOpenTimeout)
				}
			})
		}
		st.mu.Unlock()
	}
	return st, nil
}

// Accept waits for a stream the peer opened and acknowledges it.
func (s *Session) Accept(ctx context.Context) (*Stream, error) {
	select {
	case st := <-s.accept:
		if err := s.control(typeWindow, flagACK, st.id, 0); err != nil {
			return nil, err
		}
		return st, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, ErrSessionShutdown
	}
}

// Ping sends a ping and returns the round trip when its answer arrives, or ErrTimeout after
// WriteTimeout. The least round trip so far shapes the receive windows.
func (s *Session) Ping() (time.Duration, error) {
	ch := make(chan struct{})
	s.mu.Lock()
	id := s.pingID
	s.pingID++
	s.pings[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pings, id)
		s.mu.Unlock()
	}()
	start := time.Now()
	if err := s.control(typePing, flagSYN, 0, id); err != nil {
		return 0, err
	}
	t := time.NewTimer(s.cfg.WriteTimeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		return 0, ErrTimeout
	case <-s.done:
		return 0, ErrSessionShutdown
	}
	d := time.Since(start)
	s.mu.Lock()
	s.win.sample(d)
	s.mu.Unlock()
	return d, nil
}

// GoAway tells the peer that this end takes no more streams; streams it opens from now on
// are reset. Open streams go on.
func (s *Session) GoAway() error {
	s.mu.Lock()
	s.localGoAway = true
	s.mu.Unlock()
	return s.control(typeGoAway, 0, 0, goAwayNormal)
}

// Close ends the session at once: the link is closed and every stream fails.
func (s *Session) Close() error {
	s.shutdown(ErrSessionShutdown)
	return nil
}

// Err returns why the session ended (nil while it runs).
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// IsClosed reports whether the session has ended.
func (s *Session) IsClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// NumStreams returns how many streams are open (not yet closed by both ends or reset).
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// shutdown ends the session with err (the first reason wins).
func (s *Session) shutdown(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
		s.closer()
		s.w.Fail(ErrSessionShutdown)
		s.mu.Lock()
		streams := s.streams
		s.streams = map[uint32]*Stream{}
		for _, st := range streams {
			st.live = false // a Close from now on starts no close timer
		}
		s.mu.Unlock()
		for _, st := range streams {
			st.stopTimers()
			st.notify()
		}
	})
}

// fail ends the session after a protocol error, telling the peer why if it can.
func (s *Session) fail(err error) {
	if s.IsClosed() {
		return
	}
	s.control(typeGoAway, 0, 0, goAwayProtocol)
	s.w.WaitFlushed(time.Second)
	s.shutdown(err)
}

// control queues a frame without a body; it never waits for the link.
func (s *Session) control(typ byte, flags uint16, id, length uint32) error {
	h := makeHeader(typ, flags, id, length)
	if err := s.w.Frame(h[:], nil, nil); err != nil {
		if err == linkbatch.ErrBacklog {
			go s.shutdown(err)
		}
		return ErrSessionShutdown
	}
	return nil
}

// add registers a new stream. s.mu is held.
func (s *Session) add(st *Stream) {
	s.streams[st.id] = st
	st.live = true
	s.win.open(&st.rw)
}

// remove forgets a stream that neither end will send on any more. s.mu is held.
func (s *Session) remove(st *Stream) {
	if !st.live {
		return
	}
	st.live = false
	delete(s.streams, st.id)
	s.win.forget(&st.rw)
}

// keepAlive pings every KeepAlive until the session ends; an unanswered ping ends it.
func (s *Session) keepAlive() {
	t := time.NewTicker(s.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if _, err := s.Ping(); err != nil {
				if err == ErrTimeout {
					s.shutdown(ErrKeepAlive)
				}
				return
			}
		case <-s.done:
			return
		}
	}
}

// measure pings on if the round trip is stale; the receive windows grow from it.
func (s *Session) measure() {
	s.Ping()
	s.mu.Lock()
	s.win.measuring = false
	s.mu.Unlock()
}

// SetBudget changes the session's budget (tests use a small one).
func (s *Session) SetBudget(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.win.budget = n
}

// PinRTT fixes the round trip the windows grow from at d: no more samples (tests).
func (s *Session) PinRTT(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.win.rtt, s.win.at, s.win.pinned = d, time.Now(), true
}

// RTT returns the least round trip measured so far (0 before the first answer).
func (s *Session) RTT() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.win.rtt
}

// GrowWindows sets the window of every open stream to at least n (at most MaxWindow), as
// autotuning would for readers fast enough on a long path (tests of the budget, which must
// not depend on how fast a shared machine lets the readers run).
func (s *Session) GrowWindows(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		st.rw.target = max(st.rw.target, min(n, s.win.max))
	}
}

// Unread returns what the peer may have sent on this session's streams and their readers
// have not taken: credit granted (initial windows included) less bytes read or dropped.
func (s *Session) Unread() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.win.total
}

// LargestWindow returns the largest window of the open streams.
func (s *Session) LargestWindow() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m int64
	for _, st := range s.streams {
		m = max(m, st.rw.target)
	}
	return m
}
