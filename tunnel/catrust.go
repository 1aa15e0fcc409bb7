package tunnel

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"maintproxy/config"
	"maintproxy/internal/capool"
)

// AgentCAPath is the broker's endpoint serving, as PEM, the roots agents should trust: the
// current identity CA and, during a rollover, the next or the previous one too.
const AgentCAPath = "/agent/v1/ca"

// Fetching the published roots. An agent fetches them after each login and then every
// caRefreshEvery, so that an agent whose session lasts for months still learns of a next
// CA long before the switch (the overlap is months).
const (
	caRefreshEvery = 12 * time.Hour
	caFetchTimeout = 30 * time.Second
)

// agentTLS is the agent's TLS configuration for the broker at host: the system roots
// without ca_file; with it, ca_file plus the roots last fetched from the broker
// (capool.NextPath), which the returned Trust updates while the agent runs.
func agentTLS(cfg *config.Agent, host string) (*tls.Config, *capool.Trust, error) {
	if cfg.CAFile == "" {
		return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}, nil, nil
	}
	trust, err := capool.LoadTrust(cfg.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("ca_file: %w", err)
	}
	name := cfg.ServerName
	if name == "" {
		name = host
	}
	return trust.TLSConfig(name, nil), trust, nil
}

// keepTrustFresh fetches the broker's published roots now and every caRefreshEvery until
// ctx is done or the session ends (ended closed). Without ca_file it does nothing: the
// system roots are the operating system's business.
func (a *Agent) keepTrustFresh(ctx context.Context, ended <-chan struct{}) {
	if a.trust == nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // ends with this function's cancel at the latest
		select {
		case <-ended:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		a.fetchTrust(ctx)
		t := time.NewTimer(caRefreshEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// fetchTrust fetches the published roots once and keeps them beside ca_file. A broker
// without the endpoint (404) is left alone; other failures are logged and retried at the
// next refresh.
func (a *Agent) fetchTrust(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, caFetchTimeout)
	defer cancel()
	defer a.http.CloseIdleConnections()
	url := strings.TrimSuffix(a.cfg.Broker, "/") + AgentCAPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := a.http.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("fetching the broker's published roots failed", "url", url, "err", err.Error())
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, capool.MaxBundle+1))
	if err != nil || resp.StatusCode != http.StatusOK || resp.TLS == nil {
		a.log.Warn("fetching the broker's published roots failed", "url", url, "status", resp.StatusCode)
		return
	}
	name := a.cfg.ServerName
	if name == "" {
		name = req.URL.Hostname()
	}
	changed, err := a.trust.Update(body, resp.TLS.PeerCertificates, name, time.Now())
	if changed {
		a.log.Info("trusting the roots the broker publishes, beside ca_file", "file", capool.NextPath(a.cfg.CAFile))
	}
	if err != nil {
		a.log.Warn("keeping the broker's published roots failed", "file", capool.NextPath(a.cfg.CAFile), "err", err.Error())
	}
}
