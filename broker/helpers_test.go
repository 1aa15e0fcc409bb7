package broker_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/broker"
	"maintproxy/certs"
	"maintproxy/config"
	"maintproxy/internal/echo"
	"maintproxy/internal/testenv"
	"maintproxy/internal/testkit"
	"maintproxy/tunnel"
)

const (
	domain   = "example.test"
	user     = "resa"
	password = "pass-a"
)

// secret is the agent secret the test configuration expects for a system.
func secret(customer, system string) string { return "secret-" + customer + "-" + system }

// hashes are bcrypt hashes at the lowest cost (tests do not wait for bcrypt), made once
// per secret: a reload compares agent secret hashes, so an unchanged secret keeps its hash.
type hashes map[string]string

func (h hashes) of(t testing.TB, secret string) string {
	t.Helper()
	if h[secret] == "" {
		b, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		h[secret] = string(b)
	}
	return h[secret]
}

// system is one customer system of the test configuration.
type system struct{ customer, name string }

func (s system) id() tunnel.Identity { return tunnel.NewIdentity(s.customer, s.name) }

// conf is a broker configuration on 127.0.0.1:0 listeners: account resa manages every
// customer named in systems; the first system of each customer is its primary.
func (h hashes) conf(t testing.TB, dataDir string, systems ...system) map[string]any {
	t.Helper()
	var ids []string
	custs := map[string][]map[string]any{}
	for _, s := range systems {
		if custs[s.customer] == nil {
			ids = append(ids, s.customer)
		}
		custs[s.customer] = append(custs[s.customer], map[string]any{
			"name": s.name, "primary": len(custs[s.customer]) == 0, "agent_secret_hash": h.of(t, secret(s.customer, s.name)),
		})
	}
	var customers []map[string]any
	for _, id := range ids {
		customers = append(customers, map[string]any{"id": id, "systems": custs[id]})
	}
	return map[string]any{
		"domain":    domain,
		"data_dir":  dataDir,
		"listen":    map[string]any{"proxy": "127.0.0.1:0", "web": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
		"accounts":  []map[string]any{{"username": user, "password_hash": h.of(t, password), "customers": ids}},
		"customers": customers,
		// Tests stop brokers with tunnels open: a short drain keeps them quick.
		"shutdown_timeout": "1s",
	}
}

// parse turns a configuration map into a loaded configuration (JSON is YAML).
func parse(t testing.TB, m map[string]any) *config.Broker {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.ParseBroker(data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// rig is a broker in this process with its agents, stopped when the test ends.
type rig struct {
	*broker.Broker
	dataDir string
	ca      string // the root to trust, when not the identity CA in dataDir (cluster mode)
	hashes  hashes
	log     *testkit.Buffer // everything the broker logged
	run     chan error      // Run's result once it returned
	cancel  context.CancelFunc
	once    sync.Once
	err     error
}

// newBroker builds a broker for systems; edit may change the configuration first.
func newBroker(t *testing.T, edit func(map[string]any), systems ...system) *rig {
	t.Helper()
	r, err := newBrokerErr(t, edit, systems...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newBrokerErr is newBroker returning New's error.
func newBrokerErr(t *testing.T, edit func(map[string]any), systems ...system) (*rig, error) {
	t.Helper()
	r := &rig{dataDir: filepath.Join(t.TempDir(), "data"), hashes: hashes{}}
	m := r.conf(t, systems...)
	if edit != nil {
		edit(m)
	}
	r.log = &testkit.Buffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(r.log, testOutput(t, "broker")), &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := broker.New(broker.Options{Config: parse(t, m), Logger: logger, PasswordCost: bcrypt.MinCost})
	if err != nil {
		return nil, err
	}
	r.Broker = b
	return r, nil
}

// startBroker builds a broker and runs it until the test ends.
func startBroker(t *testing.T, edit func(map[string]any), systems ...system) *rig {
	t.Helper()
	r := newBroker(t, edit, systems...)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.run = cancel, make(chan error, 1)
	go func() { r.run <- r.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and returns its result; it fails the test if Run does not return
// within 15 seconds.
func (r *rig) stop(t testing.TB) error {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.run:
		case <-time.After(15 * time.Second):
			r.err = fmt.Errorf("Run did not return within 15s of cancellation")
			t.Error(r.err)
		}
	})
	return r.err
}

// conf is the configuration of this broker for systems, as a reload would read it.
func (r *rig) conf(t testing.TB, systems ...system) map[string]any {
	t.Helper()
	return r.hashes.conf(t, r.dataDir, systems...)
}

func (r *rig) caFile() string {
	if r.ca != "" {
		return r.ca
	}
	return filepath.Join(r.dataDir, certs.CACertFile)
}

func (r *rig) caPool(t testing.TB) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(r.caFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", r.caFile())
	}
	return pool
}

// agent is an in-process agent with its log.
type agent struct {
	log    *testkit.Buffer
	cancel context.CancelFunc
	done   chan struct{}
}

// startAgent runs an agent for s, offering port 7 as target; it runs until stop or the
// end of the test.
func (r *rig) startAgent(t *testing.T, s system, target string) *agent {
	t.Helper()
	return r.startAgentWith(t, s, target, nil)
}

// startAgentWith is startAgent with edit changing the agent's configuration first.
func (r *rig) startAgentWith(t *testing.T, s system, target string, edit func(map[string]any)) *agent {
	t.Helper()
	m := map[string]any{
		"broker": "https://" + r.WebAddr().String(), "ca_file": r.caFile(), "server_name": "admin." + domain,
		"customer": s.customer, "system": s.name, "secret": secret(s.customer, s.name),
		"remote_access": map[string]any{"enabled": true, "services": map[string]string{"7": target}},
		"max_backoff":   "1s", "dial_timeout": "3s",
	}
	if edit != nil {
		edit(m)
	}
	return runAgent(t, s, loadAgent(t, m))
}

// loadAgent writes m as an agent's configuration file and loads it, as maintagent does.
func loadAgent(t *testing.T, m map[string]any) *config.Agent {
	t.Helper()
	data, _ := json.Marshal(m)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadAgent(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runAgent runs an in-process agent for s until the test ends; its log is kept to assert on.
func runAgent(t *testing.T, s system, cfg *config.Agent) *agent {
	t.Helper()
	a := &agent{log: &testkit.Buffer{}, done: make(chan struct{})}
	ag, err := tunnel.NewAgent(cfg, slog.New(slog.NewTextHandler(io.MultiWriter(a.log, testOutput(t, s.id().String())), nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() { defer close(a.done); ag.Run(ctx) }()
	t.Cleanup(a.stop)
	return a
}

// stop ends the agent and waits until its Run has returned.
func (a *agent) stop() {
	a.cancel()
	<-a.done
}

// waitOnline waits until the broker has a live session for every system.
func (r *rig) waitOnline(t testing.TB, systems ...system) {
	t.Helper()
	for _, s := range systems {
		waitFor(t, s.id().String()+" online", func() bool { return r.Registry().Status(s.id()).Online })
	}
}

// response is a proxy's answer to a CONNECT.
type response struct {
	status int
	header http.Header
	body   string
	conn   net.Conn
}

// request sends a CONNECT with the given credentials; with 200 the tunnel is in conn.
func (r *rig) request(t testing.TB, user, pass, authority string) response {
	t.Helper()
	c, err := tls.Dial("tcp", r.ProxyAddr().String(), &tls.Config{RootCAs: r.caPool(t), ServerName: "maint." + domain})
	if err != nil {
		t.Fatalf("dialing the proxy: %v", err)
	}
	cred := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", authority, authority, cred)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		t.Fatalf("CONNECT %s: %v", authority, err)
	}
	out := response{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		out.body = string(b)
		c.Close()
		return out
	}
	if br.Buffered() > 0 {
		t.Fatalf("CONNECT %s: %d stray bytes after the 200", authority, br.Buffered())
	}
	c.SetReadDeadline(time.Time{})
	t.Cleanup(func() { c.Close() })
	out.conn = c
	return out
}

// connect opens a CONNECT tunnel through the proxy as resa and returns it with the
// status; on anything but 200 the connection is closed and nil.
func (r *rig) connect(t testing.TB, authority string) (net.Conn, int) {
	t.Helper()
	resp := r.request(t, user, password, authority)
	return resp.conn, resp.status
}

// mustConnect is connect that fails the test on anything but 200.
func (r *rig) mustConnect(t testing.TB, authority string) net.Conn {
	t.Helper()
	c, code := r.connect(t, authority)
	if code != http.StatusOK {
		t.Fatalf("CONNECT %s: %d, want 200", authority, code)
	}
	return c
}

// roundTrip sends msg through an echo tunnel and checks that it comes back.
func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("writing to the tunnel: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo through the tunnel: %q, %v; want %q", got, err, msg)
	}
}

// waitClosed waits until the far end of c has closed it.
func waitClosed(t testing.TB, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: still open after 10s", what)
	}
}

// startEcho runs the echo target until the test ends.
func startEcho(t *testing.T) *echo.Server {
	t.Helper()
	s, err := echo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// webClient talks to the web listener as admin.<domain>, trusting only the broker's CA.
func (r *rig) webClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.caPool(t), ServerName: "admin." + domain}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get fetches path from the web listener and returns status, header and body.
func (r *rig) get(t *testing.T, c *http.Client, path string) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Get("https://" + r.WebAddr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// metrics scrapes the metrics listener (testenv.Scrape).
func (r *rig) metrics(t testing.TB) map[string]float64 {
	t.Helper()
	return testenv.Scrape(t, r.MetricsAddr().String())
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, what, cond)
}

func testOutput(t *testing.T, component string) io.Writer {
	return prefixWriter{t.Output(), component + ": "}
}

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
