// Package gate admits connections to the broker's public listeners. It caps the
// connections one client address and all clients together hold, refusing the excess
// right after accept (before any TLS work); it bounds the TLS handshake, done off the
// accept loop; it puts a progress deadline on every write, so a reader that stops reading
// cannot hold a connection with data waiting; and it answers a handler's panic without
// telling the client anything. The HTTP servers behind it keep the later phases (request
// headers, idle keep-alive) under their own timeouts.
package gate

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"maintproxy/internal/guard"
)

// Settings shape a Gate; they are read for every accepted connection, so a configuration
// reload applies to the next one.
type Settings struct {
	PerAddress int // connections one client address (IPv6: one /64) may hold; at least 1
	Total      int // connections all clients may hold; at least 1
	// Handshake bounds the time from accept to a finished TLS handshake (0: none).
	Handshake time.Duration
	// WriteProgress bounds each write: a write that cannot hand its bytes to the kernel
	// within it fails, and with it the connection (0: none).
	WriteProgress time.Duration
}

// Refusal log records per reason and interval; the rest are counted.
const (
	logBurst = 10
	logEvery = time.Minute
)

// Gate counts the connections of the listeners made by Listen against shared caps.
type Gate struct {
	settings func() Settings
	log      *slog.Logger
	sampler  *guard.Sampler

	mu      sync.Mutex
	perAddr map[netip.Prefix]int
	total   int
	stats   map[string]*counters
}

type counters struct {
	accepted, refusedAddr, refusedTotal, open atomic.Int64
	hsTimeout, hsError, acceptErr             atomic.Int64
}

// Stats are one listener's counters since the Gate was made.
type Stats struct {
	Accepted          int64 // connections admitted
	RefusedPerAddress int64 // closed at once: their address held PerAddress already
	RefusedTotal      int64 // closed at once: Total connections were open
	Open              int64 // admitted connections not closed yet
	HandshakeTimeouts int64 // closed: no finished TLS handshake within Handshake
	HandshakeErrors   int64 // closed: the TLS handshake failed
	AcceptErrors      int64 // accept failed (e.g. out of file descriptors) and was retried
}

// New returns a Gate; logger may be nil.
func New(settings func() Settings, logger *slog.Logger) *Gate {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Gate{settings: settings, log: logger, sampler: guard.NewSampler(logBurst, logEvery, nil),
		perAddr: map[netip.Prefix]int{}, stats: map[string]*counters{}}
}

// Stats returns the counters of every listener by name.
func (g *Gate) Stats() map[string]Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]Stats, len(g.stats))
	for name, c := range g.stats {
		out[name] = Stats{Accepted: c.accepted.Load(), RefusedPerAddress: c.refusedAddr.Load(), RefusedTotal: c.refusedTotal.Load(),
			Open: c.open.Load(), HandshakeTimeouts: c.hsTimeout.Load(), HandshakeErrors: c.hsError.Load(), AcceptErrors: c.acceptErr.Load()}
	}
	return out
}

func (g *Gate) counters(name string) *counters {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.stats[name]
	if c == nil {
		c = &counters{}
		g.stats[name] = c
	}
	return c
}

// admit takes a place for a connection from key, or says which cap refused it.
func (g *Gate) admit(key netip.Prefix, s Settings) (refused string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.total >= s.Total {
		return "total"
	}
	if g.perAddr[key] >= s.PerAddress {
		return "per_address"
	}
	g.total++
	g.perAddr[key]++
	return ""
}

func (g *Gate) release(key netip.Prefix) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.perAddr[key]--; g.perAddr[key] <= 0 {
		delete(g.perAddr, key)
	}
}

// logSampled logs at most logBurst records per reason and minute, with the number held
// back since the last one.
func (g *Gate) logSampled(level slog.Level, reason, msg string, attrs ...any) {
	ok, suppressed := g.sampler.Allow(reason)
	if !ok {
		return
	}
	g.log.Log(context.Background(), level, msg, append(attrs, "suppressed_since_last", suppressed)...)
}

// Listen returns a listener that accepts from ln through the gate. With tlsConfig it
// returns *tls.Conn whose handshake is done (an http.Server serves them with Serve, not
// ServeTLS); without, plain connections. wrap, if not nil, wraps each admitted connection
// (a *Conn) before TLS goes over it. Closing the listener closes ln and every connection
// still in its handshake; connections already returned belong to the caller.
func (g *Gate) Listen(name string, ln net.Listener, tlsConfig *tls.Config, wrap func(net.Conn) net.Conn) net.Listener {
	return &listener{g: g, name: name, ln: ln, tls: tlsConfig, wrap: wrap, stats: g.counters(name),
		conns: make(chan net.Conn), done: make(chan struct{}), pending: map[net.Conn]struct{}{}}
}

