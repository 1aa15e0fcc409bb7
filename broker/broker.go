// Package broker assembles the broker's parts: the CONNECT proxy, the web listener (agent
// endpoint, PAC file, downloads, access pages, health), the metrics listener, the
// certificates and the hot-reloaded configuration; and the order in which they stop.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"maintproxy/certs"
	"maintproxy/cluster/peer"
	"maintproxy/config"
	"maintproxy/dns"
	"maintproxy/internal/gate"
	"maintproxy/internal/guard"
	"maintproxy/proxy"
	"maintproxy/tunnel"
)

// Options configure a Broker.
type Options struct {
	Config *config.Broker
	// ConfigPath, when set, is watched and accounts/customers/limits edits apply live.
	ConfigPath string
	Logger     *slog.Logger
	// ReloadInterval is how often ConfigPath is checked (default 1s).
	ReloadInterval time.Duration
	// ToolsDir holds built `maint` binaries for the tool bundle (optional).
	ToolsDir string
	// CertCheckInterval is how often certificates are checked for renewal, changed files
	// and the identity CA rollover (default certs.DefaultCheckInterval).
	CertCheckInterval time.Duration
	// Now is the clock of the people store (tokens, locks, access grants); nil: time.Now.
	Now func() time.Time
	// PasswordCost is the bcrypt cost of password hashes the people store makes (0:
	// config.HashCost). Tests lower it: under the race detector a cost-12 hash, and the
	// history check's one comparison per remembered password, take seconds.
	PasswordCost int
}

// Broker is a running maintproxy.
type Broker struct {
	opts     Options
	log      *slog.Logger
	cfg      atomic.Pointer[config.Broker]
	certs    *certs.Manager
	registry *tunnel.Registry
	auth     *proxy.Auth
	proxy    *proxy.Server
	agents   *tunnel.Server
	web      *http.Server
	plain    *http.Server
	dns      *dns.Server
	// gate caps the connections of the public listeners and bounds their TLS handshakes.
	gate *gate.Gate
	// maxConns is the most connections the open-file limit leaves room for.
	maxConns int
	metrics  *metrics
	// metricsSrv serves /metrics on listen.metrics (nil when it is off).
	metricsSrv *http.Server

	cluster *clustered // nil for a single broker
	people  *peopleStore
	// status remembers each system's last seen, switches and refused logins (data_dir).
	status *statusStore
	// described caches what the listeners serve, for the access pages.
	described describedCerts

	proxyLn, webLn, plainLn, metricsLn net.Listener

	listening, draining atomic.Bool
	readyMu             sync.Mutex
	lastReady           bool
}

