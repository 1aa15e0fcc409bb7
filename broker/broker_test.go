package broker_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"maintproxy/internal/testkit"
	"maintproxy/tunnel"
)

var (
	se1   = system{"12345", "se1"}
	se2   = system{"12345", "se2"}
	other = system{"67890", "se1"}
	third = system{"55555", "se1"}
)

// TestReloadPrunesAgents: a configuration that removes a system and one that changes a
// system's agent secret each disconnect that agent (ending its tunnels) and refuse its
// reconnection; the other agents keep their sessions and tunnels.
func TestReloadPrunesAgents(t *testing.T) {
	target := startEcho(t)
	r := startBroker(t, nil, se1, se2, other, third)
	agents := map[system]*agent{}
	for _, s := range []system{se1, se2, other, third} {
		agents[s] = r.startAgent(t, s, target.Addr())
	}
	r.waitOnline(t, se1, se2, other, third)
	kept, removed := r.mustConnect(t, "12345-SE1.maint."+domain+":7"), r.mustConnect(t, "12345-SE2.maint."+domain+":7")
	roundTrip(t, kept, "before the reload")
	roundTrip(t, removed, "before the reload")
	sessions := map[system]*tunnel.Session{se1: r.Registry().Get(se1.id()), third: r.Registry().Get(third.id())}
	// Only what happens from the reload on counts: an agent may have been asked to come back
	// later while the others logged in.
	marks := map[system]int{se1: agents[se1].log.Len(), third: agents[third].log.Len()}

	// 12345/se2 leaves the configuration; 67890/se1 gets a new secret.
	next := r.conf(t, se1, other, third)
	rehash := r.hashes.of(t, "a new secret")
	for _, c := range next["customers"].([]map[string]any) {
		if c["id"] == other.customer {
			c["systems"].([]map[string]any)[0]["agent_secret_hash"] = rehash
		}
	}
	r.Apply(parse(t, next))

	waitFor(t, "12345/se2 disconnected", func() bool { return !r.Registry().Status(se2.id()).Online })
	// An unknown system's login costs a full-cost bcrypt (as long as a wrong secret), which
	// under the race detector takes many seconds: stop this agent before it tries again.
	agents[se2].stop()
	waitClosed(t, removed, "tunnel through the removed system")
	waitFor(t, "67890/se1 disconnected", func() bool { return !r.Registry().Status(other.id()).Online })
	waitFor(t, "67890/se1 refused on reconnection", func() bool { return agents[other].log.Contains("refused this agent") })
	for s, sess := range sessions {
		if got := r.Registry().Get(s.id()); got == nil || got != sess {
			t.Errorf("%s: session replaced or gone after a reload that kept it", s.id())
		}
		if agents[s].log.ContainsSince(marks[s], "disconnected") {
			t.Errorf("%s: agent was disconnected by a reload that kept it", s.id())
		}
	}
	roundTrip(t, kept, "after the reload")
	if _, code := r.connect(t, "12345-SE2.maint."+domain+":7"); code == http.StatusOK {
		t.Error("CONNECT to the removed system succeeded")
	}
}

// TestShutdownWithTunnelsAndAgents: cancelling Run with agents connected, tunnels open and
// an idle keep-alive web connection ends the tunnels and returns cleanly; once the agents
// are stopped too, no goroutine of the broker, its tunnels or its agents is left.
func TestShutdownWithTunnelsAndAgents(t *testing.T) {
	before := runtime.NumGoroutine()
	target := startEcho(t)
	r := startBroker(t, nil, se1, se2)
	a1, a2 := r.startAgent(t, se1, target.Addr()), r.startAgent(t, se2, target.Addr())
	r.waitOnline(t, se1, se2)
	web := r.webClient(t)
	if code, _, _ := r.get(t, web, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	var tunnels []net.Conn
	for _, host := range []string{"12345-SE1", "12345-SE2", "12345-SE2"} {
		c := r.mustConnect(t, host+".maint."+domain+":7")
		roundTrip(t, c, "open during shutdown")
		tunnels = append(tunnels, c)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for i, c := range tunnels {
		waitClosed(t, c, fmt.Sprintf("tunnel %d after shutdown", i))
		c.Close()
	}
	for _, addr := range []string{r.ProxyAddr().String(), r.WebAddr().String()} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still accepts after Run returned", addr)
		}
	}
	a1.stop()
	a2.stop()
	target.Close()
	web.Transport.(*http.Transport).CloseIdleConnections()
	testkit.WaitGoroutines(t, before)
}

