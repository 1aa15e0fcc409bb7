package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/testenv"
	"maintproxy/tunnel"
)

// srcAddr returns the n-th loopback source address outside 127.0.0.1, in 127.<block>.x.y:
// floods come from many client addresses without leaving the machine.
func srcAddr(block, n int) net.IP {
	return net.IPv4(127, byte(block), byte(1+n/250%250), byte(1+n%250))
}

// loopConn is a TLS connection to a broker listener from a chosen source address.
type loopConn struct {
	c        *tls.Conn
	br       *bufio.Reader
	requests int    // requests sent on it so far
	lastBody string // body of the last refusal (up to 1 KiB)
}

func dialFrom(src net.IP, addr string, tc *tls.Config) (*loopConn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, tc)
	if err != nil {
		return nil, err
	}
	return &loopConn{c: c, br: bufio.NewReader(c)}, nil
}

// do sends one request (method, target and header lines) and reads the answer; keep says
// whether the connection may be used again.
func (l *loopConn) do(method, target, host string, header ...string) (resp *http.Response, keep bool, err error) {
	req := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + strings.Join(header, "") + "\r\n"
	l.c.SetDeadline(time.Now().Add(15 * time.Second))
	l.requests++
	if _, err := io.WriteString(l.c, req); err != nil {
		return nil, false, err
	}
	resp, err = http.ReadResponse(l.br, &http.Request{Method: method})
	if err != nil {
		return nil, false, err
	}
	if method != "CONNECT" || resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		l.lastBody = string(body)
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
	return resp, !resp.Close && resp.StatusCode != http.StatusOK, nil
}

func proxyTLS(t *testing.T, env *testenv.Env) *tls.Config {
	return &tls.Config{RootCAs: env.CAPool(t), ServerName: "maint." + env.Domain}
}

func basic(h, user, pass string) string {
	return h + ": Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + "\r\n"
}

// connectOnce is one technician CONNECT as proxytunnel makes it (new TLS connection each
// time) through to the agent's 200; it returns the time that took.
func connectOnce(t *testing.T, env *testenv.Env, src net.IP, user, pass, authority string) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	l, err := dialFrom(src, env.ProxyAddr, proxyTLS(t, env))
	if err != nil {
		t.Fatalf("dialing the proxy: %v", err)
	}
	defer l.c.Close()
	resp, _, err := l.do("CONNECT", authority, authority, basic("Proxy-Authorization", user, pass))
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	return resp.StatusCode, time.Since(start)
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// brokerCPU returns the CPU time the broker process serving configPath has used so far.
func brokerCPU(t *testing.T, configPath string) time.Duration {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, err := os.ReadFile(d + "/cmdline")
		if err != nil || !strings.Contains(string(cmd), configPath) || !strings.Contains(string(cmd), "serve") {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	}
	t.Fatalf("no broker process for %s", configPath)
	return 0
}

