package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maintproxy/internal/testenv"
)

// recordingProxy is a plain HTTP CONNECT proxy on loopback standing for a corporate proxy
// the browser already uses: it records every request line, and tunnels only to the test's
// direct site (dialled on 127.0.0.1); anything else gets 502.
type recordingProxy struct {
	addr       string
	directHost string
	mu         sync.Mutex
	seen       []string
}

func startRecordingProxy(t *testing.T, directHost string) *recordingProxy {
	t.Helper()
	p := &recordingProxy{directHost: directHost}
	p.addr = testenv.StartTCP(t, "127.0.0.1:0", p.serve)
	return p
}

func (p *recordingProxy) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	p.mu.Lock()
	p.seen = append(p.seen, req.Method+" "+req.Host)
	p.mu.Unlock()
	host, port, err := net.SplitHostPort(req.Host)
	if req.Method != http.MethodConnect || err != nil || host != p.directHost {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	dst, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 5*time.Second)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	defer dst.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() { io.Copy(dst, c); done <- struct{}{} }()
	go func() { io.Copy(c, dst); done <- struct{}{} }()
	<-done
}

// named is the proxy's address by name (the browser reaches IP literals of loopback only
// through names its resolver rules map).
func (p *recordingProxy) named() string {
	_, port, _ := net.SplitHostPort(p.addr)
	return net.JoinHostPort(corpHost, port)
}

// saw reports whether a request line for host (any port) went through the proxy.
func (p *recordingProxy) saw(host string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.seen {
		if strings.HasPrefix(strings.ToLower(l), "connect "+strings.ToLower(host)+":") {
			return true
		}
	}
	return false
}

func (p *recordingProxy) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// browserExtensionKeepsFixedProxy: Chromium started with --proxy-server (a corporate
// proxy in force) and the extension: other hosts still go through that proxy, maintenance
// names to maintproxy; once the extension is removed, the proxy has everything again.
func browserExtensionKeepsFixedProxy(t *testing.T, s *browserSetup, dir string) {
	corp := startRecordingProxy(t, "direct."+s.env.Domain)
	good := &browserCreds{"resa", "pass-a"}
	ext := s.downloadExtension(t)
	res := s.run(t, dir, browserJob{Mode: "extension", ExtensionDir: ext, ProfileDir: t.TempDir(),
		ExtraArgs: []string{"--proxy-server=http://" + corp.named()}, Visits: []browserVisit{
			{Name: "direct", URL: s.directURL, ProxyAuth: good},
			{Name: "panel", URL: s.panelURL, ProxyAuth: good},
			{Name: "panel-after-removal", URL: s.panelURL, ProxyAuth: good, UninstallExtension: true},
		}})
	t.Logf("corporate proxy saw %v", corp.lines())
	if !strings.Contains(string(res.Extension.Setting), "fixed_servers") {
		t.Errorf("the extension's script does not wrap the fixed proxy: %.300s", res.Extension.Setting)
	}
	v := browserFind(t, res, "direct")
	if v.Status != 200 || !strings.Contains(v.Text, s.directText) || !corp.saw("direct."+s.env.Domain) || len(v.Challenges) != 0 {
		t.Errorf("direct site: status %d, error %q, through the corporate proxy %v", v.Status, v.Error, corp.saw("direct."+s.env.Domain))
	}
	v = browserFind(t, res, "panel")
	if v.Status != 200 || !strings.Contains(v.Text, s.panelText) || proxyChallenges(v) != 1 {
		t.Errorf("panel with the extension: status %d, error %q, challenges %v", v.Status, v.Error, v.Challenges)
	}
	// Removed: the browser's own setting is back, so the maintenance name goes to the
	// corporate proxy (which refuses it) and no longer to maintproxy.
	v = browserFind(t, res, "panel-after-removal")
	if strings.Contains(v.Text, s.panelText) || proxyChallenges(v) != 0 || !corp.saw("12345-se1.maint."+s.env.Domain) {
		t.Errorf("after removal: status %d, error %q, challenges %v, corporate proxy saw %v", v.Status, v.Error, v.Challenges, corp.lines())
	}
}

// browserExtensionKeepsPACURL: Chromium started with --proxy-pac-url (a corporate PAC file
// in force) and the extension: the extension reads that file and keeps its rule for
// other hosts.
func browserExtensionKeepsPACURL(t *testing.T, s *browserSetup, dir string) {
	corp := startRecordingProxy(t, "direct."+s.env.Domain)
	var fetched atomic.Int64
	pacSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
		fmt.Fprintf(w, "// the corporation's PAC file\nvar corp = %q;\nfunction FindProxyForURL(url, host) {\n  if (dnsDomainIs(host, %q)) return corp;\n  return \"DIRECT\";\n}\n",
			"PROXY "+corp.named(), "direct."+s.env.Domain)
	}))
	t.Cleanup(pacSrv.Close)
	good := &browserCreds{"resa", "pass-a"}
	ext := s.downloadExtension(t)
	res := s.run(t, dir, browserJob{Mode: "extension", ExtensionDir: ext, ProfileDir: t.TempDir(),
		ExtraArgs: []string{"--proxy-pac-url=http://" + corpHost + ":" + fmt.Sprint(portOf(t, pacSrv.Listener.Addr().String())) + "/corp.pac"}, Visits: []browserVisit{
			{Name: "direct", URL: s.directURL, ProxyAuth: good},
			{Name: "panel", URL: s.panelURL, ProxyAuth: good},
		}})
	t.Logf("corporate PAC file fetched %d times; corporate proxy saw %v", fetched.Load(), corp.lines())
	if !strings.Contains(string(res.Extension.Setting), "dnsDomainIs") || fetched.Load() == 0 {
		t.Errorf("the extension's script does not hold the corporate PAC file (fetched %d times): %.300s", fetched.Load(), res.Extension.Setting)
	}
	v := browserFind(t, res, "direct")
	if v.Status != 200 || !strings.Contains(v.Text, s.directText) || !corp.saw("direct."+s.env.Domain) {
		t.Errorf("direct site: status %d, error %q, through the corporate proxy %v", v.Status, v.Error, corp.saw("direct."+s.env.Domain))
	}
	v = browserFind(t, res, "panel")
	if v.Status != 200 || !strings.Contains(v.Text, s.panelText) || proxyChallenges(v) != 1 || corp.saw("12345-se1.maint."+s.env.Domain) {
		t.Errorf("panel: status %d, error %q, challenges %v, corporate proxy saw %v", v.Status, v.Error, v.Challenges, corp.lines())
	}
}
