package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/refusal"
	"maintproxy/internal/testenv"
)

// coreTargets are the stand-in servers of customer 12345's network.
type coreTargets struct {
	panel     string // HTTPS "web control panel"
	echo      string // TCP echo on the server itself
	coloEcho  string // co-located echo at 127.0.0.9
	closed    string // a loopback port nobody listens on
	coloPort  int
	panelText string
}

func startCoreTargets(t *testing.T, env *testenv.Env) coreTargets {
	t.Helper()
	tg := coreTargets{panelText: "web control panel of 12345-SE1"}
	cert := env.TargetCert(t, "12345-se1.maint."+env.Domain, "12345.maint."+env.Domain)
	tg.panel = testenv.StartHTTPS(t, "127.0.0.1:0", cert, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, tg.panelText)
	}))
	tg.echo = testenv.StartEcho(t, "127.0.0.1:0")
	tg.coloEcho = testenv.StartEcho(t, "127.0.0.9:0")
	_, p, _ := net.SplitHostPort(tg.coloEcho)
	fmt.Sscan(p, &tg.coloPort)
	tg.closed = testenv.RefusedAddr(t, "127.0.0.1")
	return tg
}

func startCoreAgents(t *testing.T, env *testenv.Env, tg coreTargets) {
	t.Helper()
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true,
		Services: map[int]string{7071: tg.panel, 7: tg.echo, 23: tg.closed}})
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE2", RemoteAccess: true, Colocated: true,
		Services: map[int]string{7: tg.echo},
		Tunnels:  []config.Tunnel{{Application: "TELNET", IP: "127.0.0.9", Port: tg.coloPort}}})
}

// TestCurlThroughAgent fetches an HTTPS page behind a real agent with curl as the client,
// and checks the tunnel's audit record.
func TestCurlThroughAgent(t *testing.T) {
	testenv.NeedCommands(t, "curl")
	env := testenv.Start(t, testenv.Options{})
	tg := startCoreTargets(t, env)
	startCoreAgents(t, env, tg)
	mark := env.Proc().Mark()
	out, err := exec.Command("curl", "-sS", "--fail-with-body", "--max-time", "20",
		"--proxy", env.ProxyURL(), "--proxy-user", "resa:pass-a", "--proxy-cacert", env.CAFile,
		"--cacert", env.CAFile, "https://12345-SE1.maint."+env.Domain+":7071/login").CombinedOutput()
	if err != nil || !strings.Contains(string(out), tg.panelText) {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	rec := env.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "tunnel" && r.Str("result") == "ok"
	})
	if rec.Str("account") != "resa" || rec.Str("customer") != "12345" || rec.Str("system") != "se1" ||
		rec.Str("target") != "12345-se1:7071" || rec.Num("bytes_up") == 0 || rec.Num("bytes_down") == 0 || rec.Str("client") == "" {
		t.Errorf("audit record incomplete: %v", rec)
	}
	for _, line := range env.Proc().Lines() {
		if strings.Contains(line, "pass-a") || strings.Contains(line, testenv.Secret("12345", "se1")) {
			t.Errorf("a secret leaked into the broker log: %s", line)
		}
	}
}

// TestSSHThroughProxytunnel runs a command over OpenSSH with proxytunnel as ProxyCommand,
// into a real sshd behind the agent.
func TestSSHThroughProxytunnel(t *testing.T) {
	testenv.NeedCommands(t, "ssh", "proxytunnel")
	env := testenv.Start(t, testenv.Options{})
	sshd := testenv.StartSSHD(t)
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{22: sshd.Addr}})
	pc := fmt.Sprintf("proxytunnel -q -E -p %s -d %%h:%%p -P resa:pass-a -C %s", env.ProxyAddr, env.CAFile)
	out, err := exec.Command("ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "-i", sshd.KeyFile, "-o", "ProxyCommand="+pc,
		"root@12345.maint."+env.Domain, "echo via-$((6*7))").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "via-42") {
		t.Fatalf("ssh through proxytunnel: %v\n%s", err, out)
	}
}