type listener struct {
	g     *Gate
	name  string
	ln    net.Listener
	tls   *tls.Config
	wrap  func(net.Conn) net.Conn
	stats *counters

	start sync.Once
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
	wg    sync.WaitGroup

	mu      sync.Mutex
	pending map[net.Conn]struct{}
}

func (l *listener) Addr() net.Addr { return l.ln.Addr() }

// Accept returns the next admitted connection (TLS: with its handshake done).
func (l *listener) Accept() (net.Conn, error) {
	l.start.Do(func() {
		l.wg.Add(1)
		go l.acceptLoop()
	})
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close stops accepting and closes the connections still in their handshake; it waits
// for the goroutines of the listener to end.
func (l *listener) Close() error {
	err := l.stop(net.ErrClosed)
	l.mu.Lock()
	for c := range l.pending {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// stop ends the listener with err (the first reason wins) and closes ln.
func (l *listener) stop(err error) error {
	var cerr error
	l.once.Do(func() {
		l.err = err
		close(l.done)
		cerr = l.ln.Close()
	})
	return cerr
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() && !isTemporary(err) {
				l.stop(err)
				return
			}
			// Out of file descriptors, typically: wait, as net/http does, and go on.
			l.stats.acceptErr.Add(1)
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.g.logSampled(slog.LevelWarn, "accept_error", "accept failed; retrying", "listener", l.name, "err", err.Error(), "retry_in", backoff.String())
			select {
			case <-time.After(backoff):
			case <-l.done:
				return
			}
			continue
		}
		backoff = 0
		l.admit(c)
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// admit counts c against the caps and hands it on, or closes it at once.
func (l *listener) admit(c net.Conn) {
	s := l.g.settings()
	key := addrKey(c.RemoteAddr())
	if reason := l.g.admit(key, s); reason != "" {
		// A reset rather than a FIN: no TIME_WAIT left here for each refused connection.
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
		limit := s.PerAddress
		if reason == "total" {
			l.stats.refusedTotal.Add(1)
			limit = s.Total
		} else {
			l.stats.refusedAddr.Add(1)
		}
		l.g.logSampled(slog.LevelWarn, reason, "connection refused: too many connections", "listener", l.name,
			"reason", reason, "client", key.Addr().String(), "limit", limit)
		return
	}
	l.stats.accepted.Add(1)
	l.stats.open.Add(1)
	gc := &Conn{Conn: c, accepted: time.Now(), progress: s.WriteProgress, release: func() {
		l.g.release(key)
		l.stats.open.Add(-1)
	}}
	var c2 net.Conn = gc
	if l.wrap != nil {
		c2 = l.wrap(gc)
	}
	if l.tls == nil {
		l.deliver(c2)
		return
	}
	l.wg.Add(1)
	go l.handshake(gc, c2, s.Handshake)
}

func (l *listener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// handshake runs the TLS handshake over wrapped (c, or what wraps it) under its deadline,
// off the accept loop.
func (l *listener) handshake(c *Conn, wrapped net.Conn, limit time.Duration) {
	defer l.wg.Done()
	if limit > 0 {
		c.Conn.SetDeadline(c.accepted.Add(limit))
	}
	tc := tls.Server(wrapped, l.tls)
	l.mu.Lock()
	select {
	case <-l.done:
		l.mu.Unlock()
		c.Close()
		return
	default:
	}
	l.pending[tc] = struct{}{}
	l.mu.Unlock()
	err := tc.Handshake()
	l.mu.Lock()
	delete(l.pending, tc)
	l.mu.Unlock()
	if err != nil {
		var ne net.Error
		var rh tls.RecordHeaderError
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			l.stats.hsTimeout.Add(1)
			l.g.logSampled(slog.LevelDebug, "handshake_timeout", "TLS handshake not finished in time", "listener", l.name,
				"client", c.RemoteAddr().String(), "limit", limit.String())
		case errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader):
			l.stats.hsError.Add(1)
			io.WriteString(rh.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		default:
			l.stats.hsError.Add(1)
			l.g.logSampled(slog.LevelDebug, "handshake_error", "TLS handshake failed", "listener", l.name,
				"client", c.RemoteAddr().String(), "err", err.Error())
		}
		c.Close()
		return
	}
	c.Conn.SetDeadline(time.Time{})
	l.deliver(tc)
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "CONNE":
		return true
	}
	return false
}

// addrKey is the key a client address is capped under (guard.AddrKey's: IPv6 by /64).
func addrKey(a net.Addr) netip.Prefix {
	if ta, ok := a.(*net.TCPAddr); ok {
		return guard.AddrKey(ta.IP.String())
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		host = a.String()
	}
	return guard.AddrKey(host)
}
