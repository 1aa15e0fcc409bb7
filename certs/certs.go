// Package certs provides the TLS identities of the broker's listeners: a self-signed
// identity CA persisted in the data directory (default), certificates from an ACME CA, or
// certificate files reloaded on change.
package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"maintproxy/config"
)

// Options configure a Manager.
type Options struct {
	Config *config.Broker
	Logger *slog.Logger
	// Now returns the current time; tests inject it (default time.Now).
	Now func() time.Time
}

// Manager hands out the listeners' TLS configurations and the root certificate that
// technicians must trust.
type Manager struct {
	cfg    *config.Broker
	log    *slog.Logger
	now    func() time.Time
	source source
}

// source is one way of obtaining certificates.
type source interface {
	getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	rootPEM() []byte
	run(ctx context.Context) error
}

// New builds a Manager for cfg.TLS.Mode, creating or loading what it needs on disk.
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
	m := &Manager{cfg: opts.Config, log: opts.Logger, now: opts.Now}
	var err error
	switch opts.Config.TLS.Mode {
	case config.ModeSelfSigned:
		m.source, err = newSelfSigned(m)
	default:
		return nil, fmt.Errorf("tls.mode: %q is not supported yet", opts.Config.TLS.Mode)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// ProxyTLSConfig is the TLS configuration of the CONNECT proxy listener. It offers only
// http/1.1 so that every client speaks CONNECT over HTTP/1.1.
func (m *Manager) ProxyTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: m.source.getCertificate,
	}
}

// WebTLSConfig is the TLS configuration of the web listener (pages, downloads, agents).
func (m *Manager) WebTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: m.source.getCertificate,
	}
}

// RootPEM returns the PEM root certificate the served chains end in: what the tool bundle
// ships and what technicians' clients must trust.
func (m *Manager) RootPEM() []byte { return m.source.rootPEM() }

// HTTPHandler wraps the plain-HTTP listener's handler (ACME HTTP-01 where used).
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler { return fallback }

// Run keeps certificates fresh until ctx is done.
func (m *Manager) Run(ctx context.Context) error { return m.source.run(ctx) }

// names are the DNS names and IPs every leaf covers.
func (m *Manager) names() (dns []string, ips []net.IP) {
	dns = []string{m.cfg.ProxyHost(), m.cfg.WebHost(), "localhost"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, addr := range []string{m.cfg.Listen.Proxy, m.cfg.Listen.Web} {
		host, _, _ := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			ips = append(ips, ip)
		}
	}
	return dns, ips
}
