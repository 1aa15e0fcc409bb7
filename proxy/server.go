// Package proxy is the technicians' front end: an authenticated HTTPS CONNECT proxy that
// understands maintenance host names, checks the reseller's proxy account, and hands the
// connection to the customer system's agent. It is never an open proxy: only names of the
// maintenance grammar under maint.<domain> are served, and only through an agent.
package proxy

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"maintproxy/config"
	"maintproxy/internal/clientaddr"
	"maintproxy/internal/guard"
	"maintproxy/internal/refusal"
	"maintproxy/internal/relay"
	"maintproxy/maintname"
	"maintproxy/tunnel"
)

// Server timeouts.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	// openTimeout bounds how long a CONNECT waits for the agent's answer.
	openTimeout = 30 * time.Second
)

var errNoCredentials = errors.New("proxy authentication required")

// Options configure a Server.
type Options struct {
	Config   func() *config.Broker // current configuration (hot-reloaded)
	Auth     *Auth
	Registry *tunnel.Registry
	// Peers reaches agents held by other brokers (cluster mode); nil for a single broker.
	Peers Peers
	// SharedLimits counts per-account tunnels across brokers (cluster mode); nil: local only.
	SharedLimits SharedLimits
	// SharedLocks shares lockouts across brokers (cluster mode); nil: local only.
	SharedLocks SharedLocks
	TLS         *tls.Config
	Logger      *slog.Logger // operational log
	Audit       *slog.Logger // one record per tunnel
	ErrorLog    *log.Logger  // net/http's own messages (TLS handshake failures)
}

// Server is the CONNECT proxy.
type Server struct {
	opts  Options
	http  *http.Server
	count counters

	mu      sync.Mutex
	tunnels map[net.Conn]struct{}
	wg      sync.WaitGroup
	closing bool

	perAccount map[string]int
	perSystem  map[tunnel.Identity]int
}

type counters struct {
	opened, refused, active atomic.Int64
	peerActive              atomic.Int64
	bytesUp, bytesDown      atomic.Int64
}

// New returns a Server; call Serve with a plain TCP listener.
func New(o Options) *Server {
	s := &Server{opts: o, tunnels: map[net.Conn]struct{}{}, perAccount: map[string]int{}, perSystem: map[tunnel.Identity]int{}}
	s.http = &http.Server{
		Handler:           s,
		TLSConfig:         o.TLS,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// An empty map disables h2: CONNECT is served over HTTP/1.1 only.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     o.ErrorLog,
	}
	return s
}

// Serve accepts TLS connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, closes every open tunnel and waits for them to end.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	s.mu.Lock()
	s.closing = true
	for c := range s.tunnels {
		c.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// Stats is a snapshot of the proxy's counters.
type Stats struct {
	Opened, Refused, Active, BytesUp, BytesDown int64
	// PeerActive is the number of tunnels other brokers forward through this one's agents.
	PeerActive int64
}

// Stats returns the counters since start.
func (s *Server) Stats() Stats {
	return Stats{s.count.opened.Load(), s.count.refused.Load(), s.count.active.Load(), s.count.bytesUp.Load(), s.count.bytesDown.Load(), s.count.peerActive.Load()}
}

// ServeHTTP handles one proxy request. Every request, whatever its method, passes the same
// credential check first.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := s.opts.Config()
	start := time.Now()
	acct, err := s.authenticate(r)
	if err != nil {
		s.refuse(w, r, cfg, nil, "", err)
		return
	}
	if r.Method != http.MethodConnect {
		s.refuse(w, r, cfg, acct, "", ErrNotConnect)
		return
	}
	authority := r.URL.Host
	if authority == "" {
		authority = r.Host
	}
	t, err := maintname.Parse(authority, cfg.Domain)
	if err != nil {
		s.refuse(w, r, cfg, acct, authority, err)
		return
	}
	id, err := s.route(cfg, acct, t)
	if err != nil {
		s.refuse(w, r, cfg, acct, t.String(), err)
		return
	}
	release, err := s.reserveAccount(cfg, acct.Username)
	if err != nil {
		s.refuse(w, r, cfg, acct, t.String(), err)
		return
	}
	defer release()
	req := openRequest{cfg: cfg, id: id, ip: t.IP, port: t.Port, account: acct.Username, client: r.RemoteAddr}
	rand.Read(req.session[:])
	ctx, cancel := context.WithTimeout(r.Context(), openTimeout)
	stream, via, err := s.openAgent(ctx, req)
	cancel()
	if err != nil {
		s.refuse(w, r, cfg, acct, t.String(), err)
		return
	}
	client, err := s.hijack(w)
	if err != nil {
		stream.Close()
		return
	}
	defer s.untrack(client)
	s.count.opened.Add(1)
	s.count.active.Add(1)
	up, down, rerr := relay.Copy(client, stream)
	s.count.active.Add(-1)
	s.count.bytesUp.Add(up)
	s.count.bytesDown.Add(down)
	rec := []any{"session", hex.EncodeToString(req.session[:8]), "account", acct.Username, "client", r.RemoteAddr,
		"customer", id.Customer, "system", id.System, "target", t.String(), "result", "ok", "status", http.StatusOK,
		"bytes_up", up, "bytes_down", down, "duration_ms", time.Since(start).Milliseconds(), "end", cmp.Or(relay.ErrText(rerr), "closed")}
	if via != "" {
		rec = append(rec, "via", via)
	}
	s.opts.Audit.Info("tunnel", rec...)
}

