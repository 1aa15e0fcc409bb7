package peer

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"maintproxy/internal/linkbatch"
	"maintproxy/internal/mux"
)

// Dialer is the forwarding side: it keeps one long-lived link to each broker it forwards
// to and opens a stream per tunnel on it, so a tunnel costs no TCP or TLS handshake.
// A link that died is redialled on the next Open; a node whose published address or
// fingerprint changed (a restart) gets a new link. Safe for concurrent use.
type Dialer struct {
	// Identity is this broker's peer certificate, presented as the client certificate.
	Identity *Identity
	// Resolve returns where node listens and the fingerprint its certificate must have.
	Resolve func(node string) (addr, fingerprint string, ok bool)
	Tuning  Tuning
	// Logger receives link events; default discards.
	Logger *slog.Logger

	mu      sync.Mutex
	links   map[string]*link
	suspect map[string]time.Time // nodes whose link failed lately, and when
	closed  bool
	ctx     context.Context // ends dials in progress on Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// link is one (being) established session to a node.
type link struct {
	addr, fp string
	ready    chan struct{} // closed when the dial ended; then sess or err is set
	sess     *session
	err      error
}

// suspectFor is how long a node whose link failed stays Suspect, unless a stream to it is
// acknowledged first.
const suspectFor = 15 * time.Second

// Open asks node for a tunnel. On a transport failure (node unknown, unreachable, untrusted,
// link died, no acknowledgement within Tuning.AnswerWait) it returns an error, marks the node
// Suspect, and the caller may try another holder. Otherwise it returns the holder's Reply;
// only with CodeOK is conn non-nil, carrying the tunnel's bytes.
func (d *Dialer) Open(ctx context.Context, node string, req Request) (conn net.Conn, reply Reply, err error) {
	conn, reply, err = d.open(ctx, node, req)
	if err != nil && ctx.Err() == nil {
		d.mu.Lock()
		if d.suspect == nil {
			d.suspect = map[string]time.Time{}
		}
		d.suspect[node] = time.Now()
		d.mu.Unlock()
	}
	return conn, reply, err
}

// Suspect reports whether node's link failed within the last 15 s with no stream
// acknowledged since: callers with a choice try it last.
func (d *Dialer) Suspect(node string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.suspect[node]
	if ok && time.Since(at) >= suspectFor {
		delete(d.suspect, node)
		ok = false
	}
	return ok
}

func (d *Dialer) open(ctx context.Context, node string, req Request) (conn net.Conn, reply Reply, err error) {
	for attempt := 0; ; attempt++ {
		sess, err := d.session(ctx, node)
		if err != nil {
			return nil, Reply{}, err
		}
		var ps *Stream
		st, err := sess.Open(ctx)
		if err == nil {
			ps = sess.stream(st, false)
			err = writeRequest(st, req)
			if err != nil {
				ps.Close()
			}
		}
		if err != nil {
			// The link died since it was last used (the peer restarted): one fresh link.
			d.drop(node, sess)
			if attempt == 0 && ctx.Err() == nil {
				continue
			}
			return nil, Reply{}, fmt.Errorf("peer: link to %s: %w", node, err)
		}
		if err := d.awaitAck(ctx, node, st, sess); err != nil {
			ps.Close()
			return nil, Reply{}, err
		}
		reply, err := awaitReply(ctx, ps)
		if err != nil {
			ps.Close()
			if sess.IsClosed() {
				d.drop(node, sess)
			}
			return nil, Reply{}, fmt.Errorf("peer: %s did not answer: %w", node, err)
		}
		if reply.Code != CodeOK {
			ps.Close()
			return nil, reply, nil
		}
		return ps, reply, nil
	}
}

// awaitAck waits, at most Tuning.AnswerWait, for node's link to acknowledge st.
func (d *Dialer) awaitAck(ctx context.Context, node string, st *mux.Stream, sess *session) error {
	t := time.NewTimer(d.Tuning.answer())
	defer t.Stop()
	select {
	case <-st.Acknowledged():
		d.mu.Lock()
		delete(d.suspect, node)
		d.mu.Unlock()
		return nil
	case <-sess.Done():
		d.drop(node, sess)
		return fmt.Errorf("peer: link to %s: %w", node, mux.ErrSessionShutdown)
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("peer: %s did not take the tunnel within %v (hung, or its host is gone)", node, d.Tuning.answer())
	}
}

// awaitReply reads the reply, giving up when ctx ends.
func awaitReply(ctx context.Context, st *Stream) (Reply, error) {
	if dl, ok := ctx.Deadline(); ok {
		st.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.SetReadDeadline(time.Now()) })
	r, err := readReply(st)
	stop()
	st.SetReadDeadline(time.Time{})
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return r, err
}

