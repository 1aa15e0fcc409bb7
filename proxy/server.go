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
	"maintproxy/internal/gate"
	"maintproxy/internal/guard"
	"maintproxy/internal/refusal"
	"maintproxy/internal/relay"
	"maintproxy/maintname"
	"maintproxy/people"
	"maintproxy/tunnel"
)

// Server timeouts.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	// openTimeout bounds how long a CONNECT waits for the agent's answer.
	openTimeout = 30 * time.Second
	// auditBurst refusal audit records per reason and auditEvery are written; the rest
	// are counted, so that an account refused in a loop cannot fill the disk.
	auditBurst = 60
	auditEvery = time.Minute
	// cutWait bounds Close's wait for the handlers of the tunnels it cut.
	cutWait = 10 * time.Second
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
	// ReadHeaderTimeout bounds the wait for a request's headers, IdleTimeout for the next
	// request on a kept-alive connection (defaults 10 s and 60 s).
	ReadHeaderTimeout, IdleTimeout time.Duration
	// Observer, when set, is told of every refusal and tunnel (metrics).
	Observer Observer
	// People, when set, enforces roles and approval mode, keeps the audit history and
	// lets Revalidate end tunnels it no longer allows; Auth should have the same.
	People *people.Service
	// Carrier, when set, names the system whose agent reaches customer's system for the
	// broker (listed in that agent's network.systems) when system has no agent of its own
	// online, here or at another broker; "" otherwise. It reads the policies the agents
	// reported last. Nil: every system is reached through its own agent only.
	Carrier func(customer, system string) string
}

// Observer is told of the proxy's events, for metrics. Its methods must not block.
type Observer interface {
	// Refused is called once for every refused request, authenticated or not.
	Refused(reason refusal.Reason, status int)
	// Established is called for every tunnel set up, with the time from the request's
	// arrival to the 200 going out.
	Established(setup time.Duration)
	// Abandoned is called for every CONNECT whose client hung up before its tunnel was
	// set up.
	Abandoned()
}

// Server is the CONNECT proxy.
type Server struct {
	opts  Options
	http  *http.Server
	count counters

	// auditSampler lets a few refusal audit records per reason and minute through.
	auditSampler *guard.Sampler

	mu      sync.Mutex
	tunnels map[net.Conn]*tunnelRef
	wg      sync.WaitGroup
	closing bool

	perAccount map[string]int
	perSystem  map[tunnel.Identity]int
}

type counters struct {
	opened, refused, active, abandoned atomic.Int64
	revoked                            atomic.Int64
	peerActive                         atomic.Int64
	bytesUp, bytesDown                 atomic.Int64
}

// New returns a Server; call Serve with a plain TCP listener.
func New(o Options) *Server {
	s := &Server{opts: o, tunnels: map[net.Conn]*tunnelRef{}, perAccount: map[string]int{}, perSystem: map[tunnel.Identity]int{},
		auditSampler: guard.NewSampler(auditBurst, auditEvery, nil)}
	s.http = &http.Server{
		Handler:           gate.Recover(s, o.Logger),
		TLSConfig:         o.TLS,
		ReadHeaderTimeout: cmp.Or(o.ReadHeaderTimeout, readHeaderTimeout),
		IdleTimeout:       cmp.Or(o.IdleTimeout, idleTimeout),
		MaxHeaderBytes:    maxHeaderBytes,
		// An empty map disables h2: CONNECT is served over HTTP/1.1 only.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     o.ErrorLog,
	}
	return s
}

// Serve accepts connections on ln until Shutdown: TLS connections as a gate listener
// returns them (handshake done), or plain TCP ones, which it wraps in TLS with Options.TLS.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(tlsListener{ln, s.opts.TLS})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// tlsListener wraps the plain connections of a listener in TLS and passes TLS ones on.
type tlsListener struct {
	net.Listener
	config *tls.Config
}

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(*tls.Conn); ok || l.config == nil {
		return c, nil
	}
	return tls.Server(c, l.config), nil
}

// Shutdown stops accepting and waits, until ctx is done, for the requests in flight and
// the open tunnels to end: a drain. It cuts nothing; Close does that afterwards.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// Close cuts every connection still open: requests in flight, and tunnels, whose audit
// records then say end: shutdown. It waits a few seconds at most for their handlers.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	err := s.http.Close()
	s.mu.Lock()
	for c, t := range s.tunnels {
		t.cut.Store(true)
		c.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTimer(cutWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		return errors.New("proxy: tunnels still open after being cut")
	}
	return err
}

