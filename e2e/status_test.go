package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/internal/testenv"
)

// statusOverview is the part of the access overview's JSON these tests read.
type statusOverview struct {
	Customers []struct {
		ID      string         `json:"id"`
		Light   string         `json:"light"`
		Message string         `json:"message"`
		Systems []statusSystem `json:"systems"`
	} `json:"customers"`
	Certificates *struct {
		Served []struct {
			Listener string `json:"listener"`
			Name     string `json:"name"`
			Chain    []struct {
				Subject string   `json:"subject"`
				Issuer  string   `json:"issuer"`
				SANs    []string `json:"sans"`
				SHA256  string   `json:"sha256"`
			} `json:"chain"`
		} `json:"served"`
	} `json:"certificates"`
}

type statusSystem struct {
	Name         string     `json:"name"`
	Light        string     `json:"light"`
	Message      string     `json:"message"`
	Online       bool       `json:"online"`
	Since        *time.Time `json:"since"`
	LastSeen     *time.Time `json:"last_seen"`
	LoginFailed  *time.Time `json:"login_failed"`
	LoginFailure string     `json:"login_failure"`
	RemoteAccess bool       `json:"remote_access"`
	Disabled     bool       `json:"remote_access_disabled"`
	Commands     []any      `json:"commands"`
}

// overviewJSON fetches the access overview as JSON for the account (a fresh connection:
// the broker may have restarted since the last call).
func overviewJSON(t *testing.T, env *testenv.Env, user string) statusOverview {
	t.Helper()
	var v statusOverview
	accessJSON(t, env, user, "/com/remoteproxy/access", &v)
	return v
}

func accessJSON(t *testing.T, env *testenv.Env, user, path string, v any) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: env.CAPool(t), ServerName: "admin." + env.Domain}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+env.WebAddr+path, nil)
	req.SetBasicAuth(user, env.Password(user))
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

func (o statusOverview) system(t *testing.T, customer, name string) statusSystem {
	t.Helper()
	for _, c := range o.Customers {
		if c.ID != customer {
			continue
		}
		for _, s := range c.Systems {
			if strings.EqualFold(s.Name, name) {
				return s
			}
		}
	}
	t.Fatalf("overview has no %s/%s", customer, name)
	return statusSystem{}
}

// waitOverview polls the overview until ok accepts it, or fails after timeout.
func waitOverview(t *testing.T, env *testenv.Env, timeout time.Duration, what string, ok func(statusOverview) bool) statusOverview {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := overviewJSON(t, env, "resa")
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("overview never showed %s: %+v", what, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// artifactDir is where the status tests keep their screenshots: E2E_ARTIFACTS, or
// e2e/artifacts/<test> in the module (git-ignored), kept after the test for people to look at.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("E2E_ARTIFACTS")
	if dir == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "e2e", "artifacts")
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkPNG fails unless path is a PNG of some substance, and logs where it is.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil || len(data) < 2000 || !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot %s: %d bytes, err %v", path, len(data), err)
		return
	}
	t.Logf("screenshot kept: %s (%d bytes)", path, len(data))
}

