package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"maintproxy/internal/testenv"
	"maintproxy/tunnel"
)

// techConnect is one technician's CONNECT from src through to an echo round trip; it
// returns what went wrong, if anything (for use off the test's goroutine).
func techConnect(env *testenv.Env, tc *tls.Config, src net.IP, authority string) error {
	l, err := dialFrom(src, env.ProxyAddr, tc)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer l.c.Close()
	resp, _, err := l.do("CONNECT", authority, authority, basic("Proxy-Authorization", "resa", "pass-a"))
	if err != nil {
		return fmt.Errorf("CONNECT: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CONNECT: %d %s", resp.StatusCode, l.lastBody)
	}
	l.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(l.c, "ping"); err != nil {
		return err
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(l.br, got); err != nil || string(got) != "ping" {
		return fmt.Errorf("echo: %q %v", got, err)
	}
	return nil
}

// technician keeps a technician connecting from src every pause until stop is called,
// which returns how many CONNECTs succeeded and the errors of those that failed.
func technician(t *testing.T, env *testenv.Env, src net.IP, authority string, pause time.Duration) (stop func() (int, []error)) {
	tc := proxyTLS(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	var ok int
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil && ok+len(errs) < 10000 {
			if err := techConnect(env, tc, src, authority); err != nil {
				errs = append(errs, err)
			} else {
				ok++
			}
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}()
	var once sync.Once
	stop = func() (int, []error) {
		once.Do(func() { cancel(); <-done })
		return ok, errs
	}
	t.Cleanup(func() { stop() })
	return stop
}

// closedAt waits (up to limit) for the broker to close c and returns when it did; zero if
// it did not. Whatever the broker sends first (a 400, a TLS alert) is read and dropped.
func closedAt(c net.Conn, limit time.Duration) time.Time {
	c.SetReadDeadline(time.Now().Add(limit))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return time.Time{}
		}
		return time.Now()
	}
}

// slowClient is one hostile connection: opened at start, its phase's deadline counted
// from phaseStart, expected to be closed by the broker at deadline.
type slowClient struct {
	kind       string
	conn       net.Conn
	phaseStart time.Time
	deadline   time.Duration
}

