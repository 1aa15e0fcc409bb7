package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed" // ISRG Root X1
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"maintproxy/config"
)

// isrgRootX1PEM is Let's Encrypt's root (from Debian's ca-certificates; SHA-256
// 96:BC:EC:06:26:49:76:F3:74:60:77:9A:CF:28:C5:A7:CF:E8:A3:C0:AA:E1:1A:8F:FC:EE:05:C0:BD:DF:08:C6),
// shipped in the tool bundle as isrgrootx1.pem unless tls.acme.root_file says otherwise.
//
//go:embed isrgrootx1.pem
var isrgRootX1PEM string

// ISRGRootX1PEM returns Let's Encrypt's ISRG Root X1 certificate in PEM.
func ISRGRootX1PEM() []byte { return []byte(isrgRootX1PEM) }

// Timing of ACME issuance ahead of the first handshake.
const (
	acmeRetryFirst = time.Minute // autocert itself refuses to retry a failed name sooner
	acmeRetryMax   = time.Hour
	// acmeWarnBefore: autocert renews 30 days before expiry, so a certificate this close
	// to expiry means renewal has been failing for 10 days.
	acmeWarnBefore = 20 * 24 * time.Hour
)

// acmeSource obtains certificates through autocert: TLS-ALPN-01 on the web listener,
// HTTP-01 on listen.http when HTTPHandler is used.
type acmeSource struct {
	m     *Manager
	am    *autocert.Manager
	root  []byte
	names []string

	mu      sync.Mutex
	served  *x509.Certificate // the maint.<domain> leaf last handed out
	lastErr error             // the last failure to obtain a certificate for a listed name
}

func newACME(m *Manager) (*acmeSource, error) {
	root, err := acmeRoot(m.cfg)
	if err != nil {
		return nil, err
	}
	hc, err := acmeHTTPClient(m.cfg)
	if err != nil {
		return nil, err
	}
	cache := m.acmeFrom
	if cache == nil {
		dir := acmeCacheDir(m.cfg)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		cache = autocert.DirCache(dir)
	}
	a := &acmeSource{m: m, root: root, names: m.hostNames()}
	a.am = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      cache,
		HostPolicy: a.hostPolicy,
		Email:      m.cfg.TLS.ACME.Email,
		Client: &acme.Client{
			DirectoryURL: m.cfg.TLS.ACME.DirectoryURL,
			HTTPClient:   hc,
			UserAgent:    "maintproxy",
		},
	}
	return a, nil
}

// acmeCacheDir keeps each directory's account and certificates apart, so that switching
// from a staging to the production directory never serves a staging certificate.
func acmeCacheDir(cfg *config.Broker) string {
	host := "default"
	if u, err := url.Parse(cfg.TLS.ACME.DirectoryURL); err == nil && u.Host != "" {
		host = strings.NewReplacer(":", "_", "/", "_").Replace(u.Host)
	}
	return filepath.Join(cfg.DataDir, "acme", host)
}

// acmeRoot is the root the tool bundle ships: tls.acme.root_file or ISRG Root X1.
func acmeRoot(cfg *config.Broker) ([]byte, error) {
	if cfg.TLS.ACME.RootFile == "" {
		return []byte(isrgRootX1PEM), nil
	}
	data, err := os.ReadFile(cfg.TLS.ACME.RootFile)
	if err != nil {
		return nil, fmt.Errorf("tls.acme.root_file: %w", err)
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("tls.acme.root_file: %s: %w", cfg.TLS.ACME.RootFile, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw}), nil
}

// acmeHTTPClient talks to the ACME directory, trusting the system roots plus
// tls.acme.ca_file (a test CA such as pebble's minica).
func acmeHTTPClient(cfg *config.Broker) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if f := cfg.TLS.ACME.CAFile; f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_file: %w", err)
		}
		extra, err := parseCerts(data)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_file: %s: %w", f, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, c := range extra {
			pool.AddCert(c)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// hostPolicy allows only the broker's own names. A port is ignored: HTTP-01 requests
// carry one in Host when the CA validates on a port other than 80.
func (a *acmeSource) hostPolicy(_ context.Context, host string) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, n := range a.names {
		if host == n {
			return nil
		}
	}
	return fmt.Errorf("acme: %q is not one of the broker's names (%s)", host, strings.Join(a.names, ", "))
}

func (a *acmeSource) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, err := a.am.GetCertificate(hello)
	if isALPNChallenge(hello) {
		return cert, err // a validation, not a certificate we serve
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.lastErr = fmt.Errorf("%s: %w", hello.ServerName, err)
		return nil, err
	}
	a.lastErr = nil
	if hello.ServerName == a.m.cfg.ProxyHost() {
		leaf := cert.Leaf
		if leaf == nil && len(cert.Certificate) > 0 {
			leaf, _ = x509.ParseCertificate(cert.Certificate[0])
		}
		if leaf != nil {
			a.served = leaf
		}
	}
	return cert, nil
}

func (a *acmeSource) httpHandler(fallback http.Handler) http.Handler {
	return a.am.HTTPHandler(fallback)
}

// run obtains every name's certificate ahead of the first handshake, retrying with
// backoff; from then on autocert renews them itself.
func (a *acmeSource) run(ctx context.Context) {
	wait := acmeRetryFirst
	for {
		done := make(chan error, 1)
		go func() { done <- a.obtainAll() }() // autocert's calls take no context
		select {
		case <-ctx.Done():
			return
		case err := <-done:
			if err == nil {
				a.m.log.Info("ACME certificates ready", "names", strings.Join(a.names, ","))
				return
			}
			a.m.log.Error("obtaining ACME certificates failed; retrying", "err", err, "retry_in", wait.String())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, acmeRetryMax)
	}
}

func (a *acmeSource) obtainAll() error {
	for _, name := range a.names {
		hello := &tls.ClientHelloInfo{
			ServerName:   name,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, // ECDSA, like any modern client
		}
		if _, err := a.getCertificate(hello); err != nil {
			return err
		}
	}
	return nil
}

func (a *acmeSource) check(time.Time) {}

func (a *acmeSource) rootPEM() []byte { return a.root }

func (a *acmeSource) caExpiry() time.Time { return time.Time{} }

func (a *acmeSource) certExpiry() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.served == nil {
		return time.Time{}
	}
	return a.served.NotAfter
}

func (a *acmeSource) warning(now time.Time) string {
	a.mu.Lock()
	served, lastErr := a.served, a.lastErr
	a.mu.Unlock()
	switch {
	case served == nil && lastErr != nil:
		return fmt.Sprintf("no certificate from the ACME CA yet: %v", lastErr)
	case served != nil && !now.Before(served.NotAfter.Add(-acmeWarnBefore)):
		return fmt.Sprintf("the ACME certificate for %s %s and has not been renewed (see the log)",
			a.m.cfg.ProxyHost(), expiresIn(served.NotAfter, now))
	}
	return ""
}
