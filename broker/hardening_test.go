package broker_test

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"maintproxy/internal/testenv"
	"maintproxy/internal/testkit"
	"maintproxy/tunnel"
)

// TestHangUpDuringOpen: a technician who hangs up while the agent is still dialling the
// target is let go at once: the audit record says client gone (not a 504 after the
// agent's dial timeout), and no goroutine of the attempt is left once the agent's dial
// has ended.
func TestHangUpDuringOpen(t *testing.T) {
	hanging := testenv.UnansweredAddr(t)
	r := startBroker(t, nil, se1)
	r.startAgentWith(t, se1, hanging, func(m map[string]any) { m["dial_timeout"] = "4s" })
	r.waitOnline(t, se1)
	web := r.webClient(t)
	r.get(t, web, "/healthz") // the web client's connection exists before the count
	before := runtime.NumGoroutine()

	c, err := tls.Dial("tcp", r.ProxyAddr().String(), &tls.Config{RootCAs: r.caPool(t), ServerName: "maint." + domain})
	if err != nil {
		t.Fatal(err)
	}
	target := "12345-SE1.maint." + domain + ":7"
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", target, target,
		base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
	time.Sleep(300 * time.Millisecond) // the technician's patience, not synchronisation: the agent dials for 4 s
	hungUp := time.Now()
	c.Close()
	waitFor(t, "audit record of the abandoned CONNECT", func() bool { return r.log.Contains(`result="client gone"`) })
	took := time.Since(hungUp)
	t.Logf("audit record %v after the hang-up (the agent dials for 4 s)", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the audit record came %v after the hang-up: the handler waited for the agent", took)
	}
	if r.log.Contains("status=504") {
		t.Error("the abandoned CONNECT was recorded as a 504")
	}
	if n := r.metrics(t)["maintproxy_tunnels_abandoned_total"]; n != 1 {
		t.Errorf("abandoned CONNECTs counted: %v, want 1", n)
	}
	// The agent's dial ends after 4 s; then nothing of the attempt may remain.
	testkit.WaitGoroutines(t, before)
	if st := r.Registry().Status(se1.id()); !st.Online || st.Tunnels != 0 {
		t.Errorf("agent after the abandoned CONNECT: %+v", st)
	}
}

// TestSecurityHeadersOnEveryAnswer: every answer of the web listener, whatever its status
// and whichever handler gave it, carries the security headers; so do the plain listener's
// redirects (without HSTS).
func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	r := startBroker(t, func(m map[string]any) { m["listen"].(map[string]any)["http"] = "127.0.0.1:0" }, se1)
	web := r.webClient(t)
	noRedirect := *web
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := "https://" + r.WebAddr().String()
	headers := []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy",
		"Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy", "Permissions-Policy"}
	for _, c := range []struct {
		method, path string
		auth         string // user:password for Basic, or ""
		hdr          http.Header
		status       int
	}{
		{"GET", "/healthz", "", nil, 200},
		{"GET", "/", "", nil, 302},
		{"GET", "/com/remoteproxy/proxy.pac", "", nil, 200},
		{"GET", "/com/remoteproxy/access", "", nil, 401},
		{"GET", "/com/remoteproxy/access", user + ":wrong", nil, 401},
		{"GET", "/com/remoteproxy/access", user + ":" + password, nil, 200},
		{"GET", "/metrics", "", nil, 404},
		{"GET", "/no/such/page", "", nil, 404},
		{"POST", "/healthz", "", nil, 405},
		{"GET", tunnel.AgentPath, "", nil, 426},
		{"GET", tunnel.AgentPath, "12345/se1:wrong", http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, 401},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		for k, v := range c.hdr {
			req.Header[k] = v
		}
		if u, p, ok := strings.Cut(c.auth, ":"); ok {
			req.SetBasicAuth(u, p)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
		for _, h := range append(headers, "Strict-Transport-Security") {
			if resp.Header.Get(h) == "" {
				t.Errorf("%s %s (%d): no %s", c.method, c.path, resp.StatusCode, h)
			}
		}
	}
	plain := &http.Client{Timeout: 10 * time.Second, CheckRedirect: noRedirect.CheckRedirect}
	resp, err := plain.Get("http://" + r.Config().Listen.HTTP + "/com/remoteproxy/access")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently {
		t.Errorf("plain HTTP: %d, want 301", resp.StatusCode)
	}
	for _, h := range headers {
		if resp.Header.Get(h) == "" {
			t.Errorf("plain HTTP redirect: no %s", h)
		}
	}
}
