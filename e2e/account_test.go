package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/internal/testenv"
)

// TestAccountPagesInChromium: a supervisor signs in to /account/ in Chromium (the session
// cookie is Secure, HttpOnly, SameSite=Strict), a form stripped of its CSRF token is refused
// with 403, the real form disables a person, the proxy account password form changes the
// organisation's password (the old one then refused, the new one taken), signing out ends
// the session, and a session left unused for people.session_idle (6s here, room for a slow
// page load between steps) is signed out.
func TestAccountPagesInChromium(t *testing.T) {
	dir := browserNeeds(t)
	const idle = 6 * time.Second
	env := testenv.Start(t, testenv.Options{Extra: map[string]any{"people": map[string]any{"session_idle": idle.String()}}})
	const newAccountPass = "Proxy-pass-9"
	testenv.NoteCredentials("resa", newAccountPass)
	bin := testenv.BinPath(t, "maintproxy")
	for _, p := range [][]string{{"sue", "supervisor"}, {"alice", "operator"}} {
		testenv.NoteCredentials(p[0], alicePass)
		cmd := exec.Command(bin, "people", "add", p[0], "--org", "resa", "--role", p[1], "--config", env.ConfigPath)
		cmd.Stdin = strings.NewReader(alicePass + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("people add %s: %v\n%s", p[0], err, out)
		}
	}
	_, port, _ := net.SplitHostPort(env.WebAddr)
	base := "https://admin." + env.Domain + ":" + port + "/account/"
	job := map[string]any{"chromium": browserChromium, "timeoutMs": 15000, "base": base,
		"resolverRules": "MAP admin." + env.Domain + " 127.0.0.1, MAP * ~NOTFOUND",
		"username":      "sue", "password": alicePass, "target": "alice",
		"accountPassword": newAccountPass, "idleMs": idle.Milliseconds()}
	jobFile := filepath.Join(t.TempDir(), "job.json")
	data, _ := json.Marshal(job)
	os.WriteFile(jobFile, data, 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "account.js"), jobFile)
	cmd.Env = append(os.Environ(), "HOME="+browserNSS(t, env.CAFile))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("account.js: %v\n%s", err, stderr.String())
	}
	var res struct {
		SigninURL, Me, TargetRow, AccountDone, AfterSignOutURL, AfterSignOutGet, Error string
		Cookie                                                                         struct {
			Secure, HTTPOnly bool
			SameSite         string
		}
		WithoutCSRF struct {
			Status int
			Text   string
		}
		Idle struct {
			URL     string
			AfterMs int64
			Reloads int
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("account.js output %q: %v", stdout.String(), err)
	}
	t.Logf("Chromium saw: %+v", res)
	switch {
	case res.Error != "":
		t.Fatalf("account.js: %s", res.Error)
	case !strings.HasSuffix(res.SigninURL, "/account/signin"):
		t.Errorf("not signed in, the page went to %s", res.SigninURL)
	case !strings.Contains(res.Me, "Signed in as sue (supervisor, resa)"):
		t.Errorf("signed in: %q", res.Me)
	case !res.Cookie.Secure || !res.Cookie.HTTPOnly || res.Cookie.SameSite != "Strict":
		t.Errorf("session cookie %+v", res.Cookie)
	case res.WithoutCSRF.Status != 403 || !strings.Contains(res.WithoutCSRF.Text, "CSRF"):
		t.Errorf("a form without its CSRF token: %+v", res.WithoutCSRF)
	case !strings.Contains(res.TargetRow, "alice") || !strings.Contains(res.TargetRow, "disabled") || !strings.Contains(res.TargetRow, "Enable"):
		t.Errorf("alice's row after disabling: %q", res.TargetRow)
	case res.AccountDone != "done: account-password":
		t.Errorf("the proxy account password form: %q", res.AccountDone)
	case !strings.HasSuffix(res.AfterSignOutGet, "/account/signin"):
		t.Errorf("after signing out the page is %s", res.AfterSignOutGet)
	case !strings.HasSuffix(res.Idle.URL, "/account/signin") || res.Idle.AfterMs < idle.Milliseconds():
		t.Errorf("idle sign-out: %+v, want the sign-in page after at least %v", res.Idle, idle)
	}
	// The form's password is the proxy account's now, the file's no longer (the API takes
	// the proxy account's Basic credentials through the proxy's own check).
	for _, c := range []struct {
		pass string
		want int
	}{{env.Password("resa"), http.StatusUnauthorized}, {newAccountPass, http.StatusOK}} {
		req, _ := http.NewRequest("GET", "https://"+env.WebAddr+"/api/v1/me", nil)
		req.SetBasicAuth("resa", c.pass)
		resp, err := env.WebClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("the API as resa with the %s password: %d, want %d", map[bool]string{true: "new", false: "old"}[c.pass == newAccountPass], resp.StatusCode, c.want)
		}
	}
	// The disable happened once, by the real form, and cut alice's logins.
	list, _ := exec.Command(bin, "people", "list", "--config", env.ConfigPath).CombinedOutput()
	if !strings.Contains(string(list), "alice") || !strings.Contains(string(list), "disabled") {
		t.Errorf("people list:\n%s", list)
	}
}
