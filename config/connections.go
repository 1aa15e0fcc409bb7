package config

import (
	"cmp"
	"errors"
	"fmt"
	"time"
)

// Connections caps the connections the public listeners (proxy, web, plain HTTP) hold at
// once. A connection beyond a cap is closed right after accept, before any TLS work.
type Connections struct {
	// PerAddress bounds the connections of one client address (IPv6: one /64) across the
	// listeners (default 500: a provider's office behind one NAT, each technician with
	// several tunnels and a browser, stays well below it).
	PerAddress int `mapstructure:"per_address"`
	// Total bounds all of them (default 20000, and never more than the open-file limit
	// allows, less a reserve for the broker's own files).
	Total int `mapstructure:"total"`
}

// Timeouts are the per-phase deadlines of the public listeners. Like the listen
// addresses, they take effect when the broker starts.
type Timeouts struct {
	// TLSHandshake bounds the time from accept to a finished TLS handshake (default 10s).
	TLSHandshake time.Duration `mapstructure:"tls_handshake"`
	// RequestHeaders bounds the time from the handshake, or from the first byte of a
	// further request on a kept-alive connection, to the request's complete headers
	// (default 10s).
	RequestHeaders time.Duration `mapstructure:"request_headers"`
	// AgentLogin bounds the time from accept to an agent's session being registered: TLS,
	// the login request, its check and the agent's hello (default 30s).
	AgentLogin time.Duration `mapstructure:"agent_login"`
	// Idle bounds how long a kept-alive connection waits for its next request (default 60s).
	Idle time.Duration `mapstructure:"idle"`
	// WriteProgress bounds each write to a client: a connection whose reader stops reading
	// while data waits is ended after this long without progress (default 60s). It is
	// what ends a tunnel whose technician stopped reading a download.
	WriteProgress time.Duration `mapstructure:"write_progress"`
}

// Defaults of the connection caps, the listeners' deadlines and the shutdown drain.
const (
	DefaultMetricsListen         = "127.0.0.1:9464"
	DefaultConnectionsPerAddress = 500
	DefaultConnectionsTotal      = 20000
	DefaultTLSHandshakeTimeout   = 10 * time.Second
	DefaultRequestHeadersTimeout = 10 * time.Second
	DefaultAgentLoginTimeout     = 30 * time.Second
	DefaultIdleTimeout           = 60 * time.Second
	DefaultWriteProgressTimeout  = 60 * time.Second
	DefaultShutdownTimeout       = 30 * time.Second
)

func (b *Broker) applyConnectionDefaults() {
	c, t := &b.Limits.Connections, &b.Timeouts
	c.PerAddress = cmp.Or(c.PerAddress, DefaultConnectionsPerAddress)
	c.Total = cmp.Or(c.Total, DefaultConnectionsTotal)
	t.TLSHandshake = cmp.Or(t.TLSHandshake, DefaultTLSHandshakeTimeout)
	t.RequestHeaders = cmp.Or(t.RequestHeaders, DefaultRequestHeadersTimeout)
	t.AgentLogin = cmp.Or(t.AgentLogin, DefaultAgentLoginTimeout)
	t.Idle = cmp.Or(t.Idle, DefaultIdleTimeout)
	t.WriteProgress = cmp.Or(t.WriteProgress, DefaultWriteProgressTimeout)
	b.ShutdownTimeout = cmp.Or(b.ShutdownTimeout, DefaultShutdownTimeout)
}

func (b *Broker) validateConnections() error {
	c := b.Limits.Connections
	if c.Total < 1 {
		return errors.New("limits.connections.total: must be at least 1")
	}
	if c.PerAddress < 1 {
		return errors.New("limits.connections.per_address: must be at least 1")
	}
	if c.PerAddress > c.Total {
		return fmt.Errorf("limits.connections.per_address: %d exceeds limits.connections.total (%d)", c.PerAddress, c.Total)
	}
	// Below 100ms a deadline fails healthy clients on any real network; above an hour it
	// no longer protects anything.
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"timeouts.tls_handshake", b.Timeouts.TLSHandshake},
		{"timeouts.request_headers", b.Timeouts.RequestHeaders},
		{"timeouts.agent_login", b.Timeouts.AgentLogin},
		{"timeouts.idle", b.Timeouts.Idle},
		{"timeouts.write_progress", b.Timeouts.WriteProgress},
		{"shutdown_timeout", b.ShutdownTimeout},
	} {
		if d.v < 100*time.Millisecond || d.v > time.Hour {
			return fmt.Errorf("%s: %v is outside 100ms-1h", d.field, d.v)
		}
	}
	return nil
}