// TestColocatedThroughTunnelEntry reaches a co-located server (127.0.0.9) through SE2.
func TestColocatedThroughTunnelEntry(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	tg := startCoreTargets(t, env)
	startCoreAgents(t, env, tg)
	r := env.Connect(t, "resa", "pass-a", fmt.Sprintf("12345-se2-127.0.0.9.maint.%s:%d", env.Domain, tg.coloPort))
	if r.Status != http.StatusOK {
		t.Fatalf("CONNECT: %d %s", r.Status, r.Body)
	}
	assertEcho(t, r.Conn, []byte("co-located hello"))
}

// TestFailureTable asserts every row of the failure mapping by status and body.
func TestFailureTable(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	tg := startCoreTargets(t, env)
	startCoreAgents(t, env, tg)
	env.StartAgent(t, testenv.Agent{Customer: "55555", System: "SE1", RemoteAccess: false})

	// A listener that must never be dialled: the proxy is not an open proxy.
	var dialled atomic.Int32
	trap := testenv.StartTCP(t, "127.0.0.1:0", func(net.Conn) { dialled.Add(1) })
	timeoutTarget := testenv.UnansweredAddr(t)
	d := env.Domain
	rows, reasons := failureRows(d, trap, tg.coloPort)
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			r := env.Request(t, row.user, row.pass, row.method, row.target)
			if r.Status != row.status || !strings.Contains(r.Body, row.body) {
				t.Errorf("got %d %q; want %d containing %q", r.Status, r.Body, row.status, row.body)
			}
			if got, want := r.Header.Get(refusal.Header), reasons[row.name]; got != string(want) || want == "" {
				t.Errorf("%s: %q, want %q", refusal.Header, got, want)
			}
			if r.Status == 407 && r.Header.Get("Proxy-Authenticate") != `Basic realm="maint.`+d+`"` {
				t.Errorf("407 without the Basic challenge: %q", r.Header.Get("Proxy-Authenticate"))
			}
		})
	}
	if n := dialled.Load(); n != 0 {
		t.Errorf("the proxy dialled a raw address %d times", n)
	}

	t.Run("target timed out", func(t *testing.T) {
		// The agent's dial timeout is 3 s in tests; the target is a loopback socket whose
		// accept queue is full, so SYNs go unanswered.
		env.StartAgent(t, testenv.Agent{Customer: "67890", System: "SE1", RemoteAccess: true, Services: map[int]string{443: timeoutTarget}})
		r := env.Connect(t, "resa", "pass-a", "67890.maint."+d+":443")
		if r.Status != http.StatusGatewayTimeout || !strings.Contains(r.Body, "did not answer in time") {
			t.Errorf("got %d %q; want 504", r.Status, r.Body)
		}
		if got := r.Header.Get(refusal.Header); got != string(refusal.TargetTimeout) {
			t.Errorf("%s: %q, want %q", refusal.Header, got, refusal.TargetTimeout)
		}
	})

	t.Run("system went offline", func(t *testing.T) {
		agent := env.StartAgent(t, testenv.Agent{Customer: "55555", System: "SE1", RemoteAccess: true})
		mark := env.Proc().Mark()
		agent.Kill()
		env.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool {
			return r.Msg() == "agent disconnected" && r.Str("identity") == "55555/se1"
		})
		r := env.Connect(t, "resb", "pass-b", "55555.maint."+d+":22")
		if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "offline since") {
			t.Errorf("got %d %q; want 503 offline since", r.Status, r.Body)
		}
	})

	t.Run("session limit", func(t *testing.T) {
		mark := env.Proc().Mark()
		env.WriteConfig(t, func(c map[string]any) { c["limits"] = map[string]any{"per_system": 2} })
		env.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool { return r.Msg() == "configuration reloaded" })
		for i := 0; i < 2; i++ {
			if r := env.Connect(t, "resa", "pass-a", "12345.maint."+d+":7"); r.Status != 200 {
				t.Fatalf("tunnel %d: %d %s", i, r.Status, r.Body)
			}
		}
		r := env.Connect(t, "resa", "pass-a", "12345.maint."+d+":7")
		if r.Status != http.StatusTooManyRequests || !strings.Contains(r.Body, "too many open tunnels") {
			t.Errorf("got %d %q; want 429", r.Status, r.Body)
		}
	})
}