// New prepares a broker: it binds the listeners and creates or loads certificates, so
// that a bad address or a port in use fails here, naming the field. A listen address with
// port 0 gets a free port; New writes the port it got into o.Config (and Apply into each
// later configuration), so that the PAC file, the access pages and redirects name it.
// A broker that is not going to Run must be closed with Close.
func New(o Options) (_ *Broker, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReloadInterval == 0 {
		o.ReloadInterval = time.Second
	}
	b := &Broker{opts: o, log: o.Logger, registry: tunnel.NewRegistry()}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if b.proxyLn, err = net.Listen("tcp", o.Config.Listen.Proxy); err != nil {
		return nil, fmt.Errorf("listen.proxy: %w", err)
	}
	if b.webLn, err = net.Listen("tcp", o.Config.Listen.Web); err != nil {
		return nil, fmt.Errorf("listen.web: %w", err)
	}
	if o.Config.Listen.HTTP != "" {
		if b.plainLn, err = net.Listen("tcp", o.Config.Listen.HTTP); err != nil {
			return nil, fmt.Errorf("listen.http: %w", err)
		}
	}
	if o.Config.Listen.Metrics != "" {
		if b.metricsLn, err = net.Listen("tcp", o.Config.Listen.Metrics); err != nil {
			return nil, fmt.Errorf("listen.metrics: %w", err)
		}
		if ip, ok := b.metricsLn.Addr().(*net.TCPAddr); ok && !ip.IP.IsLoopback() {
			o.Logger.Warn("the metrics listener is not on loopback: make sure only your monitoring reaches it",
				"listen.metrics", b.metricsLn.Addr().String())
		}
	}
	if o.Config.DNS.Enabled {
		if b.dns, err = dns.New(dns.Options{Config: o.Config, Logger: o.Logger}); err != nil {
			return nil, err
		}
	}
	b.pinPorts(o.Config)
	inForce := o.Config
	if o.Config.Cluster.Enabled() {
		if err = b.joinCluster(o.Config); err != nil {
			return nil, err
		}
		if inForce, err = b.withoutShared(o.Config); err != nil {
			return nil, err
		}
	}
	b.cfg.Store(inForce)
	co := certs.Options{Config: o.Config, Logger: o.Logger, CheckInterval: o.CertCheckInterval}
	if b.cluster != nil {
		b.cluster.certOptions(o.Config, &co)
	}
	b.certs, err = certs.New(co)
	if err != nil {
		return nil, err
	}
	if b.cluster != nil {
		b.cluster.cas.patient.Store(false) // started: a store outage now keeps the CAs in use
	}
	if err = b.openPeople(o.Config); err != nil {
		return nil, err
	}
	b.status = openStatusStore(filepath.Join(o.Config.DataDir, StatusFile), o.Logger, b.configured)
	b.registry.OnChange(b.sessionChanged)
	b.auth = proxy.NewAuth(b.Config, nil)
	b.auth.Log = o.Logger
	b.auth.People = b.people.svc
	b.metrics = newMetrics(b)
	b.maxConns = fileRoom(o.Config.Limits.Connections.Total, o.Logger)
	b.gate = gate.New(b.gateSettings, o.Logger)
	timeouts := o.Config.Timeouts
	b.agents = tunnel.NewServer(b.registry, b.secretHash, b.log,
		tunnel.WithLoginObserver(b.status.refused),
		tunnel.WithAdmission(guard.New(func() guard.Settings { return guard.FromConfig(b.Config().Limits.Auth) }, nil)),
		tunnel.WithLoginDeadline(func(r *http.Request) time.Time {
			at, ok := gate.Accepted(r.Context())
			if !ok {
				at = time.Now()
			}
			return at.Add(timeouts.AgentLogin)
		}))
	po := proxy.Options{
		Config:            b.Config,
		Auth:              b.auth,
		Registry:          b.registry,
		TLS:               b.certs.ProxyTLSConfig(),
		Logger:            o.Logger,
		Audit:             o.Logger.With("log", "audit"),
		ErrorLog:          errorLog(o.Logger, "proxy"),
		ReadHeaderTimeout: timeouts.RequestHeaders,
		IdleTimeout:       timeouts.Idle,
		Observer:          proxyObserver{b.metrics},
		People:            b.people.svc,
		Carrier:           b.carrier,
	}
	if b.cluster != nil {
		b.wireCluster(&po)
	}
	b.proxy = proxy.New(po)
	b.adminServer()
	b.web = &http.Server{
		Handler:           b.webHandler(),
		TLSConfig:         b.certs.WebTLSConfig(),
		ReadHeaderTimeout: timeouts.RequestHeaders,
		IdleTimeout:       timeouts.Idle,
		MaxHeaderBytes:    32 << 10,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:          errorLog(o.Logger, "web"),
		ConnContext:       gate.ConnContext,
	}
	if b.plainLn != nil {
		b.plain = &http.Server{
			Handler:           gate.Recover(b.certs.HTTPHandler(securityHeaders(redirectToHTTPS(o.Config.WebPort()))), o.Logger),
			ReadHeaderTimeout: timeouts.RequestHeaders,
			IdleTimeout:       timeouts.Idle,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          errorLog(o.Logger, "http"),
		}
	}
	if b.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", b.metrics.handler())
		b.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errorLog(o.Logger, "metrics")}
	}
	return b, nil
}

// Close releases what New acquired (listeners, DNS sockets) for a broker that does not
// Run; Run releases them itself, so Close after Run has returned does nothing. Close must
// not be called while Run is running.
func (b *Broker) Close() error {
	var errs []error
	keep := func(err error) {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, ln := range []net.Listener{b.proxyLn, b.webLn, b.plainLn, b.metricsLn} {
		if ln != nil {
			keep(ln.Close())
		}
	}
	if b.dns != nil {
		keep(b.dns.Close())
	}
	keep(b.closePeople())
	if b.cluster != nil {
		keep(b.cluster.close())
	}
	return errors.Join(errs...)
}

// pinPorts writes the bound port into each listen address of c that asked for port 0.
// Listener changes need a restart, so a reloaded configuration gets the same ports.
func (b *Broker) pinPorts(c *config.Broker) {
	c.Listen.Proxy = pinPort(c.Listen.Proxy, b.proxyLn.Addr())
	c.Listen.Web = pinPort(c.Listen.Web, b.webLn.Addr())
	if b.plainLn != nil {
		c.Listen.HTTP = pinPort(c.Listen.HTTP, b.plainLn.Addr())
	}
	if b.metricsLn != nil {
		c.Listen.Metrics = pinPort(c.Listen.Metrics, b.metricsLn.Addr())
	}
	if b.dns != nil {
		c.Listen.DNS = pinPort(c.Listen.DNS, b.dns.Addr())
	}
}

// pinPort returns addr with the port of bound when addr asked for port 0.
func pinPort(addr string, bound net.Addr) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port != "0" {
		return addr
	}
	_, p, err := net.SplitHostPort(bound.String())
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, p)
}

