// Package certs provides the TLS identities of the broker's listeners.
//
// Certificates come from one of three sources (tls.mode): a self-signed identity CA
// persisted in the data directory and rolled over before it expires (default), an ACME CA
// through autocert, or certificate files (PEM or PKCS#12) reloaded when they change. Every source serves the maint.<domain> certificate to
// handshakes without a server name, with an IP, or with an unknown name, because
// proxytunnel and PAC files naming an IP send exactly that.
package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"maintproxy/config"
)

// Options configure a Manager.
type Options struct {
	Config *config.Broker
	Logger *slog.Logger
	// Now returns the current time; tests inject it (default time.Now). It drives leaf
	// renewal, the identity CA rollover, expiry warnings and the daily warning log; timers
	// still run on real time.
	Now func() time.Time
	// CheckInterval is how often Run looks for renewals, changed files and expiry
	// warnings (default 10s: the files mode notices a replaced certificate this quickly).
	CheckInterval time.Duration
	// CAStore, when set, keeps the self-signed identity CAs instead of data_dir (cluster
	// mode: the store, so every broker serves leaves of one CA and the rollover is shared).
	CAStore CAStore
	// ACMECache, when set, replaces the ACME cache in data_dir (cluster mode: the store, so
	// brokers share one ACME account and order each certificate once).
	ACMECache autocert.Cache
}

// DefaultCheckInterval is Options.CheckInterval's default.
const DefaultCheckInterval = 10 * time.Second

// warnEvery is how often Run repeats a standing warning in the log.
const warnEvery = 24 * time.Hour

// Manager hands out the listeners' TLS configurations and the root certificate that
// technicians must trust. Its methods are safe for concurrent use.
type Manager struct {
	cfg      *config.Broker
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	source   source
	caStore  CAStore
	acmeFrom autocert.Cache

	mu         sync.Mutex
	lastWarned time.Time // when Run last logged Warning (injected clock)
}

// source is one way of obtaining certificates.
type source interface {
	// getCertificate serves a handshake; hello.ServerName is already normalised to a
	// name the source serves.
	getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	rootPEM() []byte
	// check renews or reloads what is due at now; Run calls it every CheckInterval.
	check(now time.Time)
	// run does background work that is not a periodic check (ACME first issuance).
	run(ctx context.Context)
	warning(now time.Time) string
	caExpiry() time.Time
	certExpiry() time.Time
}

// New builds a Manager for cfg.TLS.Mode, creating or loading what it needs on disk. It
// checks the settings first (see Check), so its errors name the config field. It does not
// contact an ACME CA; Run and the first handshakes do.
func New(opts Options) (*Manager, error) {
	if opts.Config == nil {
		return nil, errors.New("certs: no config")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	if err := Check(opts.Config); err != nil {
		return nil, err
	}
	m := &Manager{cfg: opts.Config, log: opts.Logger, now: opts.Now, interval: opts.CheckInterval,
		caStore: opts.CAStore, acmeFrom: opts.ACMECache}
	var err error
	switch opts.Config.TLS.Mode {
	case config.ModeSelfSigned:
		m.source, err = newSelfSigned(m)
	case config.ModeACME:
		m.source, err = newACME(m)
	case config.ModeFiles:
		m.source, err = newFiles(m)
	default:
		err = fmt.Errorf("tls.mode: %q is not one of selfsigned, acme, files", opts.Config.TLS.Mode)
	}
	if err != nil {
		return nil, err
	}
	if w := m.Warning(); w != "" {
		m.log.Warn(w)
		m.lastWarned = m.now()
	}
	return m, nil
}

// Check validates the TLS settings that need the file system without creating anything:
// certificate and key files readable and matching and valid for maint.<domain> and
// admin.<domain>, root files parseable, an existing identity CA loadable. Errors name
// the config field. `maintproxy check` calls it; New calls it too.
func Check(cfg *config.Broker) error {
	switch cfg.TLS.Mode {
	case config.ModeSelfSigned:
		_, err := loadCA(cfg.DataDir)
		if errors.Is(err, errNoCA) {
			return nil
		}
		return err
	case config.ModeACME:
		// The contact email and the names were validated with the rest of the configuration.
		if _, err := acmeRoot(cfg); err != nil {
			return err
		}
		_, err := acmeHTTPClient(cfg)
		return err
	case config.ModeFiles:
		_, err := loadFiles(cfg, time.Now())
		return err
	default:
		return fmt.Errorf("tls.mode: %q is not one of selfsigned, acme, files", cfg.TLS.Mode)
	}
}

// ProxyTLSConfig is the TLS configuration of the CONNECT proxy listener. It offers only
// http/1.1 so that every client speaks CONNECT over HTTP/1.1 (an h2 connection cannot
// be hijacked).
func (m *Manager) ProxyTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: m.getCertificate,
	}
}