// selfCPU is the CPU time this test process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPasswordFloodDoesNotStarveTechnicians: 64 connections send wrong passwords with
// random usernames from many loopback addresses for 20 s while a technician whose
// credential is cached keeps connecting. The technician's CONNECT p50 and p99 stay within
// twice their unloaded values, with floors of 10 and 250 ms: the machine is shared with
// other work and the flood runs on it too. To keep that other work out of the comparison
// as far as possible, the flood runs in 2 s bursts and the unloaded samples are taken
// between the bursts, once the broker's queue has drained. Refused checks are answered at
// once with 429 and Retry-After; the broker logs a few sampled lines, not one per attempt.
func TestPasswordFloodDoesNotStarveTechnicians(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{7: echo}})
	target := env.Host("12345-SE1") + ":7"
	tech := net.IPv4(127, 0, 0, 1)
	sample := func(until time.Time, max int) []time.Duration {
		var d []time.Duration
		for len(d) < max && time.Now().Before(until) {
			st, took := connectOnce(t, env, tech, "resa", "pass-a", target)
			if st != http.StatusOK {
				t.Fatalf("technician's CONNECT answered %d", st)
			}
			d = append(d, took)
			time.Sleep(40 * time.Millisecond) // a technician's pace, not a benchmark
		}
		return d
	}
	sample(time.Now().Add(5*time.Second), 3) // warm up and cache the credential

	// Ten cycles: 2 s of flood, then 1.5 s for the broker's queue to drain (a queued check
	// waits at most 1 s) and 1.5 s of unloaded samples.
	const cycles, on, settle, off = 10, 2 * time.Second, 1500 * time.Millisecond, 1500 * time.Millisecond
	mark := env.Proc().Mark()
	cpu0 := brokerCPU(t, env.ConfigPath)
	floodStart := time.Now().Add(time.Second) // the flood process starts meanwhile
	flood := startFlood(t, floodSpec{Kind: "proxy", Addr: env.ProxyAddr, ServerName: "maint." + env.Domain, CAFile: env.CAFile,
		Target: target, Workers: 64, Fresh: 2, Block: 1, Duration: time.Second + cycles*(on+settle+off),
		Start: floodStart, On: on, Off: settle + off})
	var loaded, unloaded []time.Duration
	for c := range cycles {
		burst := floodStart.Add(time.Duration(c) * (on + settle + off))
		time.Sleep(time.Until(burst))
		loaded = append(loaded, sample(burst.Add(on), 1000)...)
		time.Sleep(time.Until(burst.Add(on + settle)))
		unloaded = append(unloaded, sample(burst.Add(on+settle+off), 1000)...)
	}
	res := flood.wait(t)
	cpu := brokerCPU(t, env.ConfigPath) - cpu0
	elapsed := time.Since(floodStart)
	statuses := res.Statuses

	up50, up99 := percentile(unloaded, 0.5), percentile(unloaded, 0.99)
	lp50, lp99 := percentile(loaded, 0.5), percentile(loaded, 0.99)
	t.Logf("technician CONNECT unloaded: n=%d p50=%v p99=%v; during the flood: n=%d p50=%v p99=%v",
		len(unloaded), up50, up99, len(loaded), lp50, lp99)
	t.Logf("flood: %v answers in %v, bursts of 2 s every 5 s (%d connections); 429 answered in p50=%v p90=%v max=%v, shed at once (n=%d) in p50=%v p90=%v max=%v; broker CPU %.2f cores",
		statuses, res.Elapsed.Round(time.Millisecond), res.Dials, res.BusyP50, res.BusyP90, res.BusyMax,
		res.Shed, res.ShedP50, res.ShedP90, res.ShedMax, cpu.Seconds()/elapsed.Seconds())
	// The median shows whether a technician waits behind the flood (before admission
	// control: 2 s); the tail on this shared machine also carries other work, which weighs
	// more on a broker that is busy refusing, hence the wide floor (before: p99 4 s).
	if limit := max(2*up50, up50+10*time.Millisecond); lp50 > limit {
		t.Errorf("technician's CONNECT p50 during the flood %v exceeds %v (unloaded p50 %v)", lp50, limit, up50)
	}
	if limit := max(2*up99, up99+250*time.Millisecond); lp99 > limit {
		t.Errorf("technician's CONNECT p99 during the flood %v exceeds %v (unloaded p99 %v)", lp99, limit, up99)
	}
	if statuses[http.StatusTooManyRequests] == 0 || res.NoRetryAfter > 0 {
		t.Errorf("flood was not shed with 429 + Retry-After: %v, %d without Retry-After", statuses, res.NoRetryAfter)
	}
	// Shed at once: a refusal that needs no slot is answered straight away (the bound is
	// generous for a shared machine; a queued one would take up to 1 s). Later requests on
	// a refused connection first wait out its pause (at most 2 s), queued ones wait at most
	// 1 s for a slot: nothing waits longer.
	if res.Shed == 0 || res.ShedP90 > 250*time.Millisecond {
		t.Errorf("%d refusals shed at once answered in p90 %v: not at once", res.Shed, res.ShedP90)
	}
	if res.BusyMax > 5*time.Second {
		t.Errorf("a 429 took %v: something queued without bound", res.BusyMax)
	}
	for s := range statuses {
		if s != http.StatusProxyAuthRequired && s != http.StatusTooManyRequests {
			t.Errorf("flood got status %d", s)
		}
	}
	refusalLines := env.Proc().CountAfter(mark, func(r testenv.Record) bool { return r.Msg() == "login refused" })
	if refusalLines > 100 {
		t.Errorf("%d refusal log lines for a 20 s flood: not rate-limited", refusalLines)
	}
	for _, line := range env.Proc().Lines() {
		if strings.Contains(line, "floodpw-") || strings.Contains(line, "pass-a") {
			t.Fatalf("a password reached the broker log: %s", line)
		}
	}
}