// TestSlowlorisOnBothListeners: connections that never finish TLS, never finish their
// request headers, upgrade as an agent and never send the hello, or sit idle after a
// request, are each closed at their phase's deadline, on the proxy and on the web
// listener; meanwhile a technician keeps connecting, and one address holding its
// per_address connections has the next ones closed at once.
func TestSlowlorisOnBothListeners(t *testing.T) {
	const handshake, headers, login, idle = time.Second, 1500 * time.Millisecond, 2500 * time.Millisecond, time.Second
	const perAddress = 12
	env := testenv.Start(t, testenv.Options{Extra: map[string]any{
		"timeouts": map[string]any{"tls_handshake": handshake.String(), "request_headers": headers.String(),
			"agent_login": login.String(), "idle": idle.String()},
		"limits": map[string]any{"connections": map[string]any{"per_address": perAddress, "total": 500}},
	}})
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{7: echo}})
	authority := env.Host("12345-SE1") + ":7"
	stopTech := technician(t, env, net.IPv4(127, 0, 0, 2), authority, 100*time.Millisecond)

	proxyTC, webTC := proxyTLS(t, env), &tls.Config{RootCAs: env.CAPool(t), ServerName: "admin." + env.Domain}
	var clients []slowClient
	// open makes three slow clients of a kind from src. The deadline of the TLS handshake
	// counts from accept (the dial); the others from the end of setup (the handshake,
	// or the answer to a request), when the server starts waiting.
	open := func(kind string, src net.IP, addr string, deadline time.Duration, setup func(net.Conn) net.Conn) {
		for range 3 {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			t.Cleanup(func() { c.Close() })
			start := time.Now()
			if setup != nil {
				if c = setup(c); c == nil {
					t.Fatalf("%s: setting up the slow client failed", kind)
				}
				if deadline != handshake {
					start = time.Now()
				}
			}
			clients = append(clients, slowClient{kind: kind, conn: c, phaseStart: start, deadline: deadline})
		}
	}
	partialHello := func(c net.Conn) net.Conn {
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00})
		return c
	}
	tlsThen := func(tc *tls.Config, first string) func(net.Conn) net.Conn {
		return func(c net.Conn) net.Conn {
			tlc := tls.Client(c, tc)
			tlc.SetDeadline(time.Now().Add(5 * time.Second))
			if tlc.Handshake() != nil {
				return nil
			}
			tlc.SetDeadline(time.Time{})
			io.WriteString(tlc, first) // a request line and no end of headers
			return tlc
		}
	}
	src := func(n byte) net.IP { return net.IPv4(127, 0, 3, n) }
	open("proxy: TCP, no TLS", src(1), env.ProxyAddr, handshake, nil)
	open("proxy: ClientHello never ends", src(2), env.ProxyAddr, handshake, partialHello)
	open("proxy: headers never end", src(3), env.ProxyAddr, headers, tlsThen(proxyTC, "CONNECT "+authority+" HTTP/1.1\r\nHost: x\r\n"))
	open("web: TCP, no TLS", src(4), env.WebAddr, handshake, nil)
	open("web: ClientHello never ends", src(5), env.WebAddr, handshake, partialHello)
	open("web: agent login never sent", src(6), env.WebAddr, headers, tlsThen(webTC, "GET "+tunnel.AgentPath+" HTTP/1.1\r\nHost: x\r\n"))
	open("web: idle after a request", src(7), env.WebAddr, idle, tlsThen(webTC, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	open("proxy: idle after a refusal", src(8), env.ProxyAddr, idle, tlsThen(proxyTC, "CONNECT "+authority+" HTTP/1.1\r\nHost: x\r\n\r\n"))
	// An agent that logs in (valid secret) and never sends its hello: cut at agent_login
	// counted from accept.
	for range 3 {
		start := time.Now()
		ws := agentLoginNoHello(t, env, src(9))
		clients = append(clients, slowClient{kind: "web: agent upgraded, no hello", conn: ws, phaseStart: start, deadline: login})
	}

	// One address at its cap: the next connections are closed at once. The held ones meet
	// the handshake deadline themselves after a second, so the check is only good if it
	// ran well within that; on a machine too loaded for that it is tried again.
	capSrc := src(10)
	capped := false
	for attempt := 0; attempt < 5 && !capped; attempt++ {
		var held []net.Conn
		t0 := time.Now()
		for range perAddress {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: capSrc}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", env.ProxyAddr)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		var late []time.Duration
		for range 3 {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: capSrc}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", env.ProxyAddr)
			if err != nil {
				continue // refused before accept: as good
			}
			start := time.Now()
			if at := closedAt(c, 5*time.Second); at.IsZero() || at.Sub(start) > 300*time.Millisecond {
				late = append(late, at.Sub(start))
			}
			c.Close()
		}
		quick := time.Since(t0) < handshake*6/10
		for _, c := range held {
			if quick && closedAt(c, 5*time.Second).IsZero() {
				t.Error("a connection held at the cap was never closed")
			}
			c.Close()
		}
		if !quick {
			continue
		}
		capped = true
		if len(late) > 0 {
			t.Errorf("connections beyond per_address from one address closed after %v, want at once", late)
		}
	}
	if !capped {
		t.Error("the per-address cap could not be checked within the handshake deadline in 5 tries")
	}

	var wg sync.WaitGroup
	results := make([]string, len(clients))
	for i, c := range clients {
		wg.Go(func() {
			at := closedAt(c.conn, c.deadline+10*time.Second)
			if at.IsZero() {
				results[i] = fmt.Sprintf("%s: still open %v after its phase began (deadline %v)", c.kind, time.Since(c.phaseStart).Round(time.Millisecond), c.deadline)
				return
			}
			took := at.Sub(c.phaseStart)
			// Early is a bug; late by a few seconds is a loaded machine.
			if took < c.deadline-200*time.Millisecond || took > c.deadline+testenv.Scale(3*time.Second) {
				results[i] = fmt.Sprintf("%s: closed after %v, deadline %v", c.kind, took.Round(time.Millisecond), c.deadline)
				return
			}
			results[i] = fmt.Sprintf("ok %s: closed after %v (deadline %v)", c.kind, took.Round(time.Millisecond), c.deadline)
		})
	}
	wg.Wait()
	for _, r := range results {
		if strings.HasPrefix(r, "ok ") {
			t.Log(r[3:])
		} else {
			t.Error(r)
		}
	}
	ok, errs := stopTech()
	t.Logf("technician from another address meanwhile: %d CONNECTs, %d failed", ok, len(errs))
	if ok == 0 || len(errs) > 0 {
		t.Errorf("technician's CONNECTs during the slowloris: %d ok, failures %v", ok, errs)
	}
}

// agentLoginNoHello upgrades to the agent endpoint from src with 12345/SE2's right secret
// and then sends nothing; it returns the websocket as a net.Conn.
func agentLoginNoHello(t *testing.T, env *testenv.Env, src net.IP) net.Conn {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: env.CAPool(t), ServerName: "admin." + env.Domain},
		DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}).DialContext,
	}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cred := base64.StdEncoding.EncodeToString([]byte("12345/SE2:" + testenv.Secret("12345", "SE2")))
	ws, _, err := websocket.Dial(ctx, "wss://"+env.WebAddr+tunnel.AgentPath, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr}, HTTPHeader: http.Header{"Authorization": {"Basic " + cred}},
	})
	if err != nil {
		t.Fatalf("agent upgrade: %v", err)
	}
	c := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	t.Cleanup(func() { c.Close() })
	return c
}

