package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/internal/refusal"
	"maintproxy/internal/testenv"
)

// systemJSON fetches a system's access page as JSON and returns its "system" object.
func systemJSON(t *testing.T, env *testenv.Env, customer, system string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+env.WebAddr+"/com/remoteproxy/access/"+customer+"/"+system, nil)
	req.SetBasicAuth("resa", "pass-a")
	req.Header.Set("Accept", "application/json")
	resp, err := env.WebClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		System map[string]any `json:"system"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &page) != nil || page.System == nil {
		t.Fatalf("system page %s/%s: %s %.300s", customer, system, resp.Status, body)
	}
	return page.System
}

// waitJSON waits (up to 10 s) until the system's status satisfies ok and returns how long
// that took.
func waitJSON(t *testing.T, env *testenv.Env, customer, system, what string, ok func(map[string]any) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for i := 0; ; i++ {
		st := systemJSON(t, env, customer, system)
		if ok(st) {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second || i > 2000 {
			t.Fatalf("status of %s/%s never showed %s: %v", customer, system, what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// curlPanel fetches the web control panel of 12345-SE1 through the proxy with curl and
// returns the HTTP status curl saw from the proxy (200 when the page came) and the
// refusal reason.
func curlPanel(t *testing.T, env *testenv.Env) (int, string) {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("curl", "-sS", "--max-time", "20", "-o", filepath.Join(dir, "body"), "-D", filepath.Join(dir, "head"),
		"--proxy", env.ProxyURL(), "--proxy-user", "resa:pass-a", "--proxy-cacert", env.CAFile,
		"--cacert", env.CAFile, "https://12345-SE1.maint."+env.Domain+":7071/login").CombinedOutput()
	head, _ := os.ReadFile(filepath.Join(dir, "head"))
	status, reason := 0, ""
	for _, line := range strings.Split(string(head), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "HTTP/") && status == 0 {
			fmt.Sscan(strings.Fields(line)[1], &status)
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, refusal.Header) {
			reason = strings.TrimSpace(v)
		}
	}
	if status == http.StatusOK && err != nil {
		t.Fatalf("curl: tunnel up but the page failed: %v\n%s", err, out)
	}
	return status, reason
}

// TestAgentSwitchFlipLive: the customer switches remote access off in the agent's file
// (saved as editors do, by rename): an open tunnel ends, curl through the proxy gets the
// customer-settings 403 and the status JSON shows the switch, all without a restart; an
// invalid edit is refused naming the field and the switch stays off; switching it on again
// lets curl through. The agent's audit names the account and the technician's address.
func TestAgentSwitchFlipLive(t *testing.T) {
	testenv.NeedCommands(t, "curl")
	env := testenv.Start(t, testenv.Options{})
	tg := startCoreTargets(t, env)
	a := testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true,
		Services: map[int]string{7071: tg.panel, 7: tg.echo}, ConfigPath: filepath.Join(env.Dir, "se1-agent.yaml")}
	agent := env.StartAgent(t, a)
	if st, _ := curlPanel(t, env); st != http.StatusOK {
		t.Fatalf("curl before the flip: status %d", st)
	}
	rec := agent.WaitLog(t, 10*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "tunnel" && r.Str("target") == tg.panel && r.Str("result") == "ok"
	})
	if host, _, err := net.SplitHostPort(rec.Str("client")); rec.Str("user") != "resa" || err != nil || host != "127.0.0.1" ||
		rec.Num("bytes_to_target") == 0 || rec.Num("bytes_from_target") == 0 || rec.Str("session") == "" {
		t.Errorf("agent audit record incomplete: %v", rec)
	}
	open := env.Connect(t, "resa", "pass-a", "12345-se1.maint."+env.Domain+":7")
	if open.Status != http.StatusOK {
		t.Fatalf("CONNECT: %d %s", open.Status, open.Body)
	}
	assertEcho(t, open.Conn, []byte("before the flip"))
	if st := systemJSON(t, env, "12345", "se1"); st["remote_access"] != true || st["light"] != "green" {
		t.Fatalf("status before the flip: %v", st)
	}

	mark := agent.Mark()
	a.RemoteAccess = false
	flipped := time.Now()
	env.RewriteAgent(t, a)
	agent.WaitLogAfter(t, mark, 5*time.Second, func(r testenv.Record) bool {
		return strings.HasPrefix(r.Msg(), "tunnel ended: the customer's settings no longer allow it")
	})
	open.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := open.Conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("open tunnel not ended by the flip: %d bytes, %v", n, err)
	}
	ended := time.Since(flipped)
	took := waitJSON(t, env, "12345", "se1", "remote access off", func(st map[string]any) bool {
		return st["remote_access"] == false && st["message"] == "Remote operations not allowed"
	})
	if st, reason := curlPanel(t, env); st != http.StatusForbidden || reason != string(refusal.CustomerSettings) {
		t.Fatalf("curl after the flip: status %d, reason %q", st, reason)
	}
	t.Logf("flip to off: open tunnel ended %v after the rename, status JSON followed %v after that", ended.Round(time.Millisecond), took.Round(time.Millisecond))

	// An invalid edit is refused, naming the field; the switch stays off.
	mark = agent.Mark()
	bad := strings.Replace(string(mustRead(t, a.ConfigPath)), `"enabled":false`, `"enabled":true`, 1)
	bad = strings.Replace(bad, `"customer"`, `"network":{"systems":{"se2":"192.168.1.300"}},"customer"`, 1)
	if err := os.WriteFile(a.ConfigPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	refused := agent.WaitLogAfter(t, mark, 5*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "configuration edit refused; the previous settings stay in force"
	})
	if !strings.Contains(refused.Str("err"), "network.systems[se2]") {
		t.Errorf("refusal does not name the field: %v", refused)
	}
	if st, reason := curlPanel(t, env); st != http.StatusForbidden || reason != string(refusal.CustomerSettings) {
		t.Fatalf("curl after the invalid edit: status %d, reason %q (the old policy must stay)", st, reason)
	}

	a.RemoteAccess = true
	env.RewriteAgent(t, a)
	waitJSON(t, env, "12345", "se1", "remote access on", func(st map[string]any) bool {
		return st["remote_access"] == true && st["light"] == "green"
	})
	if st, _ := curlPanel(t, env); st != http.StatusOK {
		t.Fatalf("curl after flipping back: status %d", st)
	}
}

// TestSecondaryThroughPrimary: SE2 has no agent of its own; the primary's agent lists it
// in network.systems, and a CONNECT to 12345-SE2 is carried through it to SE2's address
// (8 MiB both ways, intact). The status shows SE2 reached through SE1; with the primary's
// remote access off the CONNECT is refused with the customer-settings answer. Once SE2
// runs its own agent, that agent carries SE2's tunnels.
func TestSecondaryThroughPrimary(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	se2 := testenv.StartEcho(t, "127.0.0.10:0")
	_, port, _ := net.SplitHostPort(se2)
	var p int
	fmt.Sscan(port, &p)
	closed := testenv.RefusedAddr(t, "127.0.0.1")
	a := testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true,
		Services: map[int]string{p: closed}, Network: map[string]string{"SE2": "127.0.0.10"},
		ConfigPath: filepath.Join(env.Dir, "se1-agent.yaml")}
	primary := env.StartAgent(t, a)
	target := fmt.Sprintf("12345-SE2.maint.%s:%d", env.Domain, p)

	waitJSON(t, env, "12345", "se2", "se2 through se1", func(st map[string]any) bool {
		return st["via"] == "se1" && st["online"] == true && st["remote_access"] == true
	})
	mark := env.Proc().Mark()
	r := env.Connect(t, "resa", "pass-a", target)
	if r.Status != http.StatusOK {
		t.Fatalf("CONNECT to the secondary: %d %s", r.Status, r.Body)
	}
	const size = 8 << 20
	r.Conn.SetDeadline(time.Now().Add(60 * time.Second))
	sent := make(chan [32]byte, 1)
	go func() { sent <- sendRandom(r.Conn, size, 12) }()
	h := sha256.New()
	if n, err := io.CopyN(h, r.Conn, size); err != nil {
		t.Fatalf("echo through the primary: %d of %d bytes: %v", n, size, err)
	}
	if got := <-sent; string(h.Sum(nil)) != string(got[:]) {
		t.Fatal("the secondary's echo came back altered")
	}
	r.Conn.Close()
	rec := env.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "tunnel" && r.Str("result") == "ok"
	})
	if rec.Str("system") != "se2" || rec.Str("through") != "se1" {
		t.Errorf("broker audit: %v", rec)
	}
	arec := primary.WaitLog(t, 10*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "tunnel" && r.Str("system") == "se2" && r.Str("result") == "ok"
	})
	if arec.Str("target") != se2 || arec.Str("user") != "resa" || arec.Num("bytes_from_target") != size {
		t.Errorf("agent audit: %v", arec)
	}

	a.RemoteAccess = false
	env.RewriteAgent(t, a)
	waitJSON(t, env, "12345", "se2", "the primary's switch off", func(st map[string]any) bool {
		return st["via"] == "se1" && st["remote_access"] == false
	})
	r = env.Connect(t, "resa", "pass-a", target)
	if r.Status != http.StatusForbidden || r.Header.Get(refusal.Header) != string(refusal.CustomerSettings) ||
		!strings.Contains(r.Body, "remote access is disabled") {
		t.Fatalf("CONNECT with the primary's remote access off: %d %s %s", r.Status, r.Header.Get(refusal.Header), r.Body)
	}

	// SE2's own agent wins over the primary's (whose switch is still off).
	own := env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE2", RemoteAccess: true,
		Services: map[int]string{p: testenv.StartEcho(t, "127.0.0.1:0")}})
	r = env.Connect(t, "resa", "pass-a", target)
	if r.Status != http.StatusOK {
		t.Fatalf("CONNECT to a secondary with its own agent: %d %s", r.Status, r.Body)
	}
	assertEcho(t, r.Conn, []byte("own agent"))
	r.Conn.Close() // the agent's audit record is written when the tunnel ends
	own.WaitLog(t, 10*time.Second, func(r testenv.Record) bool { return r.Msg() == "tunnel" && r.Str("result") == "ok" })
	if st := systemJSON(t, env, "12345", "se2"); st["via"] != nil {
		t.Errorf("a secondary with its own agent shown as reached through another: %v", st)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestSSHToSecondaryThroughPrimary: OpenSSH with proxytunnel as ProxyCommand reaches the
// sshd of secondary SE2, which has no agent: the primary's agent (network.systems) dials
// SE2's address on the port asked for. A restart-only setting changed in the agent's file
// is named in the agent's log while the switches still apply.
func TestSSHToSecondaryThroughPrimary(t *testing.T) {
	testenv.NeedCommands(t, "ssh", "proxytunnel")
	env := testenv.Start(t, testenv.Options{})
	sshd := testenv.StartSSHD(t)
	_, port, _ := net.SplitHostPort(sshd.Addr)
	var p int
	fmt.Sscan(port, &p)
	a := testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true,
		Services: map[int]string{p: testenv.RefusedAddr(t, "127.0.0.1")}, Network: map[string]string{"SE2": "127.0.0.1"},
		ConfigPath: filepath.Join(env.Dir, "se1-agent.yaml")}
	agent := env.StartAgent(t, a)
	ssh := func() ([]byte, error) {
		pc := fmt.Sprintf("proxytunnel -q -E -p %s -d %%h:%%p -P resa:pass-a -C %s", env.ProxyAddr, env.CAFile)
		return exec.Command("ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "-i", sshd.KeyFile, "-o", "ProxyCommand="+pc,
			"-p", port, "root@12345-SE2.maint."+env.Domain, "echo se2-$((6*7))").CombinedOutput()
	}
	if out, err := ssh(); err != nil || !strings.Contains(string(out), "se2-42") {
		t.Fatalf("ssh to the secondary through the primary: %v\n%s", err, out)
	}
	agent.WaitLog(t, 10*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "tunnel" && r.Str("system") == "se2" && r.Str("target") == sshd.Addr && r.Str("user") == "resa"
	})

	mark := agent.Mark()
	a.RemoteAccess, a.MaxBackoff = false, 3*time.Second
	a.Secret = "a-secret-the-broker-does-not-know-yet"
	testenv.NoteSecret(a.Secret)
	env.RewriteAgent(t, a)
	warn := agent.WaitLogAfter(t, mark, 5*time.Second, func(r testenv.Record) bool {
		return strings.HasPrefix(r.Msg(), "these settings changed but apply only after a restart")
	})
	if fmt.Sprint(warn["fields"]) != "[secret]" {
		t.Errorf("restart warning names %v, want [secret]", warn["fields"])
	}
	bmark := env.Proc().Mark()
	if out, err := ssh(); err == nil {
		t.Fatalf("ssh to the secondary with the primary's remote access off succeeded:\n%s", out)
	}
	env.Proc().WaitLogAfter(t, bmark, 10*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "tunnel" && r.Str("result") == "refused" && r.Num("status") == http.StatusForbidden &&
			strings.Contains(r.Str("reason"), "remote access is disabled")
	})
}