// session returns a live link to node, dialling one if needed; concurrent callers share one
// dial.
func (d *Dialer) session(ctx context.Context, node string) (*session, error) {
	addr, fp, ok := d.Resolve(node)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownNode, node)
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, ErrClosed
	}
	if d.links == nil {
		d.links = map[string]*link{}
		d.ctx, d.cancel = context.WithCancel(context.Background())
	}
	l := d.links[node]
	if l != nil && (l.addr != addr || l.fp != fp || l.dead()) {
		d.retire(node, l)
		l = nil
	}
	if l == nil {
		l = &link{addr: addr, fp: fp, ready: make(chan struct{})}
		d.links[node] = l
		d.wg.Add(1)
		go d.dial(d.ctx, node, l)
	}
	d.mu.Unlock()
	wait := time.NewTimer(d.Tuning.answer())
	defer wait.Stop()
	select {
	case <-l.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-wait.C:
		// The dial goes on for the next Open; this one tries another holder.
		return nil, fmt.Errorf("peer: no link to %s within %v (dialling %s)", node, d.Tuning.answer(), addr)
	}
	if l.err != nil {
		d.mu.Lock()
		if d.links[node] == l {
			delete(d.links, node)
		}
		d.mu.Unlock()
		return nil, l.err
	}
	return l.sess, nil
}

// dead reports whether a finished dial failed or its session has ended.
func (l *link) dead() bool {
	select {
	case <-l.ready:
		return l.err != nil || l.sess.IsClosed()
	default:
		return false
	}
}

// retire forgets l and closes its session once its dial is done; d.mu must be held.
func (d *Dialer) retire(node string, l *link) {
	if d.links[node] == l {
		delete(d.links, node)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		<-l.ready
		if l.sess != nil {
			l.sess.Close()
		}
	}()
}

// drop forgets the link whose session is sess.
func (d *Dialer) drop(node string, sess *session) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.links[node]; l != nil && l.sess == sess {
		delete(d.links, node)
	}
	sess.Close()
}

// dial establishes l: TCP, TLS with the published fingerprint, the session. It does not depend on
// any one caller's context (several may wait for it) but on the Dialer and the timeout.
func (d *Dialer) dial(parent context.Context, node string, l *link) {
	defer d.wg.Done()
	defer close(l.ready)
	ctx, cancel := context.WithTimeout(parent, d.Tuning.handshake())
	defer cancel()
	cfg := baseTLS(d.Identity)
	cfg.ServerName = node
	// The server's certificate is self-signed: it is checked against the fingerprint the
	// node published, in VerifyConnection, instead of against roots.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		got, err := peerFingerprint(cs)
		if err != nil {
			return err
		}
		if got != l.fp {
			return fmt.Errorf("%w: %s presented %s, published %s", ErrUntrusted, node, got, l.fp)
		}
		return nil
	}
	nd := net.Dialer{KeepAlive: 15 * time.Second}
	raw, err := nd.DialContext(ctx, "tcp", l.addr)
	if err != nil {
		l.err = fmt.Errorf("peer: dial %s at %s: %w", node, l.addr, err)
		return
	}
	sock := &linkbatch.Sock{Conn: raw}
	c := tls.Client(sock, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		l.err = fmt.Errorf("peer: dial %s at %s: %w", node, l.addr, err)
		return
	}
	sess, err := newSession(newLinkConn(c, sock), true, d.Tuning)
	if err != nil {
		c.Close()
		l.err = err
		return
	}
	// With TLS 1.3 the server checks our certificate after our side of the handshake is
	// done: a ping proves it let us in before the link is used.
	if err := ping(ctx, sess); err != nil {
		sess.Close()
		l.err = fmt.Errorf("peer: %s refused the link (is this broker's fingerprint published?): %w", node, err)
		return
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		sess.Close()
		l.err = ErrClosed
		return
	}
	l.sess = sess
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		sess.measure()
	}()
	d.logger().Info("peer link up", "to", node, "addr", l.addr)
}

func ping(ctx context.Context, sess *session) error {
	done := make(chan error, 1)
	go func() {
		_, err := sess.Ping()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sess.Close() // unblocks Ping
		<-done
		return ctx.Err()
	}
}

func (d *Dialer) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// Close closes every link (their streams end) and waits for dials in progress.
func (d *Dialer) Close() error {
	d.mu.Lock()
	d.closed = true
	links := d.links
	d.links = nil
	if d.cancel != nil {
		d.cancel()
	}
	d.mu.Unlock()
	for _, l := range links {
		<-l.ready
		if l.sess != nil {
			l.sess.Close()
		}
	}
	d.wg.Wait()
	return nil
}

var _ net.Conn = (*Stream)(nil)
