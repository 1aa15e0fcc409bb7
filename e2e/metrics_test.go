package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"maintproxy/internal/testenv"
	"maintproxy/tunnel"
)

// TestMetricsCountEveryRefusal: /metrics is not on the public web listener; on its own
// listener every counter of the broker is present, and each moves when what it counts
// happens: tunnels, bytes, setup latency, refusals by listener, reason and status,
// password failures, lockouts, rate-limited and shed checks, agent logins by result,
// connections refused by the caps, TLS handshake timeouts, abandoned CONNECTs, DNS.
func TestMetricsCountEveryRefusal(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Extra: map[string]any{
		"limits": map[string]any{
			"auth":        map[string]any{"per_minute": 6, "burst": 5, "concurrent": 1},
			"connections": map[string]any{"per_address": 30, "total": 1000},
		},
		"timeouts": map[string]any{"tls_handshake": "1s"},
		"listen":   map[string]any{"dns": "127.0.0.1:0"},
		"dns":      map[string]any{"enabled": true, "addresses": []string{"127.0.0.1"}},
	}})
	webTC := &tls.Config{RootCAs: env.CAPool(t), ServerName: "admin." + env.Domain}
	wc := &http.Client{Transport: &http.Transport{TLSClientConfig: webTC}, Timeout: 10 * time.Second}
	resp, err := wc.Get("https://" + env.WebAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the public web listener: %d, want 404", resp.StatusCode)
	}
	before := testenv.Scrape(t, env.MetricsAddr)

	echo := testenv.StartEcho(t, "127.0.0.1:0")
	hanging := testenv.UnansweredAddr(t)
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{7: echo, 8: hanging}})
	tc := proxyTLS(t, env)
	src := func(n int) net.IP { return srcAddr(5, n) }
	request := func(from net.IP, authority, user, pass string) int {
		t.Helper()
		l, err := dialFrom(from, env.ProxyAddr, tc)
		if err != nil {
			t.Fatal(err)
		}
		defer l.c.Close()
		resp, _, err := l.do("CONNECT", authority, authority, basic("Proxy-Authorization", user, pass))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			assertEcho(t, l.c, []byte("metrics"))
		}
		return resp.StatusCode
	}
	target := env.Host("12345") + ":7"
	for range 2 { // a bcrypt check, then the cache
		if st := request(src(0), target, "resa", "pass-a"); st != 200 {
			t.Fatalf("CONNECT: %d", st)
		}
	}
	request(src(0), env.Host("55555")+":22", "resb", "pass-b") // offline: 503
	// Lock resa for one address.
	for i := range 3 {
		request(src(1), target, "resa", fmt.Sprint("wrong-", i))
	}
	request(src(1), target, "resa", "pass-a") // locked: 407
	// Past the address's rate (a burst of 5): 429, on the proxy and on the web pages. Known
	// accounts keep the checks quick; two failures each stay below their lock.
	for i, u := range []string{"resa", "resa", "resb", "resb", "nobody", "nobody"} {
		request(src(2), target, u, "wrong-"+strconv.Itoa(i))
	}
	webLogin(t, env, webTC, src(2), 429)
	webLogin(t, env, webTC, src(3), 401)
	// More bcrypt checks at once than slots and queue: shed.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			l, err := dialFrom(src(10+i), env.ProxyAddr, tc)
			if err != nil {
				return
			}
			defer l.c.Close()
			l.do("CONNECT", target, target, basic("Proxy-Authorization", fmt.Sprint("someone-", i), "x"))
		})
	}
	wg.Wait()

	// Agent logins with a wrong secret from one address: 401s, then 503 once its rate is used up.
	agentTr := &http.Transport{TLSClientConfig: webTC, DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src(4)}}).DialContext}
	t.Cleanup(agentTr.CloseIdleConnections)
	agentStatuses := map[int]int{}
	for range 10 {
		req, _ := http.NewRequest("GET", "https://"+env.WebAddr+tunnel.AgentPath, nil)
		req.SetBasicAuth("12345/SE2", "wrong-secret")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Connection", "Upgrade")
		resp, err := (&http.Client{Transport: agentTr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		agentStatuses[resp.StatusCode]++
	}
	if agentStatuses[401] == 0 || agentStatuses[503] == 0 {
		t.Errorf("wrong agent secrets from one address: %v, want 401s then 503s", agentStatuses)
	}

	// Connections beyond the per-address cap, all of them left in their TLS handshake.
	for range 33 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src(6)}, Timeout: 5 * time.Second}
		if c, err := d.Dial("tcp", env.ProxyAddr); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}

	// A technician who hangs up while the agent still dials.
	l, err := dialFrom(src(0), env.ProxyAddr, tc)
	if err != nil {
		t.Fatal(err)
	}
	hang := env.Host("12345") + ":8"
	io.WriteString(l.c, "CONNECT "+hang+" HTTP/1.1\r\nHost: "+hang+"\r\n"+basic("Proxy-Authorization", "resa", "pass-a")+"\r\n")
	time.Sleep(200 * time.Millisecond) // the technician's patience
	l.c.Close()

	q := new(dns.Msg)
	q.SetQuestion("12345.maint."+env.Domain+".", dns.TypeA)
	if _, err := dns.Exchange(q, env.DNSAddr); err != nil {
		t.Fatalf("DNS query: %v", err)
	}

	moving := []string{
		`maintproxy_tunnels_opened_total`, `maintproxy_connect_setup_seconds_count`,
		`maintproxy_bytes_up_total`, `maintproxy_bytes_down_total`,
		`maintproxy_tunnels_refused_total`, `maintproxy_tunnels_abandoned_total`,
		`maintproxy_refusals_total{listener="proxy",reason="offline",status="503"}`,
		`maintproxy_refusals_total{listener="proxy",reason="bad-credentials",status="407"}`,
		`maintproxy_refusals_total{listener="proxy",reason="locked",status="407"}`,
		`maintproxy_refusals_total{listener="proxy",reason="busy",status="429"}`,
		`maintproxy_refusals_total{listener="web",reason="bad-credentials",status="401"}`,
		`maintproxy_refusals_total{listener="web",reason="busy",status="429"}`,
		`maintproxy_refusals_total{listener="agent",reason="bad-credentials",status="401"}`,
		`maintproxy_refusals_total{listener="agent",reason="busy",status="503"}`,
		`maintproxy_password_checks_total`, `maintproxy_password_cache_hits_total`,
		`maintproxy_auth_failures_total`, `maintproxy_auth_locked_total`,
		`maintproxy_lockouts_total{scope="address"}`,
		`maintproxy_admission_refused_total{check="password",reason="rate"}`,
		`maintproxy_admission_refused_total{check="password",reason="shed"}`,
		`maintproxy_admission_refused_total{check="agent",reason="rate"}`,
		`maintproxy_agent_logins_total{result="bcrypt_checked"}`,
		`maintproxy_agent_logins_total{result="refused"}`,
		`maintproxy_agent_logins_total{result="busy"}`,
		`maintproxy_connections_accepted_total{listener="proxy"}`,
		`maintproxy_connections_accepted_total{listener="web"}`,
		`maintproxy_connections_refused_total{listener="proxy",reason="per_address"}`,
		`maintproxy_tls_handshake_failures_total{listener="proxy",reason="timeout"}`,
		`maintproxy_dns_queries_total`,
		`go_gc_duration_seconds_count`, `process_cpu_seconds_total`,
	}
	present := []string{
		`maintproxy_agents_online`, `maintproxy_tunnels_active`, `maintproxy_connections_open{listener="proxy"}`,
		`maintproxy_connections_open{listener="web"}`, `maintproxy_admission_running{check="password"}`,
		`maintproxy_lockouts_total{scope="account"}`, `maintproxy_agent_logins_total{result="hmac"}`,
		`maintproxy_connections_refused_total{listener="web",reason="total"}`, `maintproxy_accept_errors_total{listener="proxy"}`,
		`maintproxy_ca_expiry_seconds`, `maintproxy_cert_expiry_seconds`, `maintproxy_cert_warning`,
		`maintproxy_dns_refused_total`, `maintproxy_dns_ratelimited_total`,
		`go_goroutines`, `process_resident_memory_bytes`, `process_open_fds`,
	}
	// The handshake timeouts and the abandoned CONNECT take a moment: wait for the last.
	var after map[string]float64
	deadline := time.Now().Add(testenv.Scale(15 * time.Second))
	for {
		after = testenv.Scrape(t, env.MetricsAddr)
		still := 0
		for _, k := range moving {
			if after[k] <= before[k] {
				still++
			}
		}
		if still == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, k := range moving {
		if v, ok := after[k]; !ok || v <= before[k] {
			t.Errorf("%s did not move: %v → %v (present %v)", k, before[k], v, ok)
		}
	}
	for _, k := range present {
		if _, ok := after[k]; !ok {
			t.Errorf("%s missing", k)
		}
	}
	if after["maintproxy_agents_online"] != 1 {
		t.Errorf("maintproxy_agents_online = %v, want 1", after["maintproxy_agents_online"])
	}
}

// webLogin asks for the access page from src with a wrong password and checks the status.
func webLogin(t *testing.T, env *testenv.Env, tc *tls.Config, src net.IP, want int) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: tc, DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}).DialContext}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+env.WebAddr+"/com/remoteproxy/access", nil)
	req.SetBasicAuth("resa", "not-the-password")
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Errorf("access page with a wrong password from %v: %d, want %d", src, resp.StatusCode, want)
	}
}