// Config returns the configuration in force.
func (b *Broker) Config() *config.Broker { return b.cfg.Load() }

// Registry returns the agent registry.
func (b *Broker) Registry() *tunnel.Registry { return b.registry }

// Certs returns the certificate manager.
func (b *Broker) Certs() *certs.Manager { return b.certs }

// ProxyAddr and WebAddr are the bound listener addresses.
func (b *Broker) ProxyAddr() net.Addr { return b.proxyLn.Addr() }

// WebAddr is the bound web listener address.
func (b *Broker) WebAddr() net.Addr { return b.webLn.Addr() }

// MetricsAddr is the bound metrics listener address, or nil when listen.metrics is off.
func (b *Broker) MetricsAddr() net.Addr {
	if b.metricsLn == nil {
		return nil
	}
	return b.metricsLn.Addr()
}

// Apply puts a new configuration in force: accounts, customers and limits take effect for
// the next request; cached credentials stop matching when their hash changed (the others
// stay, so a reload during a flood sheds nobody) and agents whose system was removed or
// whose secret changed are disconnected. Listener and TLS changes need a restart.
func (b *Broker) Apply(c *config.Broker) {
	b.pinPorts(c)
	b.cfg.Store(c)
	b.registry.Prune(func(id tunnel.Identity, hash string) bool {
		cust := c.Customer(id.Customer)
		if cust == nil {
			return false
		}
		sys := cust.System(id.System)
		return sys != nil && sys.AgentSecretHash == hash
	})
	b.log.Info("configuration reloaded", "accounts", len(c.Accounts), "customers", len(c.Customers))
	b.logSuperseded()
}

// Run serves until ctx is done, then shuts down in order (see shutdown) and returns once
// every goroutine it started has stopped.
func (b *Broker) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 6)
	goFn := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	// tunnel.BatchConn under TLS lets tunnel.BatchWrites batch the relay's writes, and
	// agent links send each batch with one system call.
	goFn(func() error {
		return b.proxy.Serve(b.gate.Listen("proxy", b.proxyLn, b.certs.ProxyTLSConfig(), tunnel.BatchConn))
	})
	goFn(func() error { return serve(b.web, b.gate.Listen("web", b.webLn, b.web.TLSConfig, tunnel.BatchConn)) })
	if b.plain != nil {
		goFn(func() error { return serve(b.plain, b.gate.Listen("http", b.plainLn, nil, nil)) })
	}
	if b.metricsSrv != nil {
		goFn(func() error { return serve(b.metricsSrv, b.metricsLn) })
	}
	goFn(func() error { return b.certs.Run(ctx) })
	goFn(func() error { b.revalidate(ctx); return nil })
	goFn(b.serveAdmin)
	goFn(func() error { b.status.run(ctx, b.liveSystems); return nil })
	if b.dns != nil {
		goFn(func() error { return b.dns.Serve(ctx) })
	}
	if k := b.cluster; k != nil {
		goFn(func() error {
			if err := k.server.Serve(k.peerLn); !errors.Is(err, peer.ErrClosed) {
				return fmt.Errorf("cluster.peer.listen: %w", err)
			}
			return nil
		})
		if b.opts.Config.SharedOnly() {
			k.store.WatchConfig(b.applyShared)
		}
	}
	// With cluster.config: store the file holds only what needs a restart to change.
	if b.opts.ConfigPath != "" && !b.opts.Config.SharedOnly() {
		goFn(func() error {
			config.WatchBroker(ctx, b.opts.ConfigPath, b.opts.ReloadInterval, b.Apply, func(err error) {
				b.log.Error("configuration change rejected; keeping the previous one", "err", err.Error())
			})
			return nil
		})
	}
	// The bound addresses are logged for whoever asked for port 0 (the e2e tests do).
	started := []any{"proxy", b.proxyLn.Addr().String(), "web", b.webLn.Addr().String()}
	if b.plainLn != nil {
		started = append(started, "http", b.plainLn.Addr().String())
	}
	if b.metricsLn != nil {
		started = append(started, "metrics", b.metricsLn.Addr().String())
	}
	if b.dns != nil {
		started = append(started, "dns", b.dns.Addr().String())
	}
	if b.cluster != nil {
		started = append(started, "peer", b.cluster.peerLn.Addr().String(), "node", b.cluster.store.Node())
	}
	b.listening.Store(true)
	b.log.Info("broker started", append(started, "domain", b.Config().Domain, "tls", b.Config().TLS.Mode)...)
	b.readyChanged()
	<-ctx.Done()

	b.draining.Store(true)
	b.readyChanged()
	if b.cluster != nil {
		b.handOffAgents()
	}
	errs := b.shutdown()
	errs = append(errs, b.closePeople())
	// The sessions ended in shutdown are recorded: write them before the broker is gone.
	if err := b.status.flush(); err != nil {
		errs = append(errs, fmt.Errorf("data_dir: writing %s: %w", StatusFile, err))
	}
	if k := b.cluster; k != nil {
		// The store goes last: revoking the lease withdraws this broker's presence at once.
		errs = append(errs, k.server.Close(), k.dialer.Close(), k.store.Close())
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		errs = append(errs, err)
	}
	b.log.Info("broker stopped")
	return errors.Join(errs...)
}