// TestProxyOffersOnlyHTTP1: a client offering h2 (as Chromium does) gets HTTP/1.1.
func TestProxyOffersOnlyHTTP1(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	c, err := tls.Dial("tcp", env.ProxyAddr, &tls.Config{RootCAs: env.CAPool(t), ServerName: "maint." + env.Domain, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("negotiated %q", p)
	}
}

// TestAgentIdentity: a wrong secret is refused, and a secret cannot claim another system.
func TestAgentIdentity(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	for _, a := range []testenv.Agent{
		{Customer: "12345", System: "SE1", Secret: "wrong"},
		{Customer: "55555", System: "SE1", Secret: testenv.Secret("12345", "SE1")},
		{Customer: "12345", System: "SE7", Secret: testenv.Secret("12345", "SE1")},
	} {
		mark := env.Proc().Mark()
		a.NoWait = true
		agent := env.StartAgent(t, a)
		env.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool {
			return r.Msg() == "agent login refused" && r.Str("identity") == strings.ToLower(a.Customer+"/"+a.System)
		})
		agent.WaitLog(t, 10*time.Second, func(r testenv.Record) bool {
			return strings.Contains(r.Str("reason"), "refused this agent's customer/system/secret")
		})
		if _, ok := env.Proc().FindAfter(mark, 0, func(r testenv.Record) bool { return r.Msg() == "agent connected" }); ok {
			t.Errorf("agent %s/%s with a foreign secret got connected", a.Customer, a.System)
		}
		agent.Kill()
	}
}

// TestAgentKilledMidTransfer: the technician's connection ends promptly, it does not hang.
func TestAgentKilledMidTransfer(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	source := testenv.StartSource(t, "127.0.0.1:0")
	agent := env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{9: source}})
	r := env.Connect(t, "resa", "pass-a", "12345.maint."+env.Domain+":9")
	if r.Status != 200 {
		t.Fatalf("CONNECT: %d %s", r.Status, r.Body)
	}
	if _, err := io.ReadFull(r.Conn, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	agent.Kill()
	// Generous bound: a hang is what fails; prompt is well under a second.
	r.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err := io.Copy(io.Discard, r.Conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the client's connection hung after the agent died")
	}
}

// TestBrokerRestart: after a broker restart the agent is back and serving.
func TestBrokerRestart(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	tg := startCoreTargets(t, env)
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{7: tg.echo}})
	env.Restart(t)
	env.WaitAgent(t, "12345", "SE1", 0)
	r := env.Connect(t, "resa", "pass-a", "12345.maint."+env.Domain+":7")
	if r.Status != 200 {
		t.Fatalf("CONNECT after restart: %d %s", r.Status, r.Body)
	}
	assertEcho(t, r.Conn, []byte("after restart"))
}

// TestIntegrity256MiB moves 256 MiB of random bytes each way through one tunnel at once.
func TestIntegrity256MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 512 MiB")
	}
	const size = 256 << 20
	env := testenv.Start(t, testenv.Options{})
	type sums struct{ got, sent [32]byte }
	results := make(chan sums, 1)
	target := testenv.StartTCP(t, "127.0.0.1:0", func(c net.Conn) {
		var s sums
		done := make(chan struct{})
		go func() { s.sent = sendRandom(c, size, 2); close(done) }()
		h := sha256.New()
		io.Copy(h, io.LimitReader(c, size))
		<-done
		copy(s.got[:], h.Sum(nil))
		results <- s
	})
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{5001: target}})
	r := env.Connect(t, "resa", "pass-a", "12345.maint."+env.Domain+":5001")
	if r.Status != 200 {
		t.Fatalf("CONNECT: %d %s", r.Status, r.Body)
	}
	sentDone := make(chan [32]byte, 1)
	go func() { sentDone <- sendRandom(r.Conn, size, 1) }()
	h := sha256.New()
	if n, err := io.Copy(h, io.LimitReader(r.Conn, size)); err != nil || n != size {
		t.Fatalf("received %d of %d bytes: %v", n, size, err)
	}
	var got [32]byte
	copy(got[:], h.Sum(nil))
	sent := <-sentDone
	s := <-results
	if s.got != sent {
		t.Errorf("upload corrupted: target got %x, client sent %x", s.got, sent)
	}
	if got != s.sent {
		t.Errorf("download corrupted: client got %x, target sent %x", got, s.sent)
	}
}

