package certs_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maintproxy/certs"
	"maintproxy/config"
	"maintproxy/dns"
	"maintproxy/internal/testenv"
	"maintproxy/internal/testkit"
)

// TestACMEWithPebble obtains certificates from a real ACME server: maint.<domain> over
// TLS-ALPN-01 on the web listener, admin.<domain> over HTTP-01 on listen.http (its
// TLS-ALPN-01 validation is refused on purpose, so autocert falls back), with the
// broker's own DNS server as pebble's resolver. Clients trusting only RootPEM (pebble's
// root, as the tool bundle ships it) then reach both listeners, also without SNI.
func TestACMEWithPebble(t *testing.T) {
	const domain = "example.test"
	start := time.Now()
	web, plain, proxy := listen(t), listen(t), listen(t)
	cfg := &config.Broker{
		Domain: domain,
		Listen: config.Listen{
			Proxy: proxy.Addr().String(), Web: web.Addr().String(), HTTP: plain.Addr().String(), DNS: "127.0.0.1:0",
		},
		DataDir: t.TempDir(),
		TLS:     config.TLS{Mode: config.ModeACME, ACME: config.ACME{Email: "ops@" + domain}},
		DNS:     config.DNS{Enabled: true, Addresses: []string{"127.0.0.1"}},
	}
	dnsSrv, err := dns.New(dns.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	goRun(&wg, func() { _ = dnsSrv.Serve(ctx) })

	peb := testenv.StartPebble(t, testenv.PebbleOptions{
		TLSPort: port(web), HTTPPort: port(plain), DNSServer: dnsSrv.Addr().String(),
	})
	t.Logf("pebble ready after %v", time.Since(start).Round(time.Millisecond))
	cfg.TLS.ACME.DirectoryURL = peb.DirectoryURL
	cfg.TLS.ACME.CAFile = peb.CAFile
	cfg.TLS.ACME.RootFile = peb.RootFile
	cfg, err = config.NewBroker(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := certs.New(certs.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.RootPEM(), peb.RootPEM) {
		t.Fatal("RootPEM is not pebble's root")
	}

	// The web listener answers TLS-ALPN-01, except for admin.<domain>.
	var alpnRefused, http01 atomic.Int32
	webTLS := m.WebTLSConfig()
	getCert := webTLS.GetCertificate
	webTLS.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == "acme-tls/1" && h.ServerName == "admin."+domain {
			alpnRefused.Add(1)
			return nil, errors.New("test: TLS-ALPN-01 refused for admin")
		}
		return getCert(h)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	webSrv := &http.Server{Handler: hello, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, ErrorLog: quietLog}
	goRun(&wg, func() { _ = webSrv.Serve(tls.NewListener(web, webTLS)) })
	// The broker passes its HTTPS redirect as the fallback; here it only marks the request.
	httpHandler := m.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Fallback", r.URL.Path)
		w.WriteHeader(http.StatusMisdirectedRequest)
	}))
	plainSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			http01.Add(1)
		}
		httpHandler.ServeHTTP(w, r)
	})}
	goRun(&wg, func() { _ = plainSrv.Serve(plain) })
	proxySrv := &http.Server{Handler: connectOrHello(hello), TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, ErrorLog: quietLog}
	goRun(&wg, func() { _ = proxySrv.Serve(tls.NewListener(proxy, m.ProxyTLSConfig())) })
	t.Cleanup(func() { webSrv.Close(); plainSrv.Close(); proxySrv.Close() })

	runDone := make(chan error, 1)
	goRun(&wg, func() { runDone <- m.Run(ctx) })

	// Run obtains both certificates; the first handshake waits for the order in flight.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.RootPEM())
	obtained := time.Now()
	for _, c := range []struct{ addr, sni, name string }{
		{proxy.Addr().String(), "maint." + domain, "maint." + domain},
		{web.Addr().String(), "admin." + domain, "admin." + domain},
		{proxy.Addr().String(), "", "maint." + domain},                  // no SNI: proxytunnel -p <IP>
		{web.Addr().String(), "", "maint." + domain},                    // no SNI on the web listener
		{proxy.Addr().String(), "other.example.org", "maint." + domain}, // unknown name
	} {
		cs := handshake(t, c.addr, c.sni, roots, c.name)
		if cs.NegotiatedProtocol != "http/1.1" {
			t.Errorf("%s sni %q: ALPN %q", c.addr, c.sni, cs.NegotiatedProtocol)
		}
	}
	t.Logf("certificates obtained and verified %v after pebble was ready", time.Since(obtained).Round(time.Millisecond))
	if alpnRefused.Load() == 0 || http01.Load() == 0 {
		t.Errorf("admin.%s: TLS-ALPN-01 refused %d times, HTTP-01 requests %d: HTTP-01 not exercised", domain, alpnRefused.Load(), http01.Load())
	}
	if exp := m.CertExpiry(); time.Until(exp) < 80*24*time.Hour {
		t.Errorf("CertExpiry %v", exp)
	}
	if w := m.Warning(); w != "" {
		t.Errorf("warning: %q", w)
	}

	// A real HTTPS client through the proxy listener, trusting only the bundle's root.
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", proxy.Addr().String())
		},
	}, Timeout: 10 * time.Second}
	res, err := client.Get("https://maint." + domain + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	// Stock clients with the bundle's root file: curl, and proxytunnel through CONNECT.
	bundleRoot := filepath.Join(t.TempDir(), "isrgrootx1.pem")
	if err := os.WriteFile(bundleRoot, m.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	stockClients(t, port(proxy), bundleRoot, domain)

	// listen.http passes everything but challenges to the fallback.
	req, _ := http.NewRequest("GET", "http://"+plain.Addr().String()+"/com/remoteproxy/proxy.pac", nil)
	req.Host = "admin." + domain
	res, err = (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMisdirectedRequest || res.Header.Get("Fallback") != "/com/remoteproxy/proxy.pac" {
		t.Errorf("a plain request did not reach the fallback: %s %q", res.Status, res.Header.Get("Fallback"))
	}

	// A restart serves the cached certificates without asking the CA again.
	m2, err := certs.New(certs.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	again := serveOnce(t, m2.ProxyTLSConfig())
	handshake(t, again, "maint."+domain, roots, "maint."+domain)

	cancel()
	if err := testkit.Recv(t, runDone, 5*time.Second, "Run returning after cancel"); err != nil {
		t.Errorf("Run: %v", err)
	}
	t.Logf("whole ACME flow %v", time.Since(start).Round(time.Millisecond))
}

func goRun(wg *sync.WaitGroup, f func()) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		f()
	}()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func port(l net.Listener) int { return l.Addr().(*net.TCPAddr).Port }

// handshake connects to addr with sni (none when empty) and verifies the chain for name
// against roots only.
func handshake(t *testing.T, addr, sni string, roots *x509.CertPool, name string) tls.ConnectionState {
	t.Helper()
	cfg := &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // verified below for name, also when no SNI is sent
		NextProtos:         []string{"h2", "http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
			return err
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("handshake with %s (sni %q, verify %s): %v", addr, sni, name, err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState()
}

// serveOnce serves TLS handshakes with cfg on a new loopback listener.
func serveOnce(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln := listen(t)
	srv := &http.Server{Handler: http.NotFoundHandler(), TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, ErrorLog: quietLog}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

var quietLog = log.New(io.Discard, "", 0)

// connectOrHello answers CONNECT like the broker's proxy would after its checks (200,
// then a line from the "target"), and anything else with next.
func connectOrHello(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			next.ServeHTTP(w, r)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 200 Connection established\r\n\r\ntunnel-ok " + r.Host + "\n")
		rw.Flush()
	})
}

// stockClients runs curl and proxytunnel against the proxy listener on 127.0.0.1:port
// as maint.<domain>, trusting only rootFile. Missing tools skip that client.
func stockClients(t *testing.T, port int, rootFile, domain string) {
	t.Helper()
	host := "maint." + domain
	hostPort := host + ":" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if curl, err := exec.LookPath("curl"); err != nil {
		t.Log("curl not installed: skipped")
	} else {
		out, err := exec.CommandContext(ctx, curl, "-sS", "--noproxy", "*", "--cacert", rootFile,
			"--resolve", hostPort+":127.0.0.1", "https://"+hostPort+"/").CombinedOutput()
		if err != nil || string(out) != "hello" {
			t.Errorf("curl: %v: %s", err, out)
		} else {
			t.Logf("curl --cacert %s: ok", filepath.Base(rootFile))
		}
	}
	pt, err := exec.LookPath("proxytunnel")
	if err != nil {
		t.Log("proxytunnel not installed: skipped")
		return
	}
	// proxytunnel resolves the proxy's name itself: give it a private /etc/hosts.
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost "+host+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "unshare", "-m", "sh", "-c", `mount --bind "$1" /etc/hosts && exec "$2" -q -E -p "$3" -d "$4" -C "$5"`,
		"sh", hosts, pt, hostPort, "12345."+host+":22", rootFile)
	stdin, _ := cmd.StdinPipe() // held open: proxytunnel ends the tunnel on stdin EOF
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	stdin.Close()
	cmd.Wait() // stderr is complete only now
	if strings.Contains(stderr.String(), "unshare") {
		t.Skipf("no private mount namespace here: %s", stderr.String())
	}
	if err != nil || line != "tunnel-ok 12345."+host+":22\n" {
		t.Errorf("proxytunnel: %q %v; stderr: %s", line, err, stderr.String())
	} else {
		t.Logf("proxytunnel -E -C %s: %s", filepath.Base(rootFile), strings.TrimSpace(line))
	}
}
