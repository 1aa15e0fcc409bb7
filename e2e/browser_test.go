package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/testenv"
)

// browserVisit is one page load in e2e/browser/visit.js.
type browserVisit struct {
	Name       string          `json:"name"`
	URL        string          `json:"url"`
	ProxyAuth  *browserCreds   `json:"proxyAuth,omitempty"`
	ServerAuth *browserCreds   `json:"serverAuth,omitempty"`
	Screenshot string          `json:"screenshot,omitempty"`
	Measure    bool            `json:"measure,omitempty"`
	Actions    []browserAction `json:"actions,omitempty"`
	Copy       []string        `json:"copy,omitempty"`
	// UninstallExtension removes the extension (from itself) before this visit.
	UninstallExtension bool `json:"uninstallExtension,omitempty"`

	Status     int                `json:"status"`
	Text       string             `json:"text"`
	TextAfter  string             `json:"textAfter"`
	Error      string             `json:"error"`
	Challenges []browserChallenge `json:"challenges"`
	Copies     map[string]string  `json:"copies"`
	Counts     map[string]int     `json:"counts"`
	Timing     *browserTiming     `json:"timing"`
}

// browserAction is a user's step on a loaded page: fill or select a form field, wait
// for a text in an element, count the visible elements a selector matches.
type browserAction struct {
	Type     string `json:"type"`
	Selector string `json:"selector"`
	Value    string `json:"value"`
	Text     string `json:"text,omitempty"`
	Name     string `json:"name,omitempty"`
}

// browserTiming is the browser's navigation timing of a page (milliseconds from the
// start of navigation) and its size.
type browserTiming struct {
	ResponseStart    float64 `json:"responseStart"`
	ResponseEnd      float64 `json:"responseEnd"`
	DOMInteractive   float64 `json:"domInteractive"`
	DOMContentLoaded float64 `json:"domContentLoaded"`
	Load             float64 `json:"load"`
	Layout           float64 `json:"layout"`
	DecodedBodySize  int     `json:"decodedBodySize"`
}

type browserCreds struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type browserChallenge struct {
	Source string `json:"source"` // Proxy or Server
	Scheme string `json:"scheme"`
	Realm  string `json:"realm"`
}

// browserJob is the JSON job visit.js runs in one Chromium.
type browserJob struct {
	Mode          string         `json:"mode"` // pac or extension
	PACURL        string         `json:"pacURL,omitempty"`
	ExtraArgs     []string       `json:"extraArgs,omitempty"`
	ExtensionDir  string         `json:"extensionDir,omitempty"`
	ProfileDir    string         `json:"profileDir,omitempty"`
	ResolverRules string         `json:"resolverRules"`
	Chromium      string         `json:"chromium"`
	TimeoutMs     int            `json:"timeoutMs"`
	Visits        []browserVisit `json:"visits"`
}

type browserResult struct {
	Extension struct {
		Worker  string          `json:"worker"`
		Setting json.RawMessage `json:"setting"`
	} `json:"extension"`
	Visits []browserVisit `json:"visits"`
}

// browserSetup holds what every browser test shares: the broker, one agent, the targets.
type browserSetup struct {
	env                   *testenv.Env
	home                  string // HOME with an NSS db trusting the broker's CA
	panelURL, coloURL     string
	directURL             string
	directHits            *atomic.Int64
	proxyPort, webPort    string
	panelText, coloText   string
	directText, artifacts string
}

const browserChromium = "/usr/bin/chromium"

// browserNeeds fails the test when what it drives is missing (`make deps` installs it).
func browserNeeds(t *testing.T) string {
	t.Helper()
	testenv.NeedCommands(t, browserChromium, "certutil", "node")
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "e2e", "browser")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed: run `make deps` (npm ci --prefix e2e/browser)")
	}
	return dir
}

// browserNSS makes a fresh HOME whose NSS database trusts caFile, as a user importing the
// CA into the browser would: Chromium on Linux reads $HOME/.pki/nssdb.
func browserNSS(t *testing.T, caFile string) string {
	t.Helper()
	home := t.TempDir()
	db := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-d", "sql:" + db, "-N", "--empty-password"},
		{"-d", "sql:" + db, "-A", "-t", "C,,", "-n", "maintproxy test CA", "-i", caFile},
	} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v: %s", args, err, out)
		}
	}
	return home
}