// TestHalfClose: a client that half-closes after sending still receives the full reply.
func TestHalfClose(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	tg := startCoreTargets(t, env)
	startCoreAgents(t, env, tg)
	r := env.Connect(t, "resa", "pass-a", "12345.maint."+env.Domain+":7")
	if r.Status != 200 {
		t.Fatalf("CONNECT: %d %s", r.Status, r.Body)
	}
	msg := make([]byte, 3<<20)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	go func() {
		r.Conn.Write(msg)
		// On TLS, CloseWrite sends close_notify and keeps reading.
		r.Conn.(*tls.Conn).CloseWrite()
	}()
	r.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(r.Conn)
	if err != nil || len(got) != len(msg) || sha256.Sum256(got) != sha256.Sum256(msg) {
		t.Fatalf("after half-close got %d of %d bytes (err %v)", len(got), len(msg), err)
	}
}

func assertEcho(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// TestAccountEditAppliesWithoutRestart: a password change and a removed customer take
// effect on the running broker; an invalid edit is refused and changes nothing.
func TestAccountEditAppliesWithoutRestart(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	tg := startCoreTargets(t, env)
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{7: tg.echo}})
	target := "12345.maint." + env.Domain + ":7"
	if r := env.Connect(t, "resa", "pass-a", target); r.Status != 200 {
		t.Fatalf("before: %d %s", r.Status, r.Body)
	}
	reload := func(edit func(map[string]any)) string {
		mark := env.Proc().Mark()
		env.WriteConfig(t, edit)
		r := env.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool {
			return r.Msg() == "configuration reloaded" || r.Msg() == "configuration change rejected; keeping the previous one"
		})
		return r.Msg() + " " + r.Str("err")
	}
	accounts := func(c map[string]any) []map[string]any { return c["accounts"].([]map[string]any) }
	if got := reload(func(c map[string]any) { accounts(c)[0]["password_hash"] = testenv.Hash("changed") }); !strings.HasPrefix(got, "configuration reloaded") {
		t.Fatal(got)
	}
	if r := env.Connect(t, "resa", "pass-a", target); r.Status != 407 {
		t.Errorf("old password after the change: %d", r.Status)
	}
	if r := env.Connect(t, "resa", "changed", target); r.Status != 200 {
		t.Errorf("new password: %d %s", r.Status, r.Body)
	}
	got := reload(func(c map[string]any) { accounts(c)[0]["customers"] = []string{"nope"} })
	if !strings.Contains(got, "accounts[0].customers[0]") {
		t.Fatalf("invalid edit: %s", got)
	}
	if r := env.Connect(t, "resa", "changed", target); r.Status != 200 {
		t.Errorf("after a rejected edit: %d %s", r.Status, r.Body)
	}
	reload(func(c map[string]any) { accounts(c)[0]["customers"] = []string{"67890"} })
	if r := env.Connect(t, "resa", "changed", target); r.Status != 403 {
		t.Errorf("customer removed from the account: %d %s", r.Status, r.Body)
	}
}

// failureRow is one row of the failure table: a request and what the technician sees.
type failureRow struct {
	name, user, pass, method, target string
	status                           int
	body                             string
}