// Stats is a snapshot of the proxy's counters. Bytes are counted as they pass.
type Stats struct {
	Opened, Refused, Active, BytesUp, BytesDown int64
	// Abandoned counts CONNECTs whose client hung up before the tunnel was up.
	Abandoned int64
	// PeerActive is the number of tunnels other brokers forward through this one's agents.
	PeerActive int64
	// Revoked counts tunnels cut because a change ended their right (Revalidate, End).
	Revoked int64
}

// Stats returns the counters since start.
func (s *Server) Stats() Stats {
	return Stats{s.count.opened.Load(), s.count.refused.Load(), s.count.active.Load(), s.count.bytesUp.Load(), s.count.bytesDown.Load(),
		s.count.abandoned.Load(), s.count.peerActive.Load(), s.count.revoked.Load()}
}

// ServeHTTP handles one proxy request. Every request, whatever its method, passes the same
// credential check first.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := s.opts.Config()
	start := time.Now()
	who, err := s.authenticate(r)
	if err != nil {
		s.refuse(w, r, cfg, nil, "", err)
		return
	}
	if r.Method != http.MethodConnect {
		s.refuse(w, r, cfg, &who, "", ErrNotConnect)
		return
	}
	authority := r.URL.Host
	if authority == "" {
		authority = r.Host
	}
	t, err := maintname.Parse(authority, cfg.Domain)
	if err != nil {
		s.refuse(w, r, cfg, &who, authority, err)
		return
	}
	acct := who.Account
	if acct == nil {
		s.refuse(w, r, cfg, &who, t.String(), people.ErrNotTechnician)
		return
	}
	id, err := s.route(cfg, acct, t)
	if err == nil {
		err = s.authorize(r.Context(), who, id, t.String())
	}
	if err != nil {
		s.refuse(w, r, cfg, &who, t.String(), err)
		return
	}
	release, err := s.reserveAccount(cfg, acct.Username)
	if err != nil {
		s.refuse(w, r, cfg, &who, t.String(), err)
		return
	}
	req := openRequest{cfg: cfg, id: id, ip: t.IP, port: t.Port, account: acct.Username, user: who.Username, client: r.RemoteAddr}
	if c := s.opts.Carrier; c != nil {
		if through := c(id.Customer, id.System); through != "" {
			req.id, req.via = tunnel.NewIdentity(id.Customer, through), id.System
		}
	}
	rand.Read(req.session[:])
	ctx, cancel := context.WithTimeout(r.Context(), openTimeout)
	stream, via, err := s.openAgent(ctx, req)
	cancel()
	if err != nil {
		if r.Context().Err() != nil {
			s.abandoned(r, &who, id, t.String(), req.session, start)
		} else {
			s.refuse(w, r, cfg, &who, t.String(), err)
		}
		release()
		return
	}
	client, ref, err := s.hijack(w, TunnelInfo{Session: hex.EncodeToString(req.session[:8]), Account: acct.Username,
		Person: who.Username, Org: who.Org, Customer: id.Customer, System: id.System, Target: t.String(),
		Client: r.RemoteAddr, Since: start}, who.Principal)
	if err != nil {
		release()
		stream.Close()
		return
	}
	s.count.opened.Add(1)
	s.count.active.Add(1)
	if o := s.opts.Observer; o != nil {
		o.Established(time.Since(start))
	}
	// The tunnel outlives this handler: once it returns, net/http lets go of the request,
	// the response and the connection's buffers, which a tunnel never uses (its early bytes
	// are in client), and the tunnel holds only what it needs while it waits.
	go func() {
		defer s.recoverTunnel(client, stream, ref)
		defer release()
		defer s.untrack(ref)
		s.carry(client, stream, ref, &who, req, via, start)
	}()
}

// recoverTunnel keeps a panic in a tunnel's goroutine from ending the broker, as
// gate.Recover does for handlers: it cuts the tunnel and logs one error record.
func (s *Server) recoverTunnel(client, stream net.Conn, ref *tunnelRef) {
	v := recover()
	if v == nil {
		return
	}
	client.Close()
	stream.Close()
	if s.opts.Logger != nil {
		s.opts.Logger.Error("tunnel panicked", "panic", fmt.Sprint(v), "session", ref.info.Session)
	}
}

// relay moves a tunnel's bytes; the tunnel stops counting as active when that ends, even
// in a panic.
func (s *Server) relay(client, stream net.Conn) (up, down int64, err error) {
	defer s.count.active.Add(-1)
	return relay.Copy(countingConn{client, &s.count}, stream)
}