// bigCustomers are a reseller's estate of 1,000 systems: 250 customers (100000…100249)
// of 4 systems each, managed by the account "big".
func bigCustomers() (testenv.Account, []testenv.Customer) {
	acct := testenv.Account{Username: "big", Password: "pass-big"}
	var custs []testenv.Customer
	for i := range 250 {
		id := fmt.Sprint(100000 + i)
		acct.Customers = append(acct.Customers, id)
		custs = append(custs, testenv.Customer{ID: id, Systems: []string{"SE1", "SE2", "SE3", "UCM1"}})
	}
	return acct, custs
}

func browserStart(t *testing.T) *browserSetup {
	t.Helper()
	big, bigCusts := bigCustomers()
	env := testenv.Start(t, testenv.Options{
		Accounts:  append(append([]testenv.Account{}, testenv.DefaultAccounts...), big),
		Customers: append(append([]testenv.Customer{}, testenv.DefaultCustomers...), bigCusts...),
	})
	s := &browserSetup{env: env, directHits: new(atomic.Int64),
		panelText:  "web control panel of 12345-SE1 (browser e2e)",
		coloText:   "co-located HTTPS server 127.0.0.5 (browser e2e)",
		directText: "an ordinary site, reached directly (browser e2e)",
		artifacts:  os.Getenv("E2E_ARTIFACTS"),
	}
	if s.artifacts == "" {
		s.artifacts = t.TempDir()
	}
	_, s.proxyPort, _ = net.SplitHostPort(env.ProxyAddr)
	_, s.webPort, _ = net.SplitHostPort(env.WebAddr)
	text := func(body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, "<!DOCTYPE html><title>target</title><p>%s</p>", body)
		})
	}
	panel := testenv.StartHTTPS(t, "127.0.0.1:0", env.TargetCert(t, "12345-se1.maint."+env.Domain, "12345.maint."+env.Domain), text(s.panelText))
	colo := testenv.StartHTTPS(t, "127.0.0.5:0", env.TargetCert(t, "12345-se1-127.0.0.5.maint."+env.Domain), text(s.coloText))
	direct := testenv.StartHTTPS(t, "127.0.0.1:0", env.TargetCert(t, "direct."+env.Domain),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.directHits.Add(1)
			text(s.directText).ServeHTTP(w, r)
		}))
	_, coloPort, _ := net.SplitHostPort(colo)
	_, directPort, _ := net.SplitHostPort(direct)
	var coloPortN int
	fmt.Sscan(coloPort, &coloPortN)
	// SSH and RDP are offered (so the access page lists their commands) but never dialled.
	unused := testenv.RefusedAddr(t, "127.0.0.1")
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true,
		Services:  map[int]string{7071: panel, 22: unused, 3389: unused},
		Colocated: true, Tunnels: []config.Tunnel{{Application: "HTTPS", IP: "127.0.0.5", Port: coloPortN}}})
	// SE2's customer switched remote access off; its services and tunnel entry are listed
	// in its agent's file all the same.
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE2", RemoteAccess: false,
		Services:  map[int]string{7071: panel, 22: unused},
		Colocated: true, Tunnels: []config.Tunnel{{Application: "RDP", IP: "127.0.0.6", Port: 3389}}})
	s.panelURL = "https://12345-SE1.maint." + env.Domain + ":7071/login"
	s.coloURL = "https://12345-SE1-127.0.0.5.maint." + env.Domain + ":" + coloPort + "/"
	s.directURL = "https://direct." + env.Domain + ":" + directPort + "/"
	s.home = browserNSS(t, env.CAFile)
	return s
}

// corpHost names the corporate proxy and PAC server of the extension tests (loopback).
const corpHost = "corp.example.test"

// resolverRules resolve only the broker's, the direct site's and the corporate servers'
// names, all to loopback; every other name (and IP literal) fails, so the browser cannot
// reach anything off this machine.
func (s *browserSetup) resolverRules() string {
	d := s.env.Domain
	return "MAP maint." + d + " 127.0.0.1, MAP admin." + d + " 127.0.0.1, MAP direct." + d + " 127.0.0.1, MAP " + corpHost + " 127.0.0.1, MAP * ~NOTFOUND"
}

func (s *browserSetup) webURL(path string) string {
	return "https://admin." + s.env.Domain + ":" + s.webPort + path
}

// run executes job with visit.js and returns its result.
func (s *browserSetup) run(t *testing.T, dir string, job browserJob) browserResult {
	t.Helper()
	job.ResolverRules, job.Chromium, job.TimeoutMs = s.resolverRules(), browserChromium, 15000
	jobFile := filepath.Join(t.TempDir(), "job.json")
	data, _ := json.Marshal(job)
	if err := os.WriteFile(jobFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "visit.js"), jobFile)
	cmd.Env = append(os.Environ(), "HOME="+s.home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("visit.js (%s): %v\n%s", job.Mode, err, stderr.String())
	}
	var res browserResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("visit.js output %q: %v\n%s", stdout.String(), err, stderr.String())
	}
	for _, v := range res.Visits {
		t.Logf("%s: status %d, error %q, challenges %v, text %.200q", v.Name, v.Status, v.Error, v.Challenges, v.Text)
	}
	return res
}

