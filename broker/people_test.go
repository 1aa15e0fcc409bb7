package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/broker"
	"maintproxy/config"
	"maintproxy/internal/testclock"
	"maintproxy/internal/testkit"
	"maintproxy/people"
	"maintproxy/people/api"
)

// peopleConf puts resa below distributor dist1 and adds distributor dist2 with customer
// 55555 of its own (so resa manages 12345 and 67890 only).
func peopleConf(m map[string]any) {
	accts := m["accounts"].([]map[string]any)
	hash := accts[0]["password_hash"]
	accts[0]["parent"] = "dist1"
	accts[0]["customers"] = []string{se1.customer, other.customer}
	m["accounts"] = append(accts,
		map[string]any{"username": "dist1", "password_hash": hash},
		map[string]any{"username": "dist2", "password_hash": hash, "customers": []string{third.customer}})
	// Every check of these tests comes from 127.0.0.1, faster than one technician would.
	lim, _ := m["limits"].(map[string]any)
	if lim == nil {
		lim = map[string]any{}
		m["limits"] = lim
	}
	lim["auth"] = map[string]any{"per_minute": 6000, "burst": 1000}
}

// startPeopleBroker runs a broker with peopleConf on clock, in dataDir.
func startPeopleBroker(t *testing.T, dataDir string, clock *testclock.Clock) *rig {
	t.Helper()
	r := &rig{dataDir: dataDir, hashes: hashes{}}
	m := r.conf(t, se1, se2, other, third)
	peopleConf(m)
	r.log = &testkit.Buffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(r.log, testOutput(t, "broker")), &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := broker.New(broker.Options{Config: parse(t, m), Logger: logger, Now: clock.Now, PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	r.Broker = b
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.run = cancel, make(chan error, 1)
	go func() { r.run <- r.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// call sends a JSON API request as user:pass and decodes the answer into out (if set).
func (r *rig) call(t *testing.T, c *http.Client, method, path, user, pass string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "https://"+r.WebAddr().String()+api.Prefix+path, rd)
	req.SetBasicAuth(user, pass)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Logf("%s %s as %s: %d %s", method, path, user, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return resp.StatusCode
}

const personPass = "Personal-pw1"

// TestPeopleOnTheProxy: personal logins and tokens open tunnels and are named in the audit;
// read-only and customer admins get none; a distributor reaches its reseller's customer but
// not another distributor's; disabling a person (through a supervisor's API call) cuts their
// open tunnel within a second; the store survives a restart.
func TestPeopleOnTheProxy(t *testing.T) {
	target := startEcho(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	clock := testclock.New(time.Now())
	r := startPeopleBroker(t, dataDir, clock)
	agents := map[system]*agent{}
	for _, s := range []system{se1, se2, third} {
		agents[s] = r.startAgent(t, s, target.Addr())
	}
	r.waitOnline(t, se1, se2, third)
	ctx := context.Background()
	svc := r.People()
	for _, n := range []people.NewPerson{
		{Username: "alice", Org: user, Role: people.RoleOperator},
		{Username: "sue", Org: user, Role: people.RoleSupervisor},
		{Username: "ro", Org: user, Role: people.RoleReadonly},
		{Username: "dave", Org: "dist1", Role: people.RoleOperator},
		{Username: "erin", Org: "dist2", Role: people.RoleOperator},
		{Username: "cadmin", Customer: se1.customer},
	} {
		n.Password = personPass
		if _, err := svc.AddPerson(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	sys1 := "12345-se1.maint." + domain + ":7"

	resp := r.request(t, "alice", personPass, sys1)
	if resp.status != http.StatusOK {
		t.Fatalf("alice: %d %s", resp.status, resp.body)
	}
	roundTrip(t, resp.conn, "personal login")
	resp.conn.Close()
	waitFor(t, "the audit record naming alice", func() bool {
		return r.log.Contains("person=alice org=resa role=operator login=password")
	})
	waitFor(t, "the agent's record naming alice", func() bool { return agents[se1].log.Contains("user=alice") })

	c := r.webClient(t)
	var login api.LoginAnswer
	if code := r.call(t, c, "POST", "login", "alice", personPass, nil, &login); code != http.StatusOK {
		t.Fatalf("login: %d", code)
	}
	if login.ProxyUsername != "alice+token" || !strings.HasPrefix(login.Token, people.TokenPrefix) {
		t.Fatalf("login answer %+v", login)
	}
	resp = r.request(t, login.ProxyUsername, login.Token, sys1)
	if resp.status != http.StatusOK {
		t.Fatalf("alice with a token: %d %s", resp.status, resp.body)
	}
	roundTrip(t, resp.conn, "token")
	tokenTunnel := resp.conn
	passTunnel := r.request(t, "alice", personPass, sys1).conn
	if passTunnel == nil {
		t.Fatal("alice's second tunnel refused")
	}

	for _, c := range []struct {
		user, authority, reason string
		status                  int
	}{
		{"ro", sys1, "role", http.StatusForbidden},
		{"cadmin", sys1, "role", http.StatusForbidden},
		{"dave", sys1, "", http.StatusOK},
		{"dave", "55555.maint." + domain + ":7", "unknown-customer", http.StatusForbidden},
		{"erin", sys1, "unknown-customer", http.StatusForbidden},
		{"erin", "55555.maint." + domain + ":7", "", http.StatusOK},
	} {
		resp := r.request(t, c.user, personPass, c.authority)
		if resp.status != c.status || resp.header.Get("Maintproxy-Refusal") != c.reason {
			t.Errorf("%s to %s: %d %q %s, want %d %q", c.user, c.authority, resp.status, resp.header.Get("Maintproxy-Refusal"), resp.body, c.status, c.reason)
		}
		if resp.conn != nil {
			resp.conn.Close()
		}
	}

	// The access pages: a read-only person sees the overview only; an operator's commands
	// carry their own username.
	page := func(user, path string) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+r.WebAddr().String()+path+"?format=json", nil)
		req.SetBasicAuth(user, personPass)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := page("ro", "/com/remoteproxy/access"); code != http.StatusOK {
		t.Errorf("read-only overview: %d", code)
	}
	if code, body := page("ro", "/com/remoteproxy/access/12345/se1"); code != http.StatusForbidden {
		t.Errorf("read-only system page: %d %.200s", code, body)
	}
	if code, body := page("alice", "/com/remoteproxy/access/12345/se1"); code != http.StatusOK || !strings.Contains(body, `"account": "alice"`) {
		t.Errorf("alice's system page: %d, commands without her username: %.300s", code, body)
	}

	// A supervisor disables alice: both her tunnels end, her token and password stop working.
	if code := r.call(t, c, "POST", "people/alice/disable", "dave", personPass, nil, nil); code != http.StatusNotFound {
		t.Errorf("an operator of another organisation disabled alice: %d", code)
	}
	if code := r.call(t, c, "POST", "people/erin/disable", "sue", personPass, nil, nil); code != http.StatusNotFound {
		t.Errorf("resa's supervisor reached dist2's person: %d", code)
	}
	start := time.Now()
	if code := r.call(t, c, "POST", "people/alice/disable", "sue", personPass, nil, nil); code != http.StatusOK {
		t.Fatalf("disable: %d", code)
	}
	waitClosed(t, tokenTunnel, "alice's token tunnel after disabling her")
	waitClosed(t, passTunnel, "alice's password tunnel after disabling her")
	t.Logf("alice's tunnels ended %v after the disable request was sent", time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d > time.Second {
		t.Errorf("tunnels ended %v after disabling, want within 1s", d)
	}
	waitFor(t, "the audit record of the cut", func() bool { return r.log.Contains("end=\"revoked: " + people.ErrDisabled.Error()) })
	if n := r.metrics(t)["maintproxy_tunnels_revoked_total"]; n != 2 {
		t.Errorf("maintproxy_tunnels_revoked_total = %v, want 2", n)
	}
	if resp := r.request(t, login.ProxyUsername, login.Token, sys1); resp.status != http.StatusProxyAuthRequired {
		t.Errorf("disabled person's token: %d", resp.status)
	}
	if resp := r.request(t, "alice", personPass, sys1); resp.status != http.StatusProxyAuthRequired || resp.header.Get("Maintproxy-Refusal") != "disabled" {
		t.Errorf("disabled person's password: %d %q", resp.status, resp.header.Get("Maintproxy-Refusal"))
	}

	// The store survives a restart.
	r.stop(t)
	r2 := startPeopleBroker(t, dataDir, clock)
	p, ok := r2.People().Person("alice")
	if !ok || !p.Disabled || p.Org != user {
		t.Fatalf("after a restart alice is %+v, %v", p, ok)
	}
	var list []api.PersonView
	if code := r2.call(t, r2.webClient(t), "GET", "people", "sue", personPass, nil, &list); code != http.StatusOK || len(list) != 3 {
		t.Errorf("sue's people after the restart: %d %+v, want resa's three", code, list)
	}
}

// TestApprovalMode: a system in approval mode refuses a CONNECT with 403 "approval" and
// records a request; the customer admin grants it for a window through the API; the
// CONNECT works; when the (injected) clock passes the window the open tunnel is cut.
func TestApprovalMode(t *testing.T) {
	target := startEcho(t)
	clock := testclock.New(time.Now())
	r := startPeopleBroker(t, filepath.Join(t.TempDir(), "data"), clock)
	r.startAgent(t, se2, target.Addr())
	r.waitOnline(t, se2)
	ctx := context.Background()
	for _, n := range []people.NewPerson{
		{Username: "alice", Org: user, Role: people.RoleOperator, Password: personPass},
		{Username: "cadmin", Customer: se2.customer, Password: personPass},
		{Username: "otheradmin", Customer: other.customer, Password: personPass},
	} {
		if _, err := r.People().AddPerson(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	c := r.webClient(t)
	sys2 := "12345-se2.maint." + domain + ":7"
	if code := r.call(t, c, "PUT", "modes/12345/se2", "otheradmin", personPass, map[string]string{"mode": "approval"}, nil); code != http.StatusForbidden {
		t.Errorf("another customer's admin set the mode: %d", code)
	}
	if code := r.call(t, c, "PUT", "modes/12345/se2", "cadmin", personPass, map[string]string{"mode": "approval"}, nil); code != http.StatusOK {
		t.Fatalf("set mode: %d", code)
	}
	resp := r.request(t, "alice", personPass, sys2)
	if resp.status != http.StatusForbidden || resp.header.Get("Maintproxy-Refusal") != "approval" || !strings.Contains(resp.body, "waiting for the customer's approval") {
		t.Fatalf("approval mode without a grant: %d %q %s", resp.status, resp.header.Get("Maintproxy-Refusal"), resp.body)
	}
	var reqs []people.Request
	if code := r.call(t, c, "GET", "requests", "otheradmin", personPass, nil, &reqs); code != http.StatusOK || len(reqs) != 0 {
		t.Errorf("another customer's admin sees requests: %+v", reqs)
	}
	if code := r.call(t, c, "GET", "requests", "cadmin", personPass, nil, &reqs); code != http.StatusOK || len(reqs) != 1 || reqs[0].Username != "alice" {
		t.Fatalf("requests: %d %+v", code, reqs)
	}
	var g people.Grant
	if code := r.call(t, c, "POST", "requests/"+reqs[0].ID+"/grant", "cadmin", personPass, map[string]string{"duration": "4h"}, &g); code != http.StatusOK {
		t.Fatalf("grant: %d", code)
	}
	resp = r.request(t, "alice", personPass, sys2)
	if resp.status != http.StatusOK {
		t.Fatalf("granted: %d %s", resp.status, resp.body)
	}
	roundTrip(t, resp.conn, "granted")

	// The customer admin sees the open tunnels of its customer and ends one.
	second := r.request(t, "alice", personPass, sys2)
	if second.status != http.StatusOK {
		t.Fatalf("second tunnel: %d", second.status)
	}
	var open []map[string]any
	if code := r.call(t, c, "GET", "tunnels", "otheradmin", personPass, nil, &open); code != http.StatusOK || len(open) != 0 {
		t.Errorf("another customer's admin sees tunnels: %d %v", code, open)
	}
	if code := r.call(t, c, "GET", "tunnels", "cadmin", personPass, nil, &open); code != http.StatusOK || len(open) != 2 || open[0]["person"] != "alice" {
		t.Fatalf("cadmin's open tunnels: %d %v", code, open)
	}
	for _, o := range open {
		if code := r.call(t, c, "DELETE", "tunnels/"+o["session"].(string), "otheradmin", personPass, nil, nil); code != http.StatusNotFound {
			t.Errorf("another customer's admin ended a tunnel: %d", code)
		}
	}
	for _, o := range open {
		if o["client"] == second.conn.LocalAddr().String() {
			if code := r.call(t, c, "DELETE", "tunnels/"+o["session"].(string), "cadmin", personPass, nil, nil); code != http.StatusOK {
				t.Fatalf("cadmin ending a tunnel: %d", code)
			}
		}
	}
	waitClosed(t, second.conn, "the tunnel the customer admin ended")
	waitFor(t, "the audit record of the ended tunnel", func() bool { return r.log.Contains(`end="revoked: ended by cadmin"`) })
	roundTrip(t, resp.conn, "the other tunnel is still open")
	clock.Add(4*time.Hour - time.Minute)
	roundTrip(t, resp.conn, "still inside the window")
	clock.Add(time.Minute)
	waitClosed(t, resp.conn, "the tunnel after its grant's window")
	waitFor(t, "the audit record of the cut", func() bool { return r.log.Contains("end=\"revoked: " + people.ErrGrantEnded.Error()) })
	if resp := r.request(t, "alice", personPass, sys2); resp.status != http.StatusForbidden {
		t.Errorf("after the window: %d", resp.status)
	}
	// History is written behind the tunnels (grouped), so wait for the record.
	var hist []people.Record
	tunnels := 0
	waitFor(t, "alice's tunnel in the customer admin's history", func() bool {
		hist, tunnels = nil, 0
		if code := r.call(t, c, "GET", "audit", "cadmin", personPass, nil, &hist); code != http.StatusOK {
			t.Fatalf("audit: %d", code)
		}
		for _, h := range hist {
			if h.Kind == "tunnel" && h.Person == "alice" && h.BytesUp > 0 {
				tunnels++
			}
		}
		return tunnels >= 1
	})
	for _, h := range hist {
		if h.Customer != se2.customer {
			t.Errorf("customer admin sees another customer's record %+v", h)
		}
	}
	if tunnels != 1 {
		t.Errorf("customer admin's history has %d tunnels of alice, want 1: %+v", tunnels, hist)
	}
}

// TestPeopleInCluster: a person added on one broker of a cluster logs in on another (the
// records are in etcd), and disabling them on the first ends the tunnel that entered at the
// second, forwarded to the first's agent.
func TestPeopleInCluster(t *testing.T) {
	target := startEcho(t)
	ms, _ := startCluster(t, clusterOpts{brokers: 2, systems: []system{se1}})
	b1, b2 := ms[0], ms[1]
	clusterAgent(t, b1.ca, se1, webAddrs(b1), 1, map[string]string{"7": target.Addr()})
	b2.waitHolders(t, se1, b1.node)
	if _, err := b1.People().AddPerson(context.Background(), people.NewPerson{Username: "alice", Org: user, Role: people.RoleOperator, Password: personPass}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice known to b2", func() bool { _, ok := b2.People().Person("alice"); return ok })
	resp := b2.request(t, "alice", personPass, "12345-se1.maint."+domain+":7")
	if resp.status != http.StatusOK {
		t.Fatalf("alice through b2: %d %s", resp.status, resp.body)
	}
	roundTrip(t, resp.conn, "across the cluster")
	start := time.Now()
	if err := b1.People().SetDisabled(context.Background(), "alice", true); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, resp.conn, "alice's tunnel through b2 after b1 disabled her")
	t.Logf("the tunnel entering at b2 ended %v after b1 disabled alice", time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d > time.Second {
		t.Errorf("ended %v after disabling, want within 1s", d)
	}
	// The holder's audit names the person too.
	waitFor(t, "b1's peer tunnel record naming alice", func() bool { return b1.log.Contains("from=b2 account=resa person=alice") })
}

// TestAccountPages: sign-in with a session cookie (Secure, HttpOnly, SameSite=Strict), a
// supervisor disables a person through the form (refused without the CSRF token), the idle
// timeout signs out (injected clock), a customer admin grants a request through the form
// and sees only its own customer's requests.
func TestAccountPages(t *testing.T) {
	clock := testclock.New(time.Now())
	r := startPeopleBroker(t, filepath.Join(t.TempDir(), "data"), clock)
	ctx := context.Background()
	for _, n := range []people.NewPerson{
		{Username: "sue", Org: user, Role: people.RoleSupervisor}, {Username: "alice", Org: user, Role: people.RoleOperator},
		{Username: "cadmin", Customer: se2.customer}, {Username: "erin", Org: "dist2", Role: people.RoleOperator},
	} {
		n.Password = personPass
		if _, err := r.People().AddPerson(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	base := "https://" + r.WebAddr().String() + "/account/"
	browser := func() *http.Client {
		c := r.webClient(t)
		c.Jar, _ = cookiejar.New(nil)
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return c
	}
	send := func(c *http.Client, method, path string, form url.Values) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, base+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	csrfRE := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	signIn := func(c *http.Client, who string) string {
		t.Helper()
		resp, _ := send(c, "POST", "signin", url.Values{"username": {who}, "password": {personPass}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in of %s: %d", who, resp.StatusCode)
		}
		ck := resp.Cookies()
		if len(ck) != 1 || ck[0].Name != "__Host-maintproxy-session" || !ck[0].Secure || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode {
			t.Fatalf("session cookie %+v", ck)
		}
		_, page := send(c, "GET", "", nil)
		m := csrfRE.FindStringSubmatch(page)
		if m == nil || !strings.Contains(page, "Signed in as <b>"+who+"</b>") {
			t.Fatalf("%s's page:\n%.500s", who, page)
		}
		return m[1]
	}

	c := browser()
	if resp, _ := send(c, "GET", "", nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account/signin" {
		t.Errorf("not signed in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := send(c, "POST", "signin", url.Values{"username": {"sue"}, "password": {"wrong"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", resp.StatusCode)
	}
	if resp, _ := send(c, "POST", "signin", url.Values{"username": {user}, "password": {password}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the shared proxy account signed in: %d", resp.StatusCode)
	}
	csrf := signIn(c, "sue")
	if resp, _ := send(c, "POST", "action", url.Values{"action": {"disable"}, "username": {"alice"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a form without the CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := send(c, "POST", "action", url.Values{"action": {"disable"}, "username": {"alice"}, "csrf": {"forged"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a form with a wrong CSRF token: %d", resp.StatusCode)
	}
	if p, _ := r.People().Person("alice"); p.Disabled {
		t.Fatal("alice disabled by a refused form")
	}
	resp, _ := send(c, "POST", "action", url.Values{"action": {"disable"}, "username": {"alice"}, "csrf": {csrf}})
	if p, _ := r.People().Person("alice"); resp.StatusCode != http.StatusSeeOther || !p.Disabled {
		t.Fatalf("disable through the form: %d, alice %+v", resp.StatusCode, p)
	}
	resp, _ = send(c, "POST", "action", url.Values{"action": {"disable"}, "username": {"erin"}, "csrf": {csrf}})
	if p, _ := r.People().Person("erin"); p.Disabled || !strings.Contains(resp.Header.Get("Location"), "error=") {
		t.Errorf("sue disabled another distributor's person: %s", resp.Header.Get("Location"))
	}

	// Idle for people.session_idle: signed out.
	clock.Add(config.DefaultSessionIdle)
	if resp, _ := send(c, "GET", "", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after the idle timeout: %d, want a redirect to sign in", resp.StatusCode)
	}

	// A customer admin answers a request through the form.
	r.People().SetMode(ctx, se2.customer, se2.name, people.ModeApproval, "test")
	r.People().SetMode(ctx, third.customer, third.name, people.ModeApproval, "test")
	sue, _ := r.People().Principal("sue")
	r.People().Authorize(ctx, sue, se2.customer, se2.name, "")
	erin, _ := r.People().Principal("erin")
	r.People().Authorize(ctx, erin, third.customer, third.name, "")
	ca := browser()
	csrf = signIn(ca, "cadmin")
	_, page := send(ca, "GET", "", nil)
	if !strings.Contains(page, "sue (resa)") || strings.Contains(page, "erin") {
		t.Errorf("the customer admin's requests:\n%s", page)
	}
	id := r.People().Requests(se2.customer)[0].ID
	resp, _ = send(ca, "POST", "action", url.Values{"action": {"grant"}, "id": {id}, "duration": {"4h"}, "csrf": {csrf}})
	if err := r.People().Authorize(ctx, sue, se2.customer, se2.name, ""); resp.StatusCode != http.StatusSeeOther || err != nil {
		t.Errorf("grant through the form: %d %s, then %v", resp.StatusCode, resp.Header.Get("Location"), err)
	}
	resp, _ = send(ca, "POST", "signout", url.Values{"csrf": {csrf}})
	if resp2, _ := send(ca, "GET", "", nil); resp.StatusCode != http.StatusSeeOther || resp2.StatusCode != http.StatusSeeOther {
		t.Errorf("after signing out: %d", resp2.StatusCode)
	}
}