// TestLockoutAcrossAddresses: spraying one account from several addresses, each below the
// per-address threshold, locks the account: the sprayers' addresses are refused even the
// right password, while the owner from a clean address gets in; three failures from one
// address lock that address only.
func TestLockoutAcrossAddresses(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Extra: map[string]any{
		"limits": map[string]any{"lockout": map[string]any{"account_failures": 6, "account_interval": "1h"}},
	}})
	// 55555 has no agent: an authenticated CONNECT is answered 503, a refused one 407.
	target := env.Host("55555") + ":22"
	try := func(src net.IP, user, pass string) (int, string) {
		l, err := dialFrom(src, env.ProxyAddr, proxyTLS(t, env))
		if err != nil {
			t.Fatal(err)
		}
		defer l.c.Close()
		l.c.SetDeadline(time.Now().Add(15 * time.Second))
		io.WriteString(l.c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n"+basic("Proxy-Authorization", user, pass)+"\r\n")
		resp, err := http.ReadResponse(l.br, &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	want := func(what string, gotStatus int, body string, status int, text string) {
		t.Helper()
		if gotStatus != status || !strings.Contains(body, text) {
			t.Errorf("%s: %d %q, want %d with %q", what, gotStatus, body, status, text)
		}
	}
	for i := range 6 { // two guesses from each of three addresses
		st, body := try(srcAddr(3, i/2), "resb", fmt.Sprint("guess-", i))
		want(fmt.Sprint("guess ", i), st, body, 407, "wrong proxy username or password")
	}
	env.Proc().WaitLog(t, 10*time.Second, func(r testenv.Record) bool {
		return strings.HasPrefix(r.Msg(), "account locked for all addresses") && r.Str("username") == "resb"
	})
	st, body := try(srcAddr(3, 0), "resb", "pass-b")
	want("a sprayer's address with the right password", st, body, 407, "locked")
	st, body = try(srcAddr(3, 100), "resb", "pass-b")
	want("the owner from a clean address", st, body, 503, "offline")
	st, body = try(srcAddr(3, 101), "resb", "guess-x")
	want("a second clean address within account_interval", st, body, 407, "locked")
	st, body = try(srcAddr(3, 100), "resb", "pass-b")
	want("the owner again (cached)", st, body, 503, "offline")

	// Per address: three failures lock resa for that address only.
	for i := range 3 {
		st, body := try(srcAddr(3, 200), "resa", fmt.Sprint("typo-", i))
		want(fmt.Sprint("typo ", i), st, body, 407, "wrong proxy username or password")
	}
	st, body = try(srcAddr(3, 200), "resa", "pass-a")
	want("locked address with the right password", st, body, 407, "locked")
	st, body = try(srcAddr(3, 201), "resa", "pass-a")
	if st == http.StatusProxyAuthRequired {
		t.Errorf("resa from another address: %d %q", st, body)
	}
}

// hmacCustomers builds n customers c0000… with one system se1 each and hmac-sha256 agent
// secrets; it returns the configuration list and the secrets by customer.
func hmacCustomers(t *testing.T, n int) ([]map[string]any, map[string]string) {
	t.Helper()
	conf := make([]map[string]any, 0, n)
	secrets := make(map[string]string, n)
	for i := range n {
		id := fmt.Sprintf("c%04d", i)
		secret, hash, err := config.NewAgentSecret()
		if err != nil {
			t.Fatal(err)
		}
		secrets[id] = secret
		conf = append(conf, map[string]any{"id": id, "systems": []map[string]any{{"name": "se1", "primary": true, "agent_secret_hash": hash}}})
	}
	return conf, secrets
}

// waitOnline waits until the broker has logged every identity in ids as connected at or
// after mark, and returns when the last one did.
func waitOnline(t *testing.T, p *testenv.Proc, mark int, ids map[string]bool, timeout time.Duration) time.Time {
	t.Helper()
	seen := map[string]bool{}
	_, ok := p.FindAfter(mark, timeout, func(r testenv.Record) bool {
		if r.Msg() == "agent connected" && ids[r.Str("identity")] {
			seen[r.Str("identity")] = true
		}
		return len(seen) == len(ids)
	})
	if !ok {
		t.Fatalf("only %d of %d agents online within %v", len(seen), len(ids), timeout)
	}
	return time.Now()
}

// TestAgentReconnectStorm: 2,000 in-process agents with hmac-sha256 secrets log in again
// after a broker restart. The goal is all back within 10 s on the project's 2-core
// machine; the wall-time assertion is looser because the machine is shared (the figure is
// logged), and the broker's CPU per login is asserted instead.
func TestAgentReconnectStorm(t *testing.T) {
	const n = 2000
	customers, secrets := hmacCustomers(t, n)
	env := testenv.Start(t, testenv.Options{Extra: map[string]any{
		"customers": customers,
		"accounts":  []map[string]any{{"username": "resa", "password_hash": testenv.Hash("pass-a"), "customers": []string{"c0000"}}},
		"log":       map[string]any{"level": "info"},
		// Every agent comes from 127.0.0.1 here, unlike a real fleet.
		"limits": map[string]any{"connections": map[string]any{"per_address": 3 * n, "total": 3 * n}},
	}})
	ids := map[string]bool{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	mark := env.Proc().Mark()
	start := time.Now()
	for id, secret := range secrets {
		ids[id+"/se1"] = true
		cfg, err := config.NewAgent(config.Agent{Broker: "https://" + env.WebAddr, CAFile: env.CAFile, ServerName: "admin." + env.Domain,
			Customer: id, System: "se1", Secret: secret, MaxBackoff: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		a, err := tunnel.NewAgent(cfg, slog.New(slog.DiscardHandler), "test")
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { a.Run(ctx) })
	}
	first := waitOnline(t, env.Proc(), mark, ids, 120*time.Second).Sub(start)

	stop := time.Now()
	env.Restart(t)
	started := time.Now()
	cpu0, self0 := brokerCPU(t, env.ConfigPath), selfCPU()
	done := waitOnline(t, env.Proc(), 0, ids, 120*time.Second)
	cpu := brokerCPU(t, env.ConfigPath) - cpu0
	t.Logf("%d hmac agents: first connect %v; after a restart all online %v after SIGTERM, %v after the new broker was up (restart took %v); CPU meanwhile: broker %v (%v a login), agents %v",
		n, first.Round(time.Millisecond), done.Sub(stop).Round(time.Millisecond), done.Sub(started).Round(time.Millisecond),
		started.Sub(stop).Round(time.Millisecond), cpu, cpu/n, selfCPU()-self0)
	// Wall time depends on what else the shared machine runs; the broker's CPU per login
	// does not (a bcrypt cost-12 login alone is about 300 ms).
	if per := cpu / n; per > 10*time.Millisecond {
		t.Errorf("the broker spent %v of CPU per agent login", per)
	}
	if d := done.Sub(started); d > 60*time.Second {
		t.Errorf("%d agents took %v to come back after the broker was up", n, d)
	}
}

// TestGenuineAgentsDuringLoginFlood: while 320 connections send wrong agent secrets (to an
// hmac-sha256 system, to a bcrypt cost-12 system and to unknown systems) from many
// addresses, a genuine agent restarting is online again within 5 s, with an hmac-sha256
// secret and with an old bcrypt secret the broker has verified before.
func TestGenuineAgentsDuringLoginFlood(t *testing.T) {
	fastSecret, fastHash, err := config.NewAgentSecret()
	if err != nil {
		t.Fatal(err)
	}
	slow12, err := config.HashSecret("slow-secret-of-67890")
	if err != nil {
		t.Fatal(err)
	}
	customers := []map[string]any{
		{"id": "12345", "systems": []map[string]any{
			{"name": "se1", "primary": true, "agent_secret_hash": fastHash},
			{"name": "se2", "agent_secret_hash": testenv.Hash(testenv.Secret("12345", "se2"))},
		}},
		{"id": "67890", "systems": []map[string]any{{"name": "se1", "primary": true, "agent_secret_hash": slow12}}},
		{"id": "55555", "systems": []map[string]any{{"name": "se1", "primary": true, "agent_secret_hash": testenv.Hash("x")}}},
	}
	env := testenv.Start(t, testenv.Options{Extra: map[string]any{"customers": customers}})
	fast := env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", Secret: fastSecret})
	slow := env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE2"})

	const floodFor = 20 * time.Second
	mark := env.Proc().Mark()
	flood := startFlood(t, floodSpec{Kind: "agent", Addr: env.WebAddr, ServerName: "admin." + env.Domain, CAFile: env.CAFile,
		Users: []string{"12345/se1", "67890/se1", "99999/nope"}, Workers: 320, Block: 4, Duration: floodFor})
	time.Sleep(5 * time.Second) // the flood runs at full strength before the agents restart
	for _, a := range []struct {
		proc   *testenv.Proc
		agent  testenv.Agent
		system string
	}{
		{fast, testenv.Agent{Customer: "12345", System: "SE1", Secret: fastSecret, NoWait: true}, "se1"},
		{slow, testenv.Agent{Customer: "12345", System: "SE2", NoWait: true}, "se2"},
	} {
		a.proc.Kill()
		<-a.proc.Done()
		m := env.Proc().Mark()
		start := time.Now()
		env.StartAgent(t, a.agent)
		_, ok := env.Proc().FindAfter(m, 5*time.Second, func(r testenv.Record) bool {
			return r.Msg() == "agent connected" && r.Str("identity") == "12345/"+a.system
		})
		if !ok {
			t.Errorf("genuine agent 12345/%s not online within 5 s of its restart during the flood", a.system)
			continue
		}
		t.Logf("genuine agent 12345/%s online %v after its restart, during the flood", a.system, time.Since(start).Round(time.Millisecond))
	}
	res := flood.wait(t)
	t.Logf("flood: %v in %v, %d connections; 503 answered in p50=%v p90=%v max=%v",
		res.Statuses, res.Elapsed.Round(time.Millisecond), res.Dials, res.BusyP50, res.BusyP90, res.BusyMax)
	if res.Statuses[http.StatusServiceUnavailable] == 0 || res.Statuses[http.StatusUnauthorized] == 0 || res.NoRetryAfter > 0 {
		t.Errorf("flood answers %v (%d 503s without Retry-After): want 401s and 503s with Retry-After", res.Statuses, res.NoRetryAfter)
	}
	lines := env.Proc().CountAfter(mark, func(r testenv.Record) bool { return r.Msg() == "agent login refused" })
	if lines > 60 {
		t.Errorf("%d refusal log lines: not rate-limited", lines)
	}
}