// carry relays an established tunnel until both sides are done, then writes its audit
// and history records. ref is tracked (hijack) until the caller untracks it.
func (s *Server) carry(client, stream net.Conn, ref *tunnelRef, who *Identity, req openRequest, via string, start time.Time) {
	up, down, rerr := s.relay(client, stream)
	end := cmp.Or(relay.ErrText(rerr), "closed")
	if ref.cut.Load() {
		end = "shutdown"
	}
	if why, ok := ref.revoked.Load().(string); ok {
		end = "revoked: " + why
	}
	info := &ref.info
	rec := append(whoFields(who), "session", info.Session, "client", info.Client,
		"customer", info.Customer, "system", info.System, "target", info.Target, "result", "ok", "status", http.StatusOK,
		"bytes_up", up, "bytes_down", down, "duration_ms", time.Since(start).Milliseconds(), "end", end)
	if via != "" {
		rec = append(rec, "via", via)
	}
	if req.via != "" {
		rec = append(rec, "through", req.id.System)
	}
	s.opts.Audit.Info("tunnel", rec...)
	s.history(people.Record{Kind: "tunnel", Session: info.Session, Person: who.Username, Org: who.Org,
		Client: info.Client, Customer: info.Customer, System: info.System, Target: info.Target, Result: "ok", Status: http.StatusOK,
		Detail: end, BytesUp: up, BytesDn: down, Duration: time.Since(start).Milliseconds()})
}

// whoFields are the audit fields naming who asked: the organisation's account, and the
// person when it was a personal login (with the login kind: password or token).
func whoFields(who *Identity) []any {
	f := make([]any, 0, 24)
	acct := ""
	if who.Account != nil {
		acct = who.Account.Username
	}
	f = append(f, "account", acct)
	if who.Person {
		login := "password"
		if who.TokenID != "" {
			login = "token"
		}
		f = append(f, "person", who.Username, "org", who.Org, "role", string(who.Role), "login", login)
	}
	return f
}

// authorize applies roles and the system's access mode (people.Service.Authorize); without
// People every login is the account's own, as before people existed.
func (s *Server) authorize(ctx context.Context, who Identity, id tunnel.Identity, target string) error {
	if s.opts.People == nil {
		return nil
	}
	return s.opts.People.Authorize(ctx, who.Principal, id.Customer, id.System, target)
}

// history stores a record in the people store's audit history, if there is one.
func (s *Server) history(r people.Record) {
	if s.opts.People != nil {
		s.opts.People.Record(r)
	}
}

// Revalidate ends every open tunnel that People no longer allows: its person disabled or
// deleted, its token revoked, or the customer's grant ended. The broker calls it on every
// change of the people store and twice a second (grants end by the clock). It returns how
// many tunnels it cut.
func (s *Server) Revalidate() int {
	p := s.opts.People
	if p == nil {
		return 0
	}
	s.mu.Lock()
	refs := make([]*tunnelRef, 0, len(s.tunnels))
	for _, t := range s.tunnels {
		refs = append(refs, t)
	}
	s.mu.Unlock()
	n := 0
	for _, t := range refs {
		if err := p.Valid(t.who, t.info.Customer, t.info.System); err != nil {
			if t.revoked.CompareAndSwap(nil, err.Error()) {
				t.conn.Close()
				s.count.revoked.Add(1)
				n++
			}
		}
	}
	return n
}

// abandoned records a CONNECT whose client hung up while the agent was still answering:
// nothing is sent (nobody reads it), and it is not a refusal. A CONNECT that Close cut
// during its setup is recorded as shut down instead.
func (s *Server) abandoned(r *http.Request, who *Identity, id tunnel.Identity, target string, session [16]byte, start time.Time) {
	s.mu.Lock()
	result := "client gone"
	if s.closing {
		result = "shutdown"
	}
	s.mu.Unlock()
	s.count.abandoned.Add(1)
	if o := s.opts.Observer; o != nil {
		o.Abandoned()
	}
	s.opts.Audit.Info("tunnel", append(whoFields(who),
		"session", hex.EncodeToString(session[:8]), "client", r.RemoteAddr,
		"customer", id.Customer, "system", id.System, "target", target, "result", result,
		"duration_ms", time.Since(start).Milliseconds())...)
}