// TestMetricsAndHealthz: /healthz answers only ok; /metrics is not on the public web
// listener but on its own, where it counts agents, tunnels, refusals, bytes, certificate
// expiry and DNS queries.
func TestMetricsAndHealthz(t *testing.T) {
	target := startEcho(t)
	r := startBroker(t, func(m map[string]any) {
		m["listen"].(map[string]any)["dns"] = "127.0.0.1:0"
		m["dns"] = map[string]any{"enabled": true, "addresses": []string{"127.0.0.1"}}
	}, se1, se2)
	web := r.webClient(t)
	code, h, body := r.get(t, web, "/healthz")
	if code != http.StatusOK || body != "ok\n" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("/healthz: %d %q, nosniff %q", code, body, h.Get("X-Content-Type-Options"))
	}
	if code, _, _ := r.get(t, web, "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the public web listener: %d, want 404", code)
	}
	m := r.metrics(t)
	now := float64(time.Now().Unix())
	for name, want := range map[string]float64{
		"maintproxy_agents_online": 0, "maintproxy_tunnels_opened_total": 0, "maintproxy_tunnels_active": 0,
		"maintproxy_cert_warning": 0, "maintproxy_dns_queries_total": 0,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	for _, name := range []string{"maintproxy_ca_expiry_seconds", "maintproxy_cert_expiry_seconds"} {
		if m[name] <= now {
			t.Errorf("%s = %v, want a time after now (%v)", name, m[name], now)
		}
	}

	r.startAgent(t, se1, target.Addr())
	r.waitOnline(t, se1)
	c := r.mustConnect(t, "12345.maint."+domain+":7")
	msg := strings.Repeat("x", 1000)
	roundTrip(t, c, msg)
	if _, code := r.connect(t, "12345-SE2.maint."+domain+":7"); code != http.StatusServiceUnavailable {
		t.Errorf("CONNECT to an offline system: %d, want 503", code)
	}
	m = r.metrics(t)
	for name, want := range map[string]float64{
		"maintproxy_agents_online": 1, "maintproxy_tunnels_opened_total": 1, "maintproxy_tunnels_active": 1,
		"maintproxy_tunnels_refused_total": 1,
	} {
		if m[name] != want {
			t.Errorf("with a tunnel open: %s = %v, want %v", name, m[name], want)
		}
	}
	c.Close()
	waitFor(t, "tunnel counted as closed", func() bool { return r.metrics(t)["maintproxy_tunnels_active"] == 0 })
	m = r.metrics(t)
	if m["maintproxy_bytes_up_total"] != float64(len(msg)) || m["maintproxy_bytes_down_total"] != float64(len(msg)) {
		t.Errorf("bytes up %v, down %v; want %d each", m["maintproxy_bytes_up_total"], m["maintproxy_bytes_down_total"], len(msg))
	}

	q := new(dns.Msg)
	q.SetQuestion("12345.maint."+domain+".", dns.TypeA)
	if _, err := dns.Exchange(q, r.Config().Listen.DNS); err != nil {
		t.Fatalf("DNS query to %s: %v", r.Config().Listen.DNS, err)
	}
	if got := r.metrics(t)["maintproxy_dns_queries_total"]; got != 1 {
		t.Errorf("maintproxy_dns_queries_total = %v after one query, want 1", got)
	}
}

// TestPortZeroIsPinned: listen addresses with port 0 are replaced by the ports bound, in
// the configuration in force and in what the broker serves, also after a reload.
func TestPortZeroIsPinned(t *testing.T) {
	r := startBroker(t, nil, se1)
	web := r.webClient(t)
	_, proxyPort, _ := net.SplitHostPort(r.ProxyAddr().String())
	check := func(when string) {
		t.Helper()
		if got, want := r.Config().Listen.Proxy, r.ProxyAddr().String(); got != want {
			t.Errorf("%s: listen.proxy %q, want %q", when, got, want)
		}
		if got, want := r.Config().Listen.Web, r.WebAddr().String(); got != want {
			t.Errorf("%s: listen.web %q, want %q", when, got, want)
		}
		code, _, pacFile := r.get(t, web, "/com/remoteproxy/proxy.pac")
		if want := "maint." + domain + ":" + proxyPort; code != http.StatusOK || !strings.Contains(pacFile, want) {
			t.Errorf("%s: proxy.pac (%d) does not name %s:\n%s", when, code, want, pacFile)
		}
	}
	check("after New")
	r.Apply(parse(t, r.conf(t, se1, se2)))
	check("after a reload")
}

// TestNewThenClose: a broker that never runs releases every port New bound when closed,
// and a New that fails half-way releases what it had bound.
func TestNewThenClose(t *testing.T) {
	r := newBroker(t, func(m map[string]any) {
		l := m["listen"].(map[string]any)
		l["http"], l["dns"] = "127.0.0.1:0", "127.0.0.1:0"
		m["dns"] = map[string]any{"enabled": true, "addresses": []string{"127.0.0.1"}}
	}, se1)
	l := r.Config().Listen
	tcp := []string{l.Proxy, l.Web, l.HTTP, l.DNS}
	for _, addr := range tcp {
		if strings.HasSuffix(addr, ":0") {
			t.Fatalf("listen address %s was not given its bound port", addr)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, addr := range tcp {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("TCP %s still taken after Close: %v", addr, err)
			continue
		}
		ln.Close()
	}
	if pc, err := net.ListenPacket("udp", l.DNS); err != nil {
		t.Errorf("UDP %s still taken after Close: %v", l.DNS, err)
	} else {
		pc.Close()
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// listen.http is taken: New fails after binding the proxy and web ports, and must not
	// keep them (counted as open file descriptors).
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	fds := openFDs(t)
	_, err = newBrokerErr(t, func(m map[string]any) { m["listen"].(map[string]any)["http"] = taken.Addr().String() }, se1)
	if err == nil || !strings.Contains(err.Error(), "listen.http") {
		t.Fatalf("New with listen.http taken: %v, want an error naming listen.http", err)
	}
	// Fewer is fine: a connection of an earlier test may have finished closing meanwhile.
	if now := openFDs(t); now > fds {
		t.Errorf("%d open file descriptors before the failed New, %d after", fds, now)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(ents)
}
