package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/internal/testenv"
)

const alicePass = "Alice-pass-1"

// people runs `maintproxy <args>` against the test broker's configuration, with stdin.
func (c *clientsEnv) maintproxy(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	args = append(args, "--config", c.env.ConfigPath)
	return c.run(t, strings.NewReader(stdin), testenv.BinPath(t, "maintproxy"), args...)
}

func (c *clientsEnv) mustMaintproxy(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := c.maintproxy(t, stdin, args...)
	if err != nil {
		t.Fatalf("maintproxy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestPersonalLogins: people added with `maintproxy people add` (through the running
// broker's socket) log in with proxytunnel and with a `maint login` token, by name in the
// audit; a read-only person gets 403 from curl; disabling a person ends their open ssh
// session; with the broker stopped the commands open the store themselves; the store
// survives the restart and a backup restores what it held, a bad file changing nothing.
func TestPersonalLogins(t *testing.T) {
	testenv.NeedCommands(t, "curl")
	c := startClientsEnv(t)
	for _, u := range []string{"alice", "ro"} {
		testenv.NoteCredentials(u, alicePass)
	}
	c.mustMaintproxy(t, alicePass+"\n", "people", "add", "alice", "--org", "resa", "--role", "operator", "--name", "Alice A")
	c.mustMaintproxy(t, alicePass+"\n", "people", "add", "ro", "--org", "resa", "--role", "readonly")
	if out, err := c.maintproxy(t, "short\n", "people", "add", "bob", "--org", "resa"); err == nil || !strings.Contains(out, "9 to 31 characters") {
		t.Errorf("a short password was accepted: %v %s", err, out)
	}
	host := "12345-SE1.maint." + c.env.Domain
	proxytunnel := func(user, pass string) string {
		return fmt.Sprintf("proxytunnel -q -E -p %s -d %%h:%%p -P '%s:%s' -C %s", c.env.ProxyAddr, user, pass, c.env.CAFile)
	}
	audit := func(mark int, person, login string) testenv.Record {
		return c.env.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool {
			return r.Str("log") == "audit" && r.Str("person") == person && r.Str("login") == login && r.Str("result") == "ok"
		})
	}

	mark := c.env.Proc().Mark()
	out, err := c.run(t, nil, "ssh", append(c.sshArgs(proxytunnel("alice", alicePass)), "root@"+host, "echo ssh-$((40+2))")...)
	if err != nil || !strings.Contains(out, "ssh-42") {
		t.Fatalf("ssh through proxytunnel as alice: %v\n%s", err, out)
	}
	if rec := audit(mark, "alice", "password"); rec.Str("org") != "resa" || rec.Str("account") != "resa" {
		t.Errorf("audit record %v: want org and account resa", rec)
	}

	// maint login: a token, and no password in the stored file.
	out, err = c.run(t, strings.NewReader(alicePass+"\n"), c.maint, "login", "--proxy", c.env.ProxyAddr, "--web", c.env.WebAddr,
		"-P", "alice", "-C", c.env.CAFile)
	if err != nil || !strings.Contains(out, "token valid until") {
		t.Fatalf("maint login: %v\n%s", err, out)
	}
	stored, _ := os.ReadFile(c.cfgPath)
	if strings.Contains(string(stored), alicePass) || !strings.Contains(string(stored), `"token_user": "alice+token"`) {
		t.Fatalf("stored settings hold the password or no token:\n%s", stored)
	}
	if st, _ := os.Stat(c.cfgPath); st.Mode().Perm() != 0o600 {
		t.Errorf("settings file mode %v", st.Mode().Perm())
	}
	mark = c.env.Proc().Mark()
	out, err = c.run(t, nil, "ssh", append(c.sshArgs(c.maint+" connect %h:%p"), "root@"+host, "echo token-$((40+2))")...)
	if err != nil || !strings.Contains(out, "token-42") {
		t.Fatalf("ssh through maint connect with the token: %v\n%s", err, out)
	}
	audit(mark, "alice", "token")

	// Read-only: curl's CONNECT is refused with 403 and the role reason.
	out, _ = c.run(t, nil, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_connect}", "--max-time", "20",
		"--proxy", "https://"+c.env.ProxyAddr, "--proxy-cacert", c.env.CAFile, "--proxy-user", "ro:"+alicePass,
		"https://"+host+":22/")
	if !strings.HasSuffix(strings.TrimSpace(out), "403") {
		t.Errorf("curl as the read-only person: CONNECT answered %q, want 403", out)
	}

	// Disabling alice ends her open session (a token one) within a second or so.
	cmd := exec.Command("ssh", append(c.sshArgs(c.maint+" connect %h:%p"), "root@"+host, "echo started; sleep 60")...)
	cmd.Env = c.environ
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	started := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		started <- sc.Scan() && sc.Text() == "started"
		for sc.Scan() {
		}
		exited <- cmd.Wait()
	}()
	select {
	case ok := <-started:
		if !ok {
			t.Fatal("the long ssh session did not start")
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the long ssh session did not start in 20s")
	}
	mark = c.env.Proc().Mark()
	before := time.Now()
	c.mustMaintproxy(t, "", "people", "disable", "alice")
	disabled := time.Now()
	select {
	case <-exited:
		// The cut happens before the command's answer: the store's change is applied first.
		t.Logf("alice's ssh session ended %v after `people disable` returned (%v after it started)",
			time.Since(disabled).Round(time.Millisecond), time.Since(before).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("alice's ssh session still runs 10s after she was disabled")
	}
	rec := c.env.Proc().WaitLogAfter(t, mark, 5*time.Second, func(r testenv.Record) bool {
		return r.Str("person") == "alice" && strings.HasPrefix(r.Str("end"), "revoked")
	})
	t.Logf("audit of the cut tunnel: end=%q duration_ms=%v", rec.Str("end"), rec.Num("duration_ms"))
	out, err = c.run(t, nil, "ssh", append(c.sshArgs(c.maint+" connect %h:%p"), "root@"+host, "true")...)
	if err == nil {
		t.Errorf("a disabled person's token still works:\n%s", out)
	}

	// The broker stopped: the commands open the store file themselves.
	c.env.Proc().Stop(t)
	list := c.mustMaintproxy(t, "", "people", "list")
	if !strings.Contains(list, "alice") || !strings.Contains(list, "disabled") || !strings.Contains(list, "ro ") {
		t.Fatalf("people list with the broker stopped:\n%s", list)
	}
	backup := filepath.Join(t.TempDir(), "people-backup.json")
	c.mustMaintproxy(t, "", "backup", "--out", backup)
	c.mustMaintproxy(t, "", "people", "delete", "ro")
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"format":"maintproxy-people-backup","version":1,"buckets":{"people":{"x":{"username":"y"}}}}`), 0o600)
	if out, err := c.maintproxy(t, "", "restore", "--in", bad); err == nil || !strings.Contains(out, "not a valid people backup") {
		t.Errorf("restore of a bad file: %v %s", err, out)
	}
	if l := c.mustMaintproxy(t, "", "people", "list"); strings.Contains(l, "ro ") {
		t.Errorf("a refused restore changed the store:\n%s", l)
	}

	// Restarted, the broker serves the same store; the backup brings ro back.
	c.env.Restart(t)
	c.env.WaitAgent(t, "12345", "SE1", 0) // a new broker process: its log starts afresh
	c.mustMaintproxy(t, "", "restore", "--in", backup)
	if l := c.mustMaintproxy(t, "", "people", "list"); l != list {
		t.Errorf("after restore:\n%s\nwant:\n%s", l, list)
	}
	c.mustMaintproxy(t, "", "people", "enable", "alice")
	out, err = c.run(t, nil, "ssh", append(c.sshArgs(proxytunnel("alice", alicePass)), "root@"+host, "echo back-$((40+2))")...)
	if err != nil || !strings.Contains(out, "back-42") {
		t.Fatalf("alice after the restart and enable: %v\n%s", err, out)
	}
}

// TestDistributorReach: a distributor's person reaches its reseller's customer and not
// another distributor's reseller's.
func TestDistributorReach(t *testing.T) {
	c := startClientsEnv(t)
	mark := c.env.Proc().Mark()
	c.env.WriteConfig(t, func(conf map[string]any) {
		accts := conf["accounts"].([]map[string]any)
		hash := accts[0]["password_hash"]
		accts[0]["parent"] = "dist1"
		accts[1]["parent"] = "dist2"
		conf["accounts"] = append(accts, map[string]any{"username": "dist1", "password_hash": hash},
			map[string]any{"username": "dist2", "password_hash": hash})
	})
	c.env.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool { return r.Msg() == "configuration reloaded" })
	testenv.NoteCredentials("dave", alicePass)
	testenv.NoteCredentials("erin", alicePass)
	c.mustMaintproxy(t, alicePass+"\n", "people", "add", "dave", "--org", "dist1")
	c.mustMaintproxy(t, alicePass+"\n", "people", "add", "erin", "--org", "dist2")
	host := "12345-SE1.maint." + c.env.Domain
	for _, who := range []struct {
		user string
		ok   bool
	}{{"dave", true}, {"erin", false}} {
		pt := fmt.Sprintf("proxytunnel -q -E -p %s -d %%h:%%p -P '%s:%s' -C %s", c.env.ProxyAddr, who.user, alicePass, c.env.CAFile)
		out, err := c.run(t, nil, "ssh", append(c.sshArgs(pt), "root@"+host, "echo reach-$((40+2))")...)
		if got := err == nil && strings.Contains(out, "reach-42"); got != who.ok {
			t.Errorf("%s reaching 12345: %v, want %v\n%s", who.user, got, who.ok, out)
		}
	}
}