// failureRows is the failure table for domain d, with trap a raw address that must never
// be dialled and coloPort the co-located echo's port, and the reason each row carries.
// The cluster tests run it through a second broker.
func failureRows(d, trap string, coloPort int) ([]failureRow, map[string]refusal.Reason) {
	rows := []failureRow{
		{"no credentials", "", "", "CONNECT", "12345.maint." + d + ":7", 407, "proxy authentication required"},
		{"wrong password", "resa", "nope", "CONNECT", "12345.maint." + d + ":7", 407, "wrong proxy username or password"},
		{"unknown user", "mallory", "pass-a", "CONNECT", "12345.maint." + d + ":7", 407, "wrong proxy username or password"},
		{"no credentials, raw IP", "", "", "CONNECT", trap, 407, "proxy authentication required"},
		{"no credentials, plain HTTP", "", "", "GET", "http://12345.maint." + d + "/", 407, "proxy authentication required"},
		{"no credentials, malformed", "", "", "CONNECT", "12345-.maint." + d + ":22", 407, "proxy authentication required"},
		{"plain HTTP proxying", "resa", "pass-a", "GET", "http://12345.maint." + d + "/", 405, "only CONNECT tunnels are supported"},
		{"raw loopback IP", "resa", "pass-a", "CONNECT", trap, 403, "not an open proxy"},
		{"raw IP port 22", "resa", "pass-a", "CONNECT", "127.0.0.1:22", 403, "not an open proxy"},
		{"other domain", "resa", "pass-a", "CONNECT", "www.example.org:443", 403, "not an open proxy"},
		{"look-alike domain", "resa", "pass-a", "CONNECT", "12345.maint." + d + ".evil.com:443", 403, "not an open proxy"},
		{"malformed name", "resa", "pass-a", "CONNECT", "12345-.maint." + d + ":22", 400, "<customer-id>[-<system-name>][-<co-located-server-ipv4>].maint." + d},
		{"bad IPv4", "resa", "pass-a", "CONNECT", "12345-10.0.0.256.maint." + d + ":22", 400, "not an IPv4 address"},
		{"co-located address names no server", "resa", "pass-a", "CONNECT", "12345-0.0.0.0.maint." + d + ":22", 400, "co-located address 0.0.0.0 names no server"},
		{"port out of range", "resa", "pass-a", "CONNECT", "12345.maint." + d + ":70000", 400, "port"},
		{"other reseller's customer", "resb", "pass-b", "CONNECT", "12345.maint." + d + ":7", 403, "customer not found for this proxy account"},
		{"unknown customer", "resa", "pass-a", "CONNECT", "99999.maint." + d + ":7", 403, "customer not found for this proxy account"},
		{"unknown system", "resa", "pass-a", "CONNECT", "12345-se9.maint." + d + ":7", 403, "no system"},
		{"system never connected", "resa", "pass-a", "CONNECT", "67890.maint." + d + ":7", 503, "has not connected"},
		{"remote access off", "resb", "pass-b", "CONNECT", "55555.maint." + d + ":22", 403, "remote access is disabled"},
		{"port not offered", "resa", "pass-a", "CONNECT", "12345.maint." + d + ":3389", 403, "not offered"},
		{"co-located off", "resa", "pass-a", "CONNECT", "12345-se1-127.0.0.9.maint." + d + fmt.Sprintf(":%d", coloPort), 403, "co-located server access is disabled"},
		{"no tunnel entry", "resa", "pass-a", "CONNECT", "12345-se2-127.0.0.10.maint." + d + ":22", 403, "no TCP tunnel entry"},
		{"target refused", "resa", "pass-a", "CONNECT", "12345.maint." + d + ":23", 502, "refused the connection"},
	}
	// The machine-readable reason each row carries (README's failure table).
	reasons := map[string]refusal.Reason{
		"no credentials":                     refusal.NoCredentials,
		"no credentials, raw IP":             refusal.NoCredentials,
		"no credentials, plain HTTP":         refusal.NoCredentials,
		"no credentials, malformed":          refusal.NoCredentials,
		"wrong password":                     refusal.BadCredentials,
		"unknown user":                       refusal.BadCredentials,
		"plain HTTP proxying":                refusal.NotConnect,
		"raw loopback IP":                    refusal.NotMaintenance,
		"raw IP port 22":                     refusal.NotMaintenance,
		"other domain":                       refusal.NotMaintenance,
		"look-alike domain":                  refusal.NotMaintenance,
		"malformed name":                     refusal.Malformed,
		"bad IPv4":                           refusal.Malformed,
		"port out of range":                  refusal.Malformed,
		"co-located address names no server": refusal.Malformed,
		"other reseller's customer":          refusal.UnknownCustomer,
		"unknown customer":                   refusal.UnknownCustomer,
		"unknown system":                     refusal.UnknownSystem,
		"system never connected":             refusal.Offline,
		"remote access off":                  refusal.CustomerSettings,
		"port not offered":                   refusal.CustomerSettings,
		"co-located off":                     refusal.CustomerSettings,
		"no tunnel entry":                    refusal.CustomerSettings,
		"target refused":                     refusal.TargetFailed,
	}
	return rows, reasons
}
