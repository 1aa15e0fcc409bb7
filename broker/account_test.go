package broker_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/internal/testclock"
	"maintproxy/people"
)

// TestAccountPassword: resa's supervisor changes the proxy account password through the
// API and through the /account/ form; the old password is refused by CONNECT at once and
// the new one accepted, while a tunnel opened with the old one stays open; a read-only
// person, an operator, the proxy account itself and a supervisor of another organisation
// are refused with 403; a reused password is refused; a reload whose file changed the
// account's password_hash makes the file win, and the broker says so.
func TestAccountPassword(t *testing.T) {
	target := startEcho(t)
	r := startPeopleBroker(t, filepath.Join(t.TempDir(), "data"), testclock.New(time.Now()))
	r.startAgent(t, se1, target.Addr())
	r.waitOnline(t, se1)
	ctx := context.Background()
	for _, n := range []people.NewPerson{
		{Username: "sue", Org: user, Role: people.RoleSupervisor}, {Username: "alice", Org: user, Role: people.RoleOperator},
		{Username: "ro", Org: user, Role: people.RoleReadonly}, {Username: "zed", Org: "dist2", Role: people.RoleSupervisor},
	} {
		n.Password = personPass
		if _, err := r.People().AddPerson(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	sys1 := "12345-se1.maint." + domain + ":7"
	connect := func(pass string) int { t.Helper(); return r.connectStatus(t, user, pass, sys1) }
	old := r.request(t, user, password, sys1)
	if old.status != http.StatusOK {
		t.Fatalf("the file's password: %d %s", old.status, old.body)
	}
	defer old.conn.Close()
	roundTrip(t, old.conn, "tunnel with the file's password")

	c := r.webClient(t)
	const apiPass, formPass = "Proxy-pass-2", "Proxy-pass-3"
	body := map[string]string{"password": apiPass}
	for _, who := range []struct{ user, pass string }{{"ro", personPass}, {"alice", personPass}, {"zed", personPass}, {user, password}} {
		if code := r.call(t, c, "POST", "accounts/resa/password", who.user, who.pass, body, nil); code != http.StatusForbidden {
			t.Errorf("%s changed resa's proxy account password: %d, want 403", who.user, code)
		}
	}
	if code := connect(password); code != http.StatusOK {
		t.Fatalf("a refused change changed the password: %d", code)
	}
	if code := r.call(t, c, "POST", "accounts/resa/password", "sue", personPass, map[string]string{"password": "short"}, nil); code != http.StatusBadRequest {
		t.Errorf("a password against the rules: %d", code)
	}
	if code := r.call(t, c, "POST", "accounts/resa/password", "sue", personPass, body, nil); code != http.StatusOK {
		t.Fatalf("sue's change: %d", code)
	}
	// At once: the old password was verified (and cached) moments ago.
	if code := connect(password); code != http.StatusProxyAuthRequired {
		t.Errorf("the old password after the change: %d, want 407", code)
	}
	if code := connect(apiPass); code != http.StatusOK {
		t.Errorf("the new password: %d", code)
	}
	roundTrip(t, old.conn, "the tunnel opened with the old password stays open")
	if code := r.call(t, c, "POST", "accounts/resa/password", "sue", personPass, body, nil); code != http.StatusBadRequest {
		t.Errorf("the same password again: %d, want 400 (history)", code)
	}
	var states []people.AccountPasswordState
	if code := r.call(t, c, "GET", "accounts", "sue", personPass, nil, &states); code != http.StatusOK || len(states) != 1 ||
		states[0].Account != user || states[0].Source != people.SourceStore || states[0].By != "sue" {
		t.Errorf("sue's accounts: %d %+v", code, states)
	}

	// The form on /account/: refused without the CSRF token, then done.
	jar, _ := cookiejar.New(nil)
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := "https://" + r.WebAddr().String() + "/account/"
	post := func(path string, form url.Values) *http.Response {
		t.Helper()
		resp, err := c.PostForm(base+path, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("signin", url.Values{"username": {"sue"}, "password": {personPass}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	resp, err := c.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`id="account-password">\s*<input type="hidden" name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no proxy account password form on sue's page:\n%.800s", page)
	}
	form := url.Values{"action": {"account-password"}, "new": {formPass}, "repeat": {formPass}}
	if resp := post("action", form); resp.StatusCode != http.StatusForbidden {
		t.Errorf("the form without its CSRF token: %d", resp.StatusCode)
	}
	form.Set("csrf", string(m[1]))
	if resp := post("action", form); resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=") {
		t.Fatalf("the form: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code := connect(apiPass); code != http.StatusProxyAuthRequired {
		t.Errorf("the API's password after the form's change: %d", code)
	}
	if code := connect(formPass); code != http.StatusOK {
		t.Errorf("the form's password: %d", code)
	}

	// The operator edits password_hash in the file: the file wins, and the log says so.
	const filePass = "file-pass-4"
	h, _ := bcrypt.GenerateFromPassword([]byte(filePass), bcrypt.MinCost)
	m2 := r.conf(t, se1, se2, other, third)
	peopleConf(m2)
	m2["accounts"].([]map[string]any)[0]["password_hash"] = string(h)
	r.Apply(parse(t, m2))
	if code := connect(formPass); code != http.StatusProxyAuthRequired {
		t.Errorf("the runtime password after the file changed: %d", code)
	}
	if code := connect(filePass); code != http.StatusOK {
		t.Errorf("the file's new password: %d", code)
	}
	if !r.log.Contains("proxy account password set at runtime no longer applies") || r.log.Contains(formPass) || r.log.Contains(string(h)) {
		t.Errorf("the reload's log does not say the file won, or holds a secret")
	}
	if got := r.People().Superseded(); len(got) != 1 || got[0] != user {
		t.Errorf("superseded: %v", got)
	}
}

// TestAccountPasswordInCluster: a proxy account password changed on one broker of a
// cluster is in force on the other as soon as etcd's watch tells it: the old password,
// verified and cached there a moment before, is refused, and the new one opens a tunnel.
func TestAccountPasswordInCluster(t *testing.T) {
	target := startEcho(t)
	ms, _ := startCluster(t, clusterOpts{brokers: 2, systems: []system{se1}})
	b1, b2 := ms[0], ms[1]
	clusterAgent(t, b1.ca, se1, webAddrs(b1), 1, map[string]string{"7": target.Addr()})
	b2.waitHolders(t, se1, b1.node)
	sys1 := "12345-se1.maint." + domain + ":7"
	status := func(pass string) int { t.Helper(); return b2.connectStatus(t, user, pass, sys1) }
	if code := status(password); code != http.StatusOK {
		t.Fatalf("the file's password through b2: %d", code)
	}
	const newPass = "Proxy-pass-7"
	if err := b1.People().SetAccountPassword(context.Background(), user, newPass, "test"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	acct := b2.Config().Account(user)
	waitFor(t, "b2 checking resa against the stored password", func() bool { return b2.People().AccountHash(acct) != acct.PasswordHash })
	t.Logf("b2 took the new password %v after b1 stored it", time.Since(start).Round(time.Millisecond))
	if code := status(password); code != http.StatusProxyAuthRequired {
		t.Errorf("the old password through b2: %d, want 407", code)
	}
	if code := status(newPass); code != http.StatusOK {
		t.Errorf("the new password through b2: %d", code)
	}
}

// connectStatus is the status of a CONNECT as user:pass to authority; a tunnel is closed.
func (r *rig) connectStatus(t *testing.T, user, pass, authority string) int {
	t.Helper()
	resp := r.request(t, user, pass, authority)
	if resp.conn != nil {
		resp.conn.Close()
	}
	return resp.status
}