// authenticate runs the one credential check for every request.
func (s *Server) authenticate(r *http.Request) (*config.Account, error) {
	user, pass, ok := parseBasic(r.Header.Get("Proxy-Authorization"))
	if !ok {
		return nil, errNoCredentials
	}
	ip := clientaddr.IP(r.RemoteAddr)
	if s.sharedLocked(user, ip) {
		return nil, ErrLocked
	}
	// Auth logs refusals itself, sampled, so that a flood cannot fill the disk.
	acct, err := s.opts.Auth.Check(user, pass, ip)
	s.shareLock(user, ip, err)
	return acct, err
}

// route checks the account's rights on the target and names the system.
func (s *Server) route(cfg *config.Broker, acct *config.Account, t maintname.Target) (tunnel.Identity, error) {
	cust := cfg.Customer(t.Customer)
	if cust == nil || !acct.Manages(t.Customer) {
		return tunnel.Identity{}, ErrNotManaged
	}
	sys := cust.System(t.System)
	if sys == nil {
		return tunnel.Identity{}, fmt.Errorf("%w: customer %s has no system %q", ErrNoSystem, cust.ID, t.System)
	}
	return tunnel.NewIdentity(cust.ID, sys.Name), nil
}

func offlineText(id tunnel.Identity, st tunnel.Status) string {
	name := id.Customer + "-" + id.System
	if st.Since.IsZero() {
		return "system " + name + " has not connected since the broker started (waiting for its agent)"
	}
	ago := time.Since(st.Since).Round(time.Second)
	return fmt.Sprintf("system %s offline since %s (%s ago)", name, st.Since.UTC().Format("2006-01-02 15:04:05 MST"), ago)
}

// reserveAccount counts a tunnel against the account's limit, on this broker and, in
// cluster mode, on the others (their counts as last published).
func (s *Server) reserveAccount(cfg *config.Broker, user string) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.perAccount[user]
	if sl := s.opts.SharedLimits; sl != nil {
		n += sl.RemoteAccountTunnels(user)
	}
	if n >= cfg.Limits.PerAccount {
		return nil, fmt.Errorf("%w: account %s has %d open tunnels (limit %d)", ErrLimit, user, n, cfg.Limits.PerAccount)
	}
	s.perAccount[user]++
	s.publishAccount(user)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.perAccount[user]--; s.perAccount[user] <= 0 {
			delete(s.perAccount, user)
		}
		s.publishAccount(user)
	}, nil
}

// publishAccount shares this broker's count for user; s.mu must be held, so that the
// published values come in the order of the changes.
func (s *Server) publishAccount(user string) {
	if sl := s.opts.SharedLimits; sl != nil {
		sl.SetAccountTunnels(user, s.perAccount[user])
	}
}

// reserveSystem counts a tunnel against the system's limit. It is counted where the agent
// session is, so with one holder per system the limit is exact across brokers.
func (s *Server) reserveSystem(cfg *config.Broker, id tunnel.Identity) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perSystem[id] >= cfg.Limits.PerSystem {
		return nil, fmt.Errorf("%w: system %s-%s has %d open tunnels (limit %d)", ErrLimit, id.Customer, id.System, s.perSystem[id], cfg.Limits.PerSystem)
	}
	s.perSystem[id]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.perSystem[id]--; s.perSystem[id] <= 0 {
			delete(s.perSystem, id)
		}
	}, nil
}

// refuse answers a refused request and records it.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, cfg *config.Broker, acct *config.Account, target string, err error) {
	status, reason, text := statusFor(err, cfg.Domain)
	h := w.Header()
	h.Set(refusal.Header, string(reason))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	// A whole body at once: a paused refusal must not hold its last chunk back.
	h.Set("Content-Length", strconv.Itoa(len(text)+1))
	var busy *guard.Refusal
	if status == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", `Basic realm="`+cfg.ProxyHost()+`"`)
	} else if errors.As(err, &busy) {
		// The connection stays open (a new TLS handshake would cost more) and is paused.
		h.Set("Retry-After", strconv.Itoa(busy.RetrySeconds()))
	} else {
		h.Set("Connection", "close")
	}
	w.WriteHeader(status)
	io.WriteString(w, text+"\n")
	if busy != nil {
		guard.Pause(w, r, busy.RetryAfter())
	}
	if acct == nil {
		return // not authenticated: Auth logged it (sampled); no audit record
	}
	s.count.refused.Add(1)
	s.opts.Audit.Info("tunnel", "account", acct.Username, "client", r.RemoteAddr, "target", target,
		"result", "refused", "status", status, "reason", err.Error())
}

// hijack takes the client connection over and confirms the tunnel. Bytes the client sent
// early stay readable through the returned conn.
func (s *Server) hijack(w http.ResponseWriter) (net.Conn, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	conn = tunnel.BatchWrites(conn) // the relay's 64 KiB writes in one system call each
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		conn.Close()
		return nil, http.ErrServerClosed
	}
	s.tunnels[conn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		s.untrack(conn)
		conn.Close()
		return nil, err
	}
	return relay.WithBuffered(conn, brw.Reader), nil
}

func (s *Server) untrack(c net.Conn) {
	if bc, ok := c.(*relay.BufferedConn); ok {
		c = bc.Conn
	}
	s.mu.Lock()
	if _, ok := s.tunnels[c]; ok {
		delete(s.tunnels, c)
		s.wg.Done()
	}
	s.mu.Unlock()
}

func parseBasic(h string) (user, pass string, ok bool) {
	r := http.Request{Header: http.Header{"Authorization": {h}}}
	return r.BasicAuth()
}