// servedFingerprint is the SHA-256 fingerprint of the certificate the web listener
// serves, as a TLS client sees it (colon-separated upper-case hex).
func servedFingerprint(t *testing.T, env *testenv.Env) string {
	t.Helper()
	conn, err := tls.Dial("tcp", env.WebAddr, &tls.Config{RootCAs: env.CAPool(t), ServerName: "admin." + env.Domain})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// TestStatusLights walks the manual's traffic lights with real agents: an agent with a
// wrong secret is orange "Invalid credentials" (not red "waiting"), a system whose
// customer switched remote access off is orange "Remote operations not allowed" (not
// green) with nothing offered, and after a broker restart a system seen before is red
// "offline … since <last seen>" with its last-seen time and its refused login kept.
// Then Chromium shows the same on the access pages, and the certificate screen, with
// screenshots kept.
func TestStatusLights(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	dataStatus := filepath.Join(env.DataDir, "status.json")
	unused := testenv.RefusedAddr(t, "127.0.0.1")

	se1 := env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true,
		Services: map[int]string{22: unused}})
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE2", RemoteAccess: false,
		Services: map[int]string{22: unused, 7071: unused}})
	mark := env.Proc().Mark()
	wrong := env.StartAgent(t, testenv.Agent{Customer: "67890", System: "SE1", Secret: "not-the-secret", NoWait: true})
	env.Proc().WaitLogAfter(t, mark, 20*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "agent login refused" && r.Str("identity") == "67890/se1"
	})

	v := waitOverview(t, env, 10*time.Second, "the refused login", func(v statusOverview) bool {
		return v.system(t, "67890", "SE1").LoginFailed != nil
	})
	s := v.system(t, "67890", "SE1")
	if s.Light != "orange" || s.Message != "Invalid credentials" || s.LoginFailure != "Invalid credentials" || s.Online {
		t.Errorf("wrong secret: %+v; want orange Invalid credentials", s)
	}
	s = v.system(t, "12345", "SE2")
	if s.Light != "orange" || s.Message != "Remote operations not allowed" || s.RemoteAccess || !s.Online {
		t.Errorf("remote access off: %+v; want orange Remote operations not allowed", s)
	}
	if s = v.system(t, "12345", "SE1"); s.Light != "green" || !strings.HasPrefix(s.Message, "Online since") {
		t.Errorf("remote access on: %+v; want green", s)
	}
	var page struct {
		System statusSystem `json:"system"`
	}
	accessJSON(t, env, "resa", "/com/remoteproxy/access/12345/se2", &page)
	if !page.System.Disabled || page.System.Light == "green" || len(page.System.Commands) != 0 {
		t.Errorf("system page of SE2 (remote access off): %+v; want disabled, no commands", page.System)
	}

	// SE1's agent goes away; the wrong agent gives up. Then the broker restarts.
	mark = env.Proc().Mark()
	se1.Stop(t)
	wrong.Stop(t)
	env.Proc().WaitLogAfter(t, mark, 20*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "agent disconnected" && r.Str("identity") == "12345/se1"
	})
	before := waitOverview(t, env, 10*time.Second, "SE1 offline", func(v statusOverview) bool {
		return !v.system(t, "12345", "SE1").Online
	})
	lastSeen := before.system(t, "12345", "SE1").LastSeen
	failedAt := before.system(t, "67890", "SE1").LoginFailed
	if lastSeen == nil || failedAt == nil {
		t.Fatalf("before the restart: SE1 last seen %v, 67890 login failed %v", lastSeen, failedAt)
	}
	env.Restart(t)
	env.WaitAgent(t, "12345", "SE2", 0) // the new broker's log
	if data, err := os.ReadFile(dataStatus); err != nil || !bytes.Contains(data, []byte(`"12345/se1"`)) {
		t.Errorf("status file %s: %v: %.300s", dataStatus, err, data)
	}

	after := waitOverview(t, env, 10*time.Second, "SE2 back", func(v statusOverview) bool {
		return v.system(t, "12345", "SE2").Online
	})
	s = after.system(t, "12345", "SE1")
	if s.Light != "red" || !strings.Contains(s.Message, "System not reachable or offline for the last") ||
		s.LastSeen == nil || !s.LastSeen.Equal(*lastSeen) || !strings.Contains(s.Message, lastSeen.UTC().Format("2006-01-02 15:04")) {
		t.Errorf("SE1 after the restart: %+v; want red offline since %v", s, lastSeen)
	}
	s = after.system(t, "67890", "SE1")
	if s.Light != "orange" || s.LoginFailure != "Invalid credentials" || s.LoginFailed == nil || !s.LoginFailed.Equal(*failedAt) {
		t.Errorf("67890/SE1 after the restart: %+v; want the refusal of %v kept", s, failedAt)
	}
	if s = after.system(t, "12345", "SE2"); s.Light != "orange" || s.Message != "Remote operations not allowed" {
		t.Errorf("SE2 after the restart: %+v", s)
	}
	for _, c := range after.Customers {
		for _, sys := range c.Systems {
			if sys.Message == "Waiting for first connection" {
				t.Errorf("%s/%s is waiting for its first connection after a restart", c.ID, sys.Name)
			}
		}
	}
	if after.Certificates == nil || len(after.Certificates.Served) == 0 || len(after.Certificates.Served[0].Chain) == 0 {
		t.Fatalf("overview JSON has no certificate screen: %+v", after.Certificates)
	}
	fp := servedFingerprint(t, env)
	found := false
	for _, sv := range after.Certificates.Served {
		if sv.Listener == "web" && len(sv.Chain) > 0 && sv.Chain[0].SHA256 == fp {
			found = true
		}
	}
	if !found {
		t.Errorf("the certificate screen does not list the served fingerprint %s: %+v", fp, after.Certificates.Served)
	}

	t.Run("Chromium", func(t *testing.T) {
		statusBrowser(t, env, fp, *lastSeen)
	})
}