// vmRSS is a process's resident memory from /proc.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for process %d", pid)
	return 0
}

// TestTwentyThousandConnections: 20,000 plain TCP connections from one address, opened in
// batches and held while the broker allows: the per-address cap holds their number at
// per_address, the rest are closed at once; a technician from another address keeps
// connecting throughout; the broker's RSS stays near its baseline, and returns to it.
func TestTwentyThousandConnections(t *testing.T) {
	const n, batch, dialers, perAddress = 20000, 1000, 50, 200
	env := testenv.Start(t, testenv.Options{Extra: map[string]any{
		// The held connections stay in their handshake for the whole test.
		"timeouts": map[string]any{"tls_handshake": "2m"},
		"limits":   map[string]any{"connections": map[string]any{"per_address": perAddress, "total": 1000}},
		"log":      map[string]any{"level": "info"},
	}})
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{7: echo}})
	authority := env.Host("12345-SE1") + ":7"
	tc := proxyTLS(t, env)
	tech := net.IPv4(127, 0, 0, 2)
	for range 5 { // warm up: caches, pools, the agent's session
		if err := techConnect(env, tc, tech, authority); err != nil {
			t.Fatal(err)
		}
	}
	pid := env.Proc().Pid()
	baseline := vmRSS(t, pid)
	mark := env.Proc().Mark()
	stopTech := technician(t, env, tech, authority, 200*time.Millisecond)

	flood := net.IPv4(127, 0, 9, 9)
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	var refused, dialFailed atomic.Int64
	var firstErr atomic.Value
	var slowest time.Duration
	peak := baseline
	start := time.Now()
	for sent := 0; sent < n; sent += batch {
		conns := make(chan net.Conn, batch)
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range dialers {
			wg.Go(func() {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: flood}, Timeout: 5 * time.Second}
				for next.Add(1) <= batch {
					c, err := d.Dial("tcp", env.ProxyAddr)
					if errors.Is(err, syscall.ECONNRESET) {
						refused.Add(1) // reset before connect returned: closed at once indeed
						continue
					}
					if err != nil {
						if dialFailed.Add(1) == 1 {
							firstErr.Store(err.Error())
						}
						continue
					}
					conns <- c
				}
			})
		}
		wg.Wait()
		close(conns)
		// Each connection is either closed by the broker at once or held: wait a second
		// for each at the same time.
		var mu sync.Mutex
		var judge sync.WaitGroup
		for c := range conns {
			judge.Go(func() {
				t0 := time.Now()
				at := closedAt(c, time.Second)
				mu.Lock()
				defer mu.Unlock()
				if at.IsZero() {
					c.SetReadDeadline(time.Time{})
					held = append(held, c)
					return
				}
				c.Close()
				refused.Add(1)
				slowest = max(slowest, at.Sub(t0))
			})
		}
		judge.Wait()
		peak = max(peak, vmRSS(t, pid))
	}
	elapsed := time.Since(start)
	ok, errs := stopTech()
	t.Logf("%d connections from one address in %v: %d held, %d closed at once (slowest close %v), %d dials failed; technician from another address: %d CONNECTs, %d failed",
		n, elapsed.Round(time.Millisecond), len(held), refused.Load(), slowest.Round(time.Millisecond), dialFailed.Load(), ok, len(errs))
	if len(held) != perAddress {
		t.Errorf("%d connections held from one address, want per_address = %d", len(held), perAddress)
	}
	if got := refused.Load() + dialFailed.Load(); got != n-int64(len(held)) || dialFailed.Load() > n/100 {
		t.Errorf("%d refused and %d failed dials (first: %v), want %d refused", refused.Load(), dialFailed.Load(), firstErr.Load(), n-len(held))
	}
	if ok == 0 || len(errs) > 0 {
		t.Errorf("technician during the flood: %d ok, failures %v", ok, errs)
	}
	lines := env.Proc().CountAfter(mark, func(r testenv.Record) bool { return strings.HasPrefix(r.Msg(), "connection refused") })
	if lines > 30 {
		t.Errorf("%d log lines for the refused connections: not rate-limited", lines)
	}

	for _, c := range held {
		c.Close()
	}
	held = nil
	// Generous: the runtime hands freed memory back to the system lazily.
	limit := baseline + max(baseline/2, 32<<20)
	var after int64
	deadline := time.Now().Add(testenv.Scale(60 * time.Second))
	for after = vmRSS(t, pid); after > limit && time.Now().Before(deadline); after = vmRSS(t, pid) {
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("broker RSS: baseline %d MiB, peak %d MiB, after %d MiB", baseline>>20, peak>>20, after>>20)
	if after > limit {
		t.Errorf("broker RSS %d MiB after the flood, baseline %d MiB", after>>20, baseline>>20)
	}
}
