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
	Name       string             `json:"name"`
	URL        string             `json:"url"`
	ProxyAuth  *browserCreds      `json:"proxyAuth,omitempty"`
	ServerAuth *browserCreds      `json:"serverAuth,omitempty"`
	Screenshot string             `json:"screenshot,omitempty"`
	Copy       []string           `json:"copy,omitempty"`
	Status     int                `json:"status"`
	Text       string             `json:"text"`
	Error      string             `json:"error"`
	Challenges []browserChallenge `json:"challenges"`
	Copies     map[string]string  `json:"copies"`
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

func browserStart(t *testing.T) *browserSetup {
	t.Helper()
	env := testenv.Start(t, testenv.Options{})
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
	s.panelURL = "https://12345-SE1.maint." + env.Domain + ":7071/login"
	s.coloURL = "https://12345-SE1-127.0.0.5.maint." + env.Domain + ":" + coloPort + "/"
	s.directURL = "https://direct." + env.Domain + ":" + directPort + "/"
	s.home = browserNSS(t, env.CAFile)
	return s
}

// resolverRules resolve only the broker's and the direct site's names, all to loopback;
// every other name fails, so the browser cannot reach anything off this machine.
func (s *browserSetup) resolverRules() string {
	d := s.env.Domain
	return "MAP maint." + d + " 127.0.0.1, MAP admin." + d + " 127.0.0.1, MAP direct." + d + " 127.0.0.1, MAP * ~NOTFOUND"
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
	shot := filepath.Join(s.artifacts, "access-page.png")

	t.Run("PAC", func(t *testing.T) {
		res := s.run(t, dir, browserJob{Mode: "pac", PACURL: s.webURL("/com/remoteproxy/proxy.pac"), Visits: []browserVisit{
			{Name: "panel", URL: s.panelURL, ProxyAuth: good},
			{Name: "bare-primary", URL: "https://12345.maint." + s.env.Domain + ":7071/login", ProxyAuth: good},
			{Name: "colocated", URL: s.coloURL, ProxyAuth: good},
			{Name: "wrong-password", URL: s.panelURL, ProxyAuth: &browserCreds{"resa", "wrong"}},
			{Name: "plain-http", URL: "http://12345-SE1.maint." + s.env.Domain + ":7071/login", ProxyAuth: good},
			{Name: "direct", URL: s.directURL, ProxyAuth: good},
			{Name: "access", URL: s.webURL("/com/remoteproxy/access"), ServerAuth: good, Screenshot: shot,
				Copy: []string{"12345/se1/ssh_linux", "12345/se1/rdp/maint_forward"}},
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
		browserCheckAccess(t, s, browserFind(t, res, "access"), shot)
	})

	t.Run("Extension", func(t *testing.T) {
		ext := s.downloadExtension(t)
		res := s.run(t, dir, browserJob{Mode: "extension", ExtensionDir: ext, ProfileDir: t.TempDir(), Visits: []browserVisit{
			{Name: "panel", URL: s.panelURL, ProxyAuth: good},
			{Name: "colocated", URL: s.coloURL, ProxyAuth: good},
		}})
		if !strings.HasPrefix(res.Extension.Worker, "chrome-extension://") || !strings.Contains(string(res.Extension.Setting), "pac_script") {
			t.Errorf("extension: worker %q, setting %s", res.Extension.Worker, res.Extension.Setting)
		}
		for _, name := range []string{"panel", "colocated"} {
			v := browserFind(t, res, name)
			want := map[string]string{"panel": s.panelText, "colocated": s.coloText}[name]
			if v.Status != 200 || !strings.Contains(v.Text, want) || proxyChallenges(v) > 1 {
				t.Errorf("extension %s: status %d, error %q, challenges %v, text %q", name, v.Status, v.Error, v.Challenges, v.Text)
			}
		}
	})
}

// browserCheckAccess checks the access page as rendered by Chromium for resa.
func browserCheckAccess(t *testing.T, s *browserSetup, v browserVisit, shot string) {
	t.Helper()
	if v.Status != 200 {
		t.Fatalf("access page: status %d, error %q", v.Status, v.Error)
	}
	if len(v.Challenges) == 0 || v.Challenges[0].Source != "Server" || v.Challenges[0].Realm != "admin."+s.env.Domain {
		t.Errorf("access page: want a Basic login for admin.%s, got %v", s.env.Domain, v.Challenges)
	}
	for _, want := range []string{"Customer 12345", "Customer 67890", "Online since", "Waiting for first connection",
		"12345-se1-127.0.0.5.maint." + s.env.Domain, "'resa:*****'"} {
		if !strings.Contains(v.Text, want) {
			t.Errorf("access page lacks %q", want)
		}
	}
	for _, bad := range []string{"55555", "pass-a"} {
		if strings.Contains(v.Text, bad) {
			t.Errorf("access page shows %q", bad)
		}
	}
	if png, err := os.ReadFile(shot); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("screenshot %s: %v", shot, err)
	}
	d, p := s.env.Domain, s.proxyPort
	wantSSH := fmt.Sprintf(`ssh root@12345-se1.maint.%s -p 22 -oProxyCommand="proxytunnel -E --proxy=maint.%s:%s --dest=12345-se1.maint.%s:22 -P 'resa:pass-a' -C ~/maintproxy-tools/maintproxy-ca.pem"`, d, d, p, d)
	if got := v.Copies["12345/se1/ssh_linux"]; got != wantSSH {
		t.Errorf("copied ssh command\n got %q\nwant %q", got, wantSSH)
	}
	wantFwd := "maint forward --listen 127.0.0.1:13389 12345-se1.maint." + d + ":3389"
	if got := v.Copies["12345/se1/rdp/maint_forward"]; got != wantFwd {
		t.Errorf("copied maint command %q, want %q", got, wantFwd)
	}
}
