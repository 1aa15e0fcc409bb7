package e2e

import (
	"fmt"
	"strings"
	"testing"

	"maintproxy/internal/testenv"
)

// TestAccountPasswordChange: a supervisor changes the proxy account password through the
// API with curl, and the operator with `maintproxy account passwd` (through the running
// broker's socket); each time curl's CONNECT with the old password is refused (407) and
// with the new one accepted; a read-only person and a supervisor of another organisation
// get 403; `maintproxy account list` says where the password comes from.
func TestAccountPasswordChange(t *testing.T) {
	testenv.NeedCommands(t, "curl")
	c := startClientsEnv(t)
	for _, p := range [][]string{{"sue", "resa", "supervisor"}, {"ro", "resa", "readonly"}, {"zed", "resb", "supervisor"}} {
		testenv.NoteCredentials(p[0], alicePass)
		c.mustMaintproxy(t, alicePass+"\n", "people", "add", p[0], "--org", p[1], "--role", p[2])
	}
	const apiPass, cmdPass = "Proxy-pass-2", "Proxy-pass-3"
	testenv.NoteCredentials("resa", apiPass)
	testenv.NoteCredentials("resa", cmdPass)
	host := "12345-SE1.maint." + c.env.Domain
	connect := func(pass string) string {
		t.Helper()
		out, _ := c.run(t, nil, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_connect}", "--max-time", "20",
			"--proxy", "https://"+c.env.ProxyAddr, "--proxy-cacert", c.env.CAFile, "--proxy-user", "resa:"+pass,
			"https://"+host+":22/")
		out = strings.TrimSpace(out)
		return out[max(0, len(out)-3):]
	}
	change := func(who, pass string) string {
		t.Helper()
		out, _ := c.run(t, strings.NewReader(`{"password":"`+pass+`"}`), "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
			"--max-time", "20", "--cacert", c.env.CAFile, "--resolve", "admin."+c.env.Domain+":"+fmt.Sprint(portOf(t, c.env.WebAddr))+":127.0.0.1",
			"-u", who+":"+alicePass, "-H", "Content-Type: application/json", "--data-binary", "@-",
			"https://admin."+c.env.Domain+":"+fmt.Sprint(portOf(t, c.env.WebAddr))+"/api/v1/accounts/resa/password")
		out = strings.TrimSpace(out)
		return out[max(0, len(out)-3):]
	}
	old := c.env.Password("resa")
	if code := connect(old); code != "200" {
		t.Fatalf("CONNECT with the file's password: %q", code)
	}
	for _, who := range []string{"ro", "zed"} {
		if code := change(who, apiPass); code != "403" {
			t.Errorf("%s changing resa's proxy account password: %q, want 403", who, code)
		}
	}
	if code := change("sue", apiPass); code != "200" {
		t.Fatalf("sue changing resa's proxy account password: %q", code)
	}
	if code := connect(old); code != "407" {
		t.Errorf("CONNECT with the old password: %q, want 407", code)
	}
	if code := connect(apiPass); code != "200" {
		t.Errorf("CONNECT with the password sue set: %q", code)
	}
	if out := c.mustMaintproxy(t, "", "account", "list"); !strings.Contains(out, "resa") || !strings.Contains(out, "store") || !strings.Contains(out, "sue") {
		t.Errorf("account list:\n%s", out)
	}
	c.mustMaintproxy(t, cmdPass+"\n", "account", "passwd", "resa")
	if code := connect(apiPass); code != "407" {
		t.Errorf("CONNECT with sue's password after the operator's change: %q, want 407", code)
	}
	if code := connect(cmdPass); code != "200" {
		t.Errorf("CONNECT with the operator's password: %q", code)
	}
	c.mustMaintproxy(t, "", "account", "clear", "resa")
	if code := connect(old); code != "200" {
		t.Errorf("CONNECT with the file's password after account clear: %q", code)
	}
	for _, l := range c.env.Proc().Lines() {
		if strings.Contains(l, apiPass) || strings.Contains(l, cmdPass) {
			t.Errorf("the broker logged a password: %s", l)
		}
	}
}