// authenticate runs the one credential check for every request.
func (s *Server) authenticate(r *http.Request) (Identity, error) {
	user, pass, ok := parseBasic(r.Header.Get("Proxy-Authorization"))
	if !ok {
		return Identity{}, errNoCredentials
	}
	ip := clientaddr.IP(r.RemoteAddr)
	if s.sharedLocked(user, ip) {
		return Identity{}, ErrLocked
	}
	// Auth logs refusals itself, sampled, so that a flood cannot fill the disk.
	who, err := s.opts.Auth.Identify(user, pass, ip)
	s.shareLock(user, ip, err)
	return who, err
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
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, cfg *config.Broker, who *Identity, target string, err error) {
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
	if o := s.opts.Observer; o != nil {
		o.Refused(reason, status)
	}
	if busy != nil {
		guard.Pause(w, r, busy.RetryAfter())
	}
	if who == nil {
		return // not authenticated: Auth logged it (sampled); no audit record
	}
	s.count.refused.Add(1)
	ok, suppressed := s.auditSampler.Allow(string(reason))
	if !ok {
		return
	}
	s.opts.Audit.Info("tunnel", append(whoFields(who), "client", r.RemoteAddr, "target", target,
		"result", "refused", "status", status, "reason", err.Error(), "suppressed_since_last", suppressed)...)
	s.history(people.Record{Kind: "refused", Person: who.Username, Org: who.Org, Client: r.RemoteAddr,
		Target: target, Result: "refused", Status: status, Detail: err.Error()})
}

// tunnelRef is an open tunnel's entry in the tracking table.
type tunnelRef struct {
	conn net.Conn    // the hijacked connection, as the table knows it
	cut  atomic.Bool // Close ended it
	// info says who opened it to which system (Tunnels, Revalidate), who the person it
	// is checked against; both set before tracking.
	info TunnelInfo
	who  people.Principal
	// revoked is why Revalidate or End ended it (a string), unset otherwise.
	revoked atomic.Value
}

// TunnelInfo is one open tunnel of this broker.
type TunnelInfo = people.TunnelInfo

// Tunnels lists this broker's open tunnels.
func (s *Server) Tunnels() []TunnelInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TunnelInfo, 0, len(s.tunnels))
	for _, t := range s.tunnels {
		out = append(out, t.info)
	}
	return out
}

// End cuts the open tunnel with the given session id; why goes into its audit record
// (end: "revoked: why"). It reports whether the tunnel was open here.
func (s *Server) End(session, why string) bool {
	s.mu.Lock()
	var ref *tunnelRef
	for _, t := range s.tunnels {
		if t.info.Session == session {
			ref = t
			break
		}
	}
	s.mu.Unlock()
	if ref == nil {
		return false
	}
	if ref.revoked.CompareAndSwap(nil, why) {
		ref.conn.Close()
		s.count.revoked.Add(1)
	}
	return true
}

// hijack takes the client connection over and confirms the tunnel. Bytes the client sent
// early stay readable through the returned conn.
func (s *Server) hijack(w http.ResponseWriter, info TunnelInfo, who people.Principal) (net.Conn, *tunnelRef, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	conn = tunnel.BatchWrites(conn) // the relay's 64 KiB writes in one system call each
	ref := &tunnelRef{conn: conn, info: info, who: who}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		conn.Close()
		return nil, nil, http.ErrServerClosed
	}
	s.tunnels[conn] = ref
	s.wg.Add(1)
	s.mu.Unlock()
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		s.untrack(ref)
		conn.Close()
		return nil, nil, err
	}
	return relay.WithBuffered(conn, brw.Reader), ref, nil
}

func (s *Server) untrack(ref *tunnelRef) {
	s.mu.Lock()
	if _, ok := s.tunnels[ref.conn]; ok {
		delete(s.tunnels, ref.conn)
		s.wg.Done()
	}
	s.mu.Unlock()
}

// countingConn counts a tunnel's bytes as they pass: reads from the technician are up,
// writes to them down.
type countingConn struct {
	net.Conn
	c *counters
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.c.bytesUp.Add(int64(n))
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.c.bytesDown.Add(int64(n))
	return n, err
}

// ReadMore passes relay.MoreReader through, counting too.
func (c countingConn) ReadMore(b []byte) (int, error) {
	m, ok := c.Conn.(relay.MoreReader)
	if !ok {
		return 0, errors.ErrUnsupported
	}
	n, err := m.ReadMore(b)
	c.c.bytesUp.Add(int64(n))
	return n, err
}

// CloseWrite half-closes the technician's side (TLS close_notify).
func (c countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func parseBasic(h string) (user, pass string, ok bool) {
	r := http.Request{Header: http.Header{"Authorization": {h}}}
	return r.BasicAuth()
}