// statusBrowser loads the access pages of TestStatusLights' restarted broker in Chromium.
func statusBrowser(t *testing.T, env *testenv.Env, fingerprint string, lastSeen time.Time) {
	dir := browserNeeds(t)
	_, webPort, _ := strings.Cut(env.WebAddr, ":")
	s := &browserSetup{env: env, webPort: webPort, home: browserNSS(t, env.CAFile)}
	art := artifactDir(t)
	shot := func(name string) string { return filepath.Join(art, name+".png") }
	resa := &browserCreds{"resa", env.Password("resa")}
	res := s.run(t, dir, browserJob{Mode: "pac", PACURL: s.webURL("/com/remoteproxy/proxy.pac"), Visits: []browserVisit{
		{Name: "overview", URL: s.webURL("/com/remoteproxy/access"), ServerAuth: resa, Screenshot: shot("overview"),
			Actions: []browserAction{
				{Type: "count", Selector: "#certificates[open]", Name: "certs-closed"},
				{Type: "click", Selector: "#certificates summary"},
				{Type: "waitText", Selector: "#certificates", Text: "SHA-256"},
				{Type: "count", Selector: "#certificates[open] table.cert", Name: "certs-open"},
				{Type: "screenshot", Selector: "#certificates", Value: shot("certificates")},
			}},
		{Name: "wrong-secret", URL: s.webURL("/com/remoteproxy/access/67890/se1"), ServerAuth: resa, Screenshot: shot("wrong-secret")},
		{Name: "remote-off", URL: s.webURL("/com/remoteproxy/access/12345/se2"), ServerAuth: resa, Screenshot: shot("remote-off"),
			Actions: []browserAction{{Type: "count", Selector: "button.copy, code.cmd", Name: "offers"}}},
		{Name: "offline", URL: s.webURL("/com/remoteproxy/access/12345/se1"), ServerAuth: resa, Screenshot: shot("offline-since")},
	}})
	v := browserFind(t, res, "overview")
	if v.Status != 200 || v.Error != "" {
		t.Fatalf("overview: status %d, error %q", v.Status, v.Error)
	}
	for _, want := range []string{"Invalid credentials", "Remote operations not allowed", "System not reachable or offline for the last",
		"Certificates served by this broker"} {
		if !strings.Contains(v.Text, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if strings.Contains(v.Text, "Waiting for first connection") {
		t.Errorf("overview says a system seen before is waiting for its first connection")
	}
	// The certificate screen is collapsed until opened, then shows the served fingerprint.
	if v.Counts["certs-closed"] != 0 || v.Counts["certs-open"] < 2 || !strings.Contains(v.TextAfter, fingerprint) ||
		!strings.Contains(v.TextAfter, "admin."+env.Domain) {
		t.Errorf("certificate screen: closed %d, open %d tables; fingerprint %s shown: %v", v.Counts["certs-closed"],
			v.Counts["certs-open"], fingerprint, strings.Contains(v.TextAfter, fingerprint))
	}
	for name, want := range map[string]string{"wrong-secret": "Last agent login refused", "remote-off": "Remote access is disabled",
		"offline": "Last seen " + lastSeen.UTC().Format("2006-01-02 15:04:05")} {
		v = browserFind(t, res, name)
		if v.Status != 200 || !strings.Contains(v.Text, want) {
			t.Errorf("%s: status %d, error %q, lacks %q: %.300q", name, v.Status, v.Error, want, v.Text)
		}
	}
	if v = browserFind(t, res, "remote-off"); v.Counts["offers"] != 0 {
		t.Errorf("remote access off: the page offers %d commands", v.Counts["offers"])
	}
	for _, name := range []string{"overview", "certificates", "wrong-secret", "remote-off", "offline-since"} {
		checkPNG(t, shot(name))
	}
}

// TestStatusAfterCrash: a broker killed without a shutdown (SIGKILL) while a system was
// connected still knows after its restart that the system was seen: red "offline … since"
// the last time it was known connected, not "waiting for first connection".
func TestStatusAfterCrash(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	dataStatus := filepath.Join(env.DataDir, "status.json")
	agent := env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true,
		Services: map[int]string{22: testenv.RefusedAddr(t, "127.0.0.1")}})
	v := overviewJSON(t, env, "resa")
	since := v.system(t, "12345", "SE1").Since
	if since == nil || !v.system(t, "12345", "SE1").Online {
		t.Fatalf("SE1 not online: %+v", v.system(t, "12345", "SE1"))
	}
	// The connect is written within about a second (debounced), not at shutdown.
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(dataStatus)
		if bytes.Contains(data, []byte(`"12345/se1"`)) && bytes.Contains(data, []byte(`"connected"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status file never recorded SE1's connection: %s", data)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	env.Crash(t, func() { agent.Stop(t); t.Logf("agent stopped after %v", time.Since(start)) })
	t.Logf("broker back after %v", time.Since(start))

	s := overviewJSON(t, env, "resa").system(t, "12345", "SE1")
	if s.Online || s.Light != "red" || !strings.Contains(s.Message, "System not reachable or offline for the last") ||
		s.LastSeen == nil || s.LastSeen.Before(*since) || time.Since(*s.LastSeen) > time.Minute+10*time.Second {
		t.Errorf("SE1 after a crash: %+v; want red, offline since about %v", s, since)
	}
}