// WebTLSConfig is the TLS configuration of the web listener (pages, downloads, agents).
// It offers http/1.1 and, in acme mode, acme-tls/1 so that the ACME CA's TLS-ALPN-01
// validation is answered here; never h2. The http.Server using it must have a non-nil
// empty TLSNextProto, or it adds h2 back.
func (m *Manager) WebTLSConfig() *tls.Config {
	protos := []string{"http/1.1"}
	if m.cfg.TLS.Mode == config.ModeACME {
		protos = append(protos, acme.ALPNProto)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     protos,
		GetCertificate: m.getCertificate,
	}
}

// getCertificate maps handshakes without a usable server name to maint.<domain>.
// TLS-ALPN-01 validations are passed on as they are: they must name the validated host.
func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if isALPNChallenge(hello) {
		return m.source.getCertificate(hello)
	}
	if name := m.serverName(hello.ServerName); name != hello.ServerName {
		h := *hello
		h.ServerName = name
		hello = &h
	}
	return m.source.getCertificate(hello)
}

// isALPNChallenge reports whether hello is an ACME CA's TLS-ALPN-01 validation.
func isALPNChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto
}

// serverName returns the lower-case name to serve for sni: sni itself when a listed
// name, else maint.<domain>.
func (m *Manager) serverName(sni string) string {
	name := strings.ToLower(strings.TrimSuffix(sni, "."))
	for _, n := range m.hostNames() {
		if name == n {
			return name
		}
	}
	return m.cfg.ProxyHost()
}

// hostNames are the DNS names the broker serves certificates for: maint.<domain>,
// admin.<domain> and, in acme mode, tls.acme.extra_names.
func (m *Manager) hostNames() []string {
	names := []string{m.cfg.ProxyHost(), m.cfg.WebHost()}
	if m.cfg.TLS.Mode == config.ModeACME {
		for _, n := range m.cfg.TLS.ACME.ExtraNames {
			n = strings.ToLower(n)
			if n != names[0] && n != names[1] {
				names = append(names, n)
			}
		}
	}
	return names
}

// RootPEM returns the PEM root certificates the served chains end in: what the tool bundle
// ships, what GET /agent/v1/ca serves and what technicians' clients must trust. The
// identity CA (selfsigned; during a rollover also the next or the previous one, current
// first), the tls.acme.root_file or embedded ISRG Root X1 (acme), tls.files.root or the
// chain's own self-signed top (files); nil when the files mode cannot tell.
func (m *Manager) RootPEM() []byte { return m.source.rootPEM() }

// HTTPHandler is the handler for the plain-HTTP listener (listen.http). In acme mode it
// answers HTTP-01 challenges under /.well-known/acme-challenge/ and passes everything
// else to fallback (the broker's redirect to HTTPS); in the other modes it is fallback. A
// nil fallback answers 404.
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = http.NotFoundHandler()
	}
	if a, ok := m.source.(*acmeSource); ok {
		return a.httpHandler(fallback)
	}
	return fallback
}

// Run keeps certificates fresh until ctx is done: it renews the self-signed leaf, rolls
// the identity CA over and picks up CA files changed in data_dir, reloads changed files, obtains ACME certificates ahead of the first handshake, and
// logs Warning daily. It returns nil promptly when ctx is done. An ACME order already in
// flight then finishes in the background (autocert bounds it to 5 minutes), and
// autocert's own renewal timers live as long as the Manager.
func (m *Manager) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.source.run(ctx)
	}()
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		m.check()
	}
}

// check runs one round of Run's periodic work.
func (m *Manager) check() {
	now := m.now()
	m.source.check(now)
	w := m.source.warning(now)
	m.mu.Lock()
	due := w != "" && (m.lastWarned.IsZero() || now.Sub(m.lastWarned) >= warnEvery)
	if due {
		m.lastWarned = now
	}
	m.mu.Unlock()
	if due {
		m.log.Warn(w)
	}
}

// Warning is empty, or a one-line warning for operators (access-info page, log): the
// identity CA switches to its successor within 90 days (or expires without one), a certificate file is about to expire or failed to
// reload, or ACME cannot obtain or renew a certificate.
func (m *Manager) Warning() string { return m.source.warning(m.now()) }

// CAExpiry is when the current self-signed identity CA expires (the value of the gauge
// maintproxy_ca_expiry_seconds, as Unix seconds); zero in the acme and files modes,
// where the CA is not ours.
func (m *Manager) CAExpiry() time.Time { return m.source.caExpiry() }

// CertExpiry is when the certificate currently served for maint.<domain> expires; zero
// while an ACME certificate has not been obtained yet.
func (m *Manager) CertExpiry() time.Time { return m.source.certExpiry() }

// expiresIn formats the "expires on D (in N days)" part of warnings.
func expiresIn(when, now time.Time) string {
	days := int(when.Sub(now).Hours() / 24)
	switch {
	case !when.After(now):
		return fmt.Sprintf("expired on %s", when.UTC().Format(time.DateOnly))
	case days == 1:
		return fmt.Sprintf("expires on %s (in 1 day)", when.UTC().Format(time.DateOnly))
	default:
		return fmt.Sprintf("expires on %s (in %d days)", when.UTC().Format(time.DateOnly), days)
	}
}
