package config

import (
	"strings"
	"testing"
	"time"
)

func TestConnectionDefaultsAndMetricsListen(t *testing.T) {
	b, err := ParseBroker([]byte(validYAML()))
	if err != nil {
		t.Fatal(err)
	}
	if b.Listen.Metrics != DefaultMetricsListen {
		t.Errorf("listen.metrics without the key: %q, want %q", b.Listen.Metrics, DefaultMetricsListen)
	}
	c, to := b.Limits.Connections, b.Timeouts
	if c.PerAddress != DefaultConnectionsPerAddress || c.Total != DefaultConnectionsTotal ||
		to.TLSHandshake != DefaultTLSHandshakeTimeout || to.RequestHeaders != DefaultRequestHeadersTimeout ||
		to.AgentLogin != DefaultAgentLoginTimeout || to.Idle != DefaultIdleTimeout ||
		to.WriteProgress != DefaultWriteProgressTimeout || b.ShutdownTimeout != DefaultShutdownTimeout {
		t.Errorf("defaults: %+v %+v shutdown %v", c, to, b.ShutdownTimeout)
	}

	b, err = ParseBroker([]byte(validYAML() + `listen: {metrics: ""}
limits: {connections: {per_address: 3, total: 7}}
timeouts: {tls_handshake: 1s, request_headers: 2s, agent_login: 3s, idle: 4s, write_progress: 5s}
shutdown_timeout: 6s
`))
	if err != nil {
		t.Fatal(err)
	}
	if b.Listen.Metrics != "" {
		t.Errorf("listen.metrics set empty: %q, want it off", b.Listen.Metrics)
	}
	want := Timeouts{TLSHandshake: time.Second, RequestHeaders: 2 * time.Second, AgentLogin: 3 * time.Second, Idle: 4 * time.Second, WriteProgress: 5 * time.Second}
	if b.Limits.Connections != (Connections{PerAddress: 3, Total: 7}) || b.Timeouts != want || b.ShutdownTimeout != 6*time.Second {
		t.Errorf("set values: %+v %+v shutdown %v", b.Limits.Connections, b.Timeouts, b.ShutdownTimeout)
	}

	// A Broker built in code has no metrics listener unless it asks for one.
	nb, err := NewBroker(Broker{Domain: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if nb.Listen.Metrics != "" || nb.Limits.Connections.Total != DefaultConnectionsTotal {
		t.Errorf("NewBroker: metrics %q, connections %+v", nb.Listen.Metrics, nb.Limits.Connections)
	}
}

func TestConnectionErrorsNameTheField(t *testing.T) {
	for _, c := range []struct{ extra, field string }{
		{"limits: {connections: {per_address: -1}}", "limits.connections.per_address:"},
		{"limits: {connections: {total: -5}}", "limits.connections.total:"},
		{"limits: {connections: {per_address: 10, total: 5}}", "limits.connections.per_address:"},
		{"timeouts: {tls_handshake: 10ms}", "timeouts.tls_handshake:"},
		{"timeouts: {request_headers: 2h}", "timeouts.request_headers:"},
		{"timeouts: {agent_login: -1s}", "timeouts.agent_login:"},
		{"timeouts: {idle: 1ms}", "timeouts.idle:"},
		{"timeouts: {write_progress: 5h}", "timeouts.write_progress:"},
		{"shutdown_timeout: 2h", "shutdown_timeout:"},
		{"listen: {metrics: 'localhost'}", "listen.metrics:"},
	} {
		_, err := ParseBroker([]byte(validYAML() + c.extra + "\n"))
		if err == nil || !strings.HasPrefix(err.Error(), c.field) {
			t.Errorf("%s: %v, want an error starting %q", c.extra, err, c.field)
		}
	}
}

func TestParseAgentMatchesLoadAgent(t *testing.T) {
	a, err := ParseAgent([]byte("broker: https://admin.example.com\ncustomer: '12345'\nsystem: se1\nsecret: s3cret-enough\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Customer != "12345" || a.DialTimeout != 10*time.Second {
		t.Errorf("ParseAgent: %+v", a)
	}
}