// shutdown stops the broker in this order:
//
//  1. Stop accepting: the public listeners close, so new CONNECTs and agent logins are
//     refused at once.
//  2. Drain: requests in flight and open tunnels may finish, for up to shutdown_timeout.
//     Agent sessions stay up meanwhile: the tunnels run through them.
//  3. Cut what is left: tunnels end with end: shutdown in their audit records.
//  4. End the agent sessions, last: with the listeners closed their agents cannot come
//     straight back, and they wait out their backoff instead of reconnecting in a loop.
//  5. Close the metrics listener, which served scrapes throughout.
//
// Cluster mode adds its steps to drain (say not ready first, hand agents off).
func (b *Broker) shutdown() []error {
	timeout := b.Config().ShutdownTimeout
	b.log.Info("shutting down: no new connections; open tunnels may finish", "shutdown_timeout", timeout.String(),
		"tunnels", b.proxy.Stats().Active)
	drainCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	errs := b.drain(drainCtx)
	if drainCtx.Err() != nil {
		b.log.Info("shutdown_timeout reached; cutting what is left", "tunnels", b.proxy.Stats().Active)
	}
	errs = append(errs, b.proxy.Close(), b.web.Close())
	if b.plain != nil {
		errs = append(errs, b.plain.Close())
	}
	// Agent sessions are hijacked connections that the web server does not track.
	b.registry.CloseAll()
	agentsCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	errs = append(errs, b.agents.Wait(agentsCtx))
	if b.metricsSrv != nil {
		errs = append(errs, b.metricsSrv.Close())
	}
	return errs
}

// drain closes the public listeners and waits until ctx is done for what they serve to
// end. A drain that runs out of time is not an error: shutdown cuts the rest.
func (b *Broker) drain(ctx context.Context) []error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	shut := func(f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	shut(b.proxy.Shutdown)
	shut(b.web.Shutdown)
	if b.plain != nil {
		shut(b.plain.Shutdown)
	}
	wg.Wait()
	return errs
}

// gateSettings are the connection caps in force (never above what the open-file limit
// allows) and the deadlines the broker started with.
func (b *Broker) gateSettings() gate.Settings {
	cfg := b.Config()
	c := cfg.Limits.Connections
	return gate.Settings{PerAddress: c.PerAddress, Total: min(c.Total, b.maxConns),
		Handshake: cfg.Timeouts.TLSHandshake, WriteProgress: cfg.Timeouts.WriteProgress}
}

// fileRoom is the most connections the open-file limit leaves room for, keeping a reserve
// for the broker's own files, listeners and store connections; it warns when that is below
// want (limits.connections.total).
func fileRoom(want int, log *slog.Logger) int {
	const reserve = 256
	limit, ok := gate.FileLimit()
	if !ok {
		return math.MaxInt
	}
	room := max(limit-reserve, 1)
	if room < want {
		log.Warn("the open-file limit leaves room for fewer connections than limits.connections.total; raise LimitNOFILE",
			"open_file_limit", limit, "connections", room, "limits.connections.total", want)
	}
	return room
}

func serve(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
