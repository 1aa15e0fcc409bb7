package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/refusal"
	"maintproxy/internal/testkit"
	"maintproxy/maintname"
	"maintproxy/tunnel"
)

// startProxy serves a proxy on a loopback listener whose one customer system (12345/se1)
// has no agent, and returns its address and the pool that verifies it.
func startProxy(t *testing.T, password string) (string, *x509.CertPool) {
	t.Helper()
	cfg := testBroker(t, password)
	cert, pool := testkit.SelfSigned(t, "maint.example.com")
	quiet := slog.New(slog.DiscardHandler)
	s := New(Options{
		Config:   func() *config.Broker { return cfg },
		Auth:     NewAuth(func() *config.Broker { return cfg }, nil),
		Registry: tunnel.NewRegistry(),
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Logger:   quiet,
		Audit:    quiet,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Shutdown(t.Context())
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), pool
}

// ask sends one proxy request over its own TLS connection and returns the answer.
func ask(t *testing.T, addr string, pool *x509.CertPool, method, target, user, pass string) *http.Response {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, testkit.ProxyRequest(method, target, user, pass)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	return resp
}

// TestRefusalHeader: every refusal a technician can meet without an agent carries its
// machine-readable reason, over a real TLS listener.
func TestRefusalHeader(t *testing.T) {
	addr, pool := startProxy(t, "right")
	const d = ".maint.example.com"
	for _, c := range []struct {
		name, method, target, user, pass string
		status                           int
		reason                           refusal.Reason
	}{
		{"no credentials", "CONNECT", "12345" + d + ":22", "", "", 407, refusal.NoCredentials},
		{"wrong password", "CONNECT", "12345" + d + ":22", "resa", "wrong", 407, refusal.BadCredentials},
		{"plain HTTP", "GET", "http://12345" + d + "/", "resa", "right", 405, refusal.NotConnect},
		{"not a maintenance name", "CONNECT", "www.example.org:443", "resa", "right", 403, refusal.NotMaintenance},
		{"malformed name", "CONNECT", "12345-" + d + ":22", "resa", "right", 400, refusal.Malformed},
		{"unknown customer", "CONNECT", "99999" + d + ":22", "resa", "right", 403, refusal.UnknownCustomer},
		{"unknown system", "CONNECT", "12345-se9" + d + ":22", "resa", "right", 403, refusal.UnknownSystem},
		{"no agent", "CONNECT", "12345" + d + ":22", "resa", "right", 503, refusal.Offline},
	} {
		resp := ask(t, addr, pool, c.method, c.target, c.user, c.pass)
		if resp.StatusCode != c.status || resp.Header.Get(refusal.Header) != string(c.reason) {
			t.Errorf("%s: %d %s=%q; want %d %q", c.name, resp.StatusCode, refusal.Header, resp.Header.Get(refusal.Header), c.status, c.reason)
		}
	}

	// Wrong passwords lock the account for this address: then even the right one is refused.
	// (Each try a different password: the same wrong one again counts once.)
	for i := range config.DefaultLockFailures {
		if resp := ask(t, addr, pool, "CONNECT", "12345"+d+":22", "resa", fmt.Sprintf("wrong-%d", i)); resp.StatusCode != 407 {
			t.Fatalf("wrong password %d: %d", i, resp.StatusCode)
		}
	}
	resp := ask(t, addr, pool, "CONNECT", "12345"+d+":22", "resa", "right")
	if resp.StatusCode != 407 || resp.Header.Get(refusal.Header) != string(refusal.Locked) {
		t.Errorf("locked: %d %q", resp.StatusCode, resp.Header.Get(refusal.Header))
	}
}

// TestStatusForEveryRow: each row of the failure table has its own reason, and the agent's
// refusals map to theirs.
func TestStatusForEveryRow(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		reason refusal.Reason
	}{
		{errNoCredentials, 407, refusal.NoCredentials},
		{ErrBadCredentials, 407, refusal.BadCredentials},
		{ErrLocked, 407, refusal.Locked},
		{ErrNotConnect, 405, refusal.NotConnect},
		{maintname.ErrNotMaintenance, 403, refusal.NotMaintenance},
		{fmt.Errorf("%w: port", maintname.ErrMalformed), 400, refusal.Malformed},
		{ErrNotManaged, 403, refusal.UnknownCustomer},
		{ErrNoSystem, 403, refusal.UnknownSystem},
		{ErrOffline, 503, refusal.Offline},
		{tunnel.ErrSessionClosed, 503, refusal.Offline},
		{tunnel.ErrRemoteAccessOff, 403, refusal.CustomerSettings},
		{tunnel.ErrServiceNotOffered, 403, refusal.CustomerSettings},
		{tunnel.ErrColocatedOff, 403, refusal.CustomerSettings},
		{tunnel.ErrNoTunnelEntry, 403, refusal.CustomerSettings},
		{tunnel.ErrRefused, 502, refusal.TargetFailed},
		{tunnel.ErrUnreachable, 502, refusal.TargetFailed},
		{tunnel.ErrTimeout, 504, refusal.TargetTimeout},
		{ErrLimit, 429, refusal.Limit},
		{errors.New("stream reset"), 502, refusal.TunnelFailed},
	} {
		status, reason, text := statusFor(c.err, "example.com")
		if status != c.status || reason != c.reason || text == "" {
			t.Errorf("%v: %d %q; want %d %q", c.err, status, reason, c.status, c.reason)
		}
	}
}

// TestRefusalTextsHideInternals: what broke below the proxy (a connection error naming
// the broker's own addresses) reaches the audit record, never the client.
func TestRefusalTextsHideInternals(t *testing.T) {
	inner := &net.OpError{Op: "read", Net: "tcp", Source: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 443},
		Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 50000}, Err: errors.New("connection reset by peer")}
	for _, err := range []error{
		fmt.Errorf("%w: %v", tunnel.ErrSessionClosed, inner),
		fmt.Errorf("yamux: %w", inner),
	} {
		_, _, text := statusFor(err, "example.com")
		if strings.Contains(text, "10.1.2.3") || strings.Contains(text, "192.0.2.7") || strings.Contains(text, "reset") {
			t.Errorf("%v: client reads %q", err, text)
		}
	}
}
