// Package broker assembles the broker's parts: the CONNECT proxy, the web listener (agent
// endpoint, PAC file, downloads, access pages, health and metrics), the certificates and
// the hot-reloaded configuration.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"maintproxy/certs"
	"maintproxy/cluster/peer"
	"maintproxy/config"
	"maintproxy/dns"
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
	cluster  *clustered // nil for a single broker

	proxyLn, webLn, plainLn net.Listener

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
	b.proxyLn = tunnel.Listener(b.proxyLn) // lets tunnel.BatchWrites batch the relay's writes
	if b.webLn, err = net.Listen("tcp", o.Config.Listen.Web); err != nil {
		return nil, fmt.Errorf("listen.web: %w", err)
	}
	b.webLn = tunnel.Listener(b.webLn) // agent links send each batch with one system call
	if o.Config.Listen.HTTP != "" {
		if b.plainLn, err = net.Listen("tcp", o.Config.Listen.HTTP); err != nil {
			return nil, fmt.Errorf("listen.http: %w", err)
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
	co := certs.Options{Config: o.Config, Logger: o.Logger}
	if b.cluster != nil {
		b.cluster.certOptions(o.Config, &co)
	}
	b.certs, err = certs.New(co)
	if err != nil {
		return nil, err
	}
	b.auth = proxy.NewAuth(b.Config, nil)
	b.auth.Log = o.Logger
	b.agents = tunnel.NewServer(b.registry, b.secretHash, b.log, tunnel.WithAdmission(
		guard.New(func() guard.Settings { return guard.FromConfig(b.Config().Limits.Auth) }, nil)))
	po := proxy.Options{
		Config:   b.Config,
		Auth:     b.auth,
		Registry: b.registry,
		TLS:      b.certs.ProxyTLSConfig(),
		Logger:   o.Logger,
		Audit:    o.Logger.With("log", "audit"),
		ErrorLog: errorLog(o.Logger, "proxy"),
	}
	if b.cluster != nil {
		b.wireCluster(&po)
	}
	b.proxy = proxy.New(po)
	b.web = &http.Server{
		Handler:           b.webHandler(),
		TLSConfig:         b.certs.WebTLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:          errorLog(o.Logger, "web"),
	}
	if b.plainLn != nil {
		b.plain = &http.Server{
			Handler:           b.certs.HTTPHandler(securityHeaders(redirectToHTTPS(o.Config.WebPort()))),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          errorLog(o.Logger, "http"),
		}
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
	for _, ln := range []net.Listener{b.proxyLn, b.webLn, b.plainLn} {
		if ln != nil {
			keep(ln.Close())
		}
	}
	if b.dns != nil {
		keep(b.dns.Close())
	}
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
}

// Run serves until ctx is done, then shuts down cleanly: listeners close, tunnels and agent
// sessions end, and Run returns once every goroutine it started has stopped.
func (b *Broker) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
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
	goFn(func() error { return b.proxy.Serve(b.proxyLn) })
	goFn(func() error { return serveTLS(b.web, b.webLn) })
	if b.plain != nil {
		goFn(func() error { return serve(b.plain, b.plainLn) })
	}
	goFn(func() error { return b.certs.Run(ctx) })
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
		b.drain()
	}

	shutCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	// Ending agent sessions first fails CONNECTs still waiting for an agent at once; the
	// second round ends sessions of agents that reconnected before the listener closed.
	b.registry.CloseAll()
	var errs []error
	errs = append(errs, b.proxy.Shutdown(shutCtx), b.web.Shutdown(shutCtx))
	if b.plain != nil {
		errs = append(errs, b.plain.Shutdown(shutCtx))
	}
	// Agent sessions are hijacked connections that Shutdown does not wait for.
	b.registry.CloseAll()
	errs = append(errs, b.agents.Wait(shutCtx))
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

func serveTLS(s *http.Server, ln net.Listener) error {
	if err := s.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func serve(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