// downloadExtension fetches chrome-extension.zip from the broker and unzips it.
func (s *browserSetup) downloadExtension(t *testing.T) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.env.CAPool(t), ServerName: "admin." + s.env.Domain}}}
	resp, err := client.Get("https://" + s.env.WebAddr + "/com/remoteproxy/chrome-extension.zip")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chrome-extension.zip: %s: %s", resp.Status, body)
	}
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		b, _ := io.ReadAll(rc)
		rc.Close()
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "maintproxy-extension")
}

func browserFind(t *testing.T, res browserResult, name string) browserVisit {
	t.Helper()
	for _, v := range res.Visits {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no result for visit %s", name)
	return browserVisit{}
}

func proxyChallenges(v browserVisit) int {
	n := 0
	for _, c := range v.Challenges {
		if c.Source == "Proxy" {
			n++
		}
	}
	return n
}

// TestBrowser drives headless Chromium through the broker's PAC file and through its
// Chrome extension, with proxy credentials answered at the browser's auth prompt.
func TestBrowser(t *testing.T) {
	dir := browserNeeds(t)
	s := browserStart(t)
	good := &browserCreds{"resa", "pass-a"}
	shots := map[string]string{}
	for _, name := range []string{"access-page", "access-system", "access-remote-off", "access-overview-1000"} {
		shots[name] = filepath.Join(s.artifacts, name+".png")
	}

	t.Run("PAC", func(t *testing.T) {
		res := s.run(t, dir, browserJob{Mode: "pac", PACURL: s.webURL("/com/remoteproxy/proxy.pac"), Visits: []browserVisit{
			{Name: "panel", URL: s.panelURL, ProxyAuth: good},
			{Name: "bare-primary", URL: "https://12345.maint." + s.env.Domain + ":7071/login", ProxyAuth: good},
			{Name: "colocated", URL: s.coloURL, ProxyAuth: good},
			{Name: "wrong-password", URL: s.panelURL, ProxyAuth: &browserCreds{"resa", "wrong"}},
			{Name: "plain-http", URL: "http://12345-SE1.maint." + s.env.Domain + ":7071/login", ProxyAuth: good},
			{Name: "direct", URL: s.directURL, ProxyAuth: good},
		}})

		// The real page behind the real agent, after the browser's proxy login.
		v := browserFind(t, res, "panel")
		if v.Status != 200 || !strings.Contains(v.Text, s.panelText) {
			t.Errorf("panel: status %d, error %q, text %q", v.Status, v.Error, v.Text)
		}
		if n := proxyChallenges(v); n != 1 || v.Challenges[0].Scheme != "basic" || v.Challenges[0].Realm != "maint."+s.env.Domain {
			t.Errorf("panel: want one Basic proxy challenge for maint.%s, got %v", s.env.Domain, v.Challenges)
		}
		for name, want := range map[string]string{"bare-primary": s.panelText, "colocated": s.coloText} {
			v = browserFind(t, res, name)
			if v.Status != 200 || !strings.Contains(v.Text, want) {
				t.Errorf("%s: status %d, error %q, text %q", name, v.Status, v.Error, v.Text)
			}
		}
		// A wrong password: the login prompt comes back, the page never loads.
		v = browserFind(t, res, "wrong-password")
		if proxyChallenges(v) < 2 || v.Status == 200 || strings.Contains(v.Text, s.panelText) {
			t.Errorf("wrong password: want the proxy prompt again and no page, got %v, status %d, text %q", v.Challenges, v.Status, v.Text)
		}
		// http:// is not tunnelled: the proxy's 405 says what is supported.
		v = browserFind(t, res, "plain-http")
		if v.Status != http.StatusMethodNotAllowed || !strings.Contains(v.Text, "HTTPS") || strings.Contains(v.Text, s.panelText) {
			t.Errorf("plain http: status %d, error %q, text %q", v.Status, v.Error, v.Text)
		}
		// Anything else goes direct: no proxy prompt, the site sees the browser itself.
		v = browserFind(t, res, "direct")
		if v.Status != 200 || !strings.Contains(v.Text, s.directText) || len(v.Challenges) != 0 || s.directHits.Load() == 0 {
			t.Errorf("direct: status %d, error %q, challenges %v, hits %d", v.Status, v.Error, v.Challenges, s.directHits.Load())
		}
	})

	t.Run("AccessPages", func(t *testing.T) {
		d := s.env.Domain
		res := s.run(t, dir, browserJob{Mode: "pac", PACURL: s.webURL("/com/remoteproxy/proxy.pac"), Visits: []browserVisit{
			{Name: "overview", URL: s.webURL("/com/remoteproxy/access"), ServerAuth: good, Screenshot: shots["access-page"],
				Actions: []browserAction{
					{Type: "count", Selector: "tr[data-l]", Name: "all"},
					{Type: "fill", Selector: "#filter", Value: "se2"},
					{Type: "count", Selector: "tr[data-l]", Name: "se2"},
					{Type: "fill", Selector: "#filter", Value: ""},
					{Type: "select", Selector: "#light", Value: "green"},
					{Type: "count", Selector: "tr[data-l]", Name: "green"},
				}},
			// The technician's choices change the commands in place; the copies carry them
			// and the password.
			{Name: "system", URL: s.webURL("/com/remoteproxy/access/12345/se1"), ServerAuth: good, Screenshot: shots["access-system"],
				Actions: []browserAction{
					{Type: "fill", Selector: "input[name=ssh_user]", Value: "admin"},
					{Type: "fill", Selector: "input[name=port]", Value: "14000"},
					{Type: "waitText", Selector: `code[data-id="12345/se1/rdp/maint_forward"]`, Text: "127.0.0.1:14000"},
					{Type: "waitText", Selector: `code[data-id="12345/se1/ssh_linux"]`, Text: "ssh admin@"},
				},
				Copy: []string{"12345/se1/ssh_linux", "12345/se1/rdp/maint_forward"}},
			{Name: "remote-off", URL: s.webURL("/com/remoteproxy/access/12345/se2"), ServerAuth: good, Screenshot: shots["access-remote-off"],
				Actions: []browserAction{{Type: "count", Selector: "a[href*='12345-se2'], button.copy, code.cmd", Name: "offers"}}},
		}})
		v := browserFind(t, res, "overview")
		if v.Status != 200 || len(v.Challenges) == 0 || v.Challenges[0].Source != "Server" || v.Challenges[0].Realm != "admin."+d {
			t.Fatalf("overview: status %d, error %q, challenges %v", v.Status, v.Error, v.Challenges)
		}
		for _, want := range []string{"12345", "67890", "Online since", "Remote operations not allowed", "Waiting for first connection",
			"msedge.exe --proxy-pac-url=" + s.webURL("/com/remoteproxy/proxy.pac"), "Trust the root certificate"} {
			if !strings.Contains(v.Text, want) {
				t.Errorf("overview lacks %q", want)
			}
		}
		for _, bad := range []string{"55555", "pass-a", "certutil -user"} { // the trust steps are collapsed
			if strings.Contains(v.Text, bad) {
				t.Errorf("overview shows %q", bad)
			}
		}
		if c := v.Counts; c["all"] != 3 || c["se2"] != 1 || c["green"] != 1 {
			t.Errorf("overview filter: rows %v, want all 3, se2 1, green 1", c)
		}
		v = browserFind(t, res, "system")
		p := s.proxyPort
		wantSSH := fmt.Sprintf(`ssh admin@12345-se1.maint.%s -p 22 -oProxyCommand="proxytunnel -E --proxy=maint.%s:%s --dest=12345-se1.maint.%s:22 -P 'resa:pass-a' -C ~/maintproxy-tools/maintproxy-ca.pem"`, d, d, p, d)
		if got := v.Copies["12345/se1/ssh_linux"]; got != wantSSH {
			t.Errorf("copied ssh command\n got %q\nwant %q", got, wantSSH)
		}
		if got, want := v.Copies["12345/se1/rdp/maint_forward"], "maint forward --listen 127.0.0.1:14000 12345-se1.maint."+d+":3389"; got != want {
			t.Errorf("copied maint command %q, want %q", got, want)
		}
		for _, want := range []string{"12345-se1-127.0.0.5.maint." + d, "'resa:*****'", "https://12345-se1.maint." + d + ":7071/login"} {
			if !strings.Contains(v.TextAfter, want) {
				t.Errorf("system page lacks %q", want)
			}
		}
		if strings.Contains(v.TextAfter, "pass-a") || strings.Contains(v.TextAfter, "root@") {
			t.Errorf("system page shows the password or root@")
		}
		// Remote access off: the banner and nothing that would fail.
		v = browserFind(t, res, "remote-off")
		if v.Status != 200 || !strings.Contains(v.Text, "Remote access is disabled") || !strings.Contains(v.Text, "Remote operations not allowed") {
			t.Errorf("remote access off: status %d, error %q, text %q", v.Status, v.Error, v.Text)
		}
		for _, bad := range []string{"proxytunnel", "ssh ", "https://12345-se2", "127.0.0.6", "Copy"} {
			if strings.Contains(v.Text, bad) {
				t.Errorf("remote access off page offers %q", bad)
			}
		}
		if v.Counts["offers"] != 0 {
			t.Errorf("remote access off page has %d links, commands or copy buttons", v.Counts["offers"])
		}
		for name, shot := range shots {
			if name == "access-overview-1000" {
				continue
			}
			if png, err := os.ReadFile(shot); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
				t.Errorf("screenshot %s: %v", shot, err)
			}
		}
	})

	// A reseller with 1,000 systems: the overview's size, the browser's render time (logged,
	// not asserted) and the filter.
	t.Run("Overview1000", func(t *testing.T) {
		res := s.run(t, dir, browserJob{Mode: "pac", PACURL: s.webURL("/com/remoteproxy/proxy.pac"), Visits: []browserVisit{
			{Name: "big", URL: s.webURL("/com/remoteproxy/access"), ServerAuth: &browserCreds{"big", "pass-big"}, Measure: true,
				Screenshot: shots["access-overview-1000"],
				Actions: []browserAction{
					{Type: "count", Selector: "tr[data-l]", Name: "all"},
					{Type: "fill", Selector: "#filter", Value: "100042"},
					{Type: "waitText", Selector: "#shown", Text: "4 shown"},
					{Type: "count", Selector: "tr[data-l]", Name: "customer"},
					{Type: "fill", Selector: "#filter", Value: "100042-ucm1"},
					{Type: "count", Selector: "tr[data-l]", Name: "system"},
				}},
		}})
		v := browserFind(t, res, "big")
		if v.Status != 200 || v.Timing == nil {
			t.Fatalf("overview of 1,000 systems: status %d, error %q", v.Status, v.Error)
		}
		if c := v.Counts; c["all"] != 1000 || c["customer"] != 4 || c["system"] != 1 {
			t.Errorf("rows %v, want all 1000, customer 4, system 1", c)
		}
		if v.Timing.DecodedBodySize > 300<<10 {
			t.Errorf("overview of 1,000 systems is %d bytes, over 300 KB", v.Timing.DecodedBodySize)
		}
		tm := v.Timing
		t.Logf("overview of 1,000 systems in Chromium: %d bytes; from navigation start (401 and login included): first byte %.0f ms, "+
			"last byte %.0f ms, DOM interactive %.0f ms, DOMContentLoaded %.0f ms, load %.0f ms; after the last byte: parsed in %.0f ms, "+
			"scripts and styles done in %.0f ms, loaded in %.0f ms; filter typed to result in %d ms",
			tm.DecodedBodySize, tm.ResponseStart, tm.ResponseEnd, tm.DOMInteractive, tm.DOMContentLoaded, tm.Load,
			tm.DOMInteractive-tm.ResponseEnd, tm.DOMContentLoaded-tm.ResponseEnd, tm.Load-tm.ResponseEnd, v.Counts["ms:4 shown"])
	})

	t.Run("Extension", func(t *testing.T) {
		ext := s.downloadExtension(t)
		res := s.run(t, dir, browserJob{Mode: "extension", ExtensionDir: ext, ProfileDir: t.TempDir(), Visits: []browserVisit{
			{Name: "panel", URL: s.panelURL, ProxyAuth: good},
			{Name: "colocated", URL: s.coloURL, ProxyAuth: good},
			{Name: "direct", URL: s.directURL, ProxyAuth: good},
		}})
		if !strings.HasPrefix(res.Extension.Worker, "chrome-extension://") || !strings.Contains(string(res.Extension.Setting), "pac_script") {
			t.Errorf("extension: worker %q, setting %s", res.Extension.Worker, res.Extension.Setting)
		}
		for name, want := range map[string]string{"panel": s.panelText, "colocated": s.coloText, "direct": s.directText} {
			v := browserFind(t, res, name)
			if v.Status != 200 || !strings.Contains(v.Text, want) || proxyChallenges(v) > 1 || name == "direct" && len(v.Challenges) > 0 {
				t.Errorf("extension %s: status %d, error %q, challenges %v, text %q", name, v.Status, v.Error, v.Challenges, v.Text)
			}
		}
	})

	t.Run("ExtensionKeepsFixedProxy", func(t *testing.T) { browserExtensionKeepsFixedProxy(t, s, dir) })
	t.Run("ExtensionKeepsPACURL", func(t *testing.T) { browserExtensionKeepsPACURL(t, s, dir) })
}
