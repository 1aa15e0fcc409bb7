package pac

import (
	"encoding/json"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/guard"
)

func TestAccessNeedsAuth(t *testing.T) {
	e := newTestEnv(t, "")
	paths := []string{"/com/remoteproxy/access", "/com/remoteproxy/access/copy?id=12345/se1/ssh_linux",
		"/com/remoteproxy/access/12345/se1", "/com/remoteproxy/access/ssh_config",
		"/com/remoteproxy/access/12345/se1/12345-se1-3389.rdp"}
	for _, tc := range []struct{ name, user, pass string }{
		{"no credentials", "", ""},
		{"wrong password", "resa", "not-the-password"},
		{"unknown user", "nobody", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range paths {
				w := e.get(t, path, tc.user, tc.pass)
				if w.Code != http.StatusUnauthorized {
					t.Fatalf("%s: status %d, want 401", path, w.Code)
				}
				if got := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, `Basic realm="admin.example.test"`) {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				mustNotContain(t, w.Body.String(), "12345", "ssh ")
			}
		})
	}
	if strings.Contains(e.logs.String(), "not-the-password") {
		t.Errorf("log contains the password:\n%s", e.logs)
	}
}

// TestAccessBusyIs429: when the password check is refused by admission control, the page
// answers 429 with Retry-After at once instead of a login prompt.
func TestAccessBusyIs429(t *testing.T) {
	e := newTestEnv(t, "")
	busy := &guard.Refusal{Reason: "busy", Wait: 1500 * time.Millisecond}
	e.handler = New(Options{
		Config:       func() *config.Broker { return e.cfg },
		Status:       func(string, string) SystemStatus { return SystemStatus{} },
		Authenticate: func(string, string, string) (*config.Account, error) { return nil, busy },
		RootPEM:      func() []byte { return nil },
		Logger:       slog.New(slog.DiscardHandler),
	})
	w := e.get(t, "/com/remoteproxy/access", "resa", "pass-a")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" || w.Header().Get("WWW-Authenticate") != "" {
		t.Fatalf("busy: %d %v", w.Code, w.Header())
	}
}

// TestOverview: lights and messages for every state, no commands, the browser and trust
// help collapsed, only the account's customers.
func TestOverview(t *testing.T) {
	e := newTestEnv(t, "")
	w := e.get(t, "/com/remoteproxy/access", "resa", "pass-a'$x")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("status %d, type %q: %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	raw := w.Body.String()
	body := html.UnescapeString(raw)
	rows := map[string]string{
		"se1":    `green.*Online since .*\(1 h 30 min\)`,
		"se2":    `orange.*Remote operations not allowed`,
		"se3":    `green.*Online since`,
		"se4":    `green.*via se1.*Online since`,
		"main":   `red.*Waiting for first connection`,
		"backup": `red.*System not reachable or offline for the last 1 h 30 min \(since `,
		"edge":   `orange.*Authorization failed`,
	}
	for name, pattern := range rows {
		re := regexp.MustCompile(`<tr data-l="(\w+)">.*<a href="access/\d+/` + name + `">` + name + `</a>.*`)
		line := re.FindString(body)
		if line == "" || !regexp.MustCompile(pattern).MatchString(line) {
			t.Errorf("row of %s = %q, want %s", name, line, pattern)
		}
	}
	// Customers (networks): 12345 has se2 not allowed; 67890 has two servers offline.
	mustContain(t, body,
		`<i class="l orange"></i><td><b>12345</b> Hotel Zuid<td>se2: Remote operations not allowed`,
		`<i class="l orange"></i><td><b>67890</b><td>2 of 3 servers offline`,
		"Customers and systems <span class=\"count\">(7)</span>",
		`id="filter"`,
		// The browser help, collapsed.
		"msedge.exe --proxy-pac-url=https://admin.example.test:8443/com/remoteproxy/proxy.pac",
		"AuthSchemes", "basic,ntlm,negotiate", "Automatic proxy configuration URL",
		"certutil -user -addstore Root maintproxy-ca.pem", "security add-trusted-cert", "update-ca-certificates",
		"certutil -d sql:$HOME/.pki/nssdb", "Trust this CA to identify websites",
		`href="https://admin.example.test:8443/com/remoteproxy/maintproxy-ca.pem"`,
		"The broker's certificate expires in 42 days.",
		`href="https://admin.example.test:8443/com/remoteproxy/access/ssh_config"`,
		"<code>maintproxy-ca.pem</code>, <code>README.txt</code>", // exactly the bundle: no clients here
	)
	if strings.Contains(raw, "<details open") {
		t.Error("help sections are not collapsed")
	}
	// The overview carries no commands and no password, and no other account's customers.
	mustNotContain(t, body, "proxytunnel", "ssh ", "pass-a", "*****'", "55555", "secret-sys", "Other Reseller")
	w = e.get(t, "/com/remoteproxy/access", "resb", "pass-b")
	mustContain(t, w.Body.String(), "<b>55555</b>")
	mustNotContain(t, w.Body.String(), "12345", "67890")
}

func TestOverviewJSON(t *testing.T) {
	e := newTestEnv(t, "")
	w := e.get(t, "/com/remoteproxy/access", "resa", "pass-a'$x", "Accept", "application/json")
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q: %s", ct, w.Body)
	}
	var v struct {
		Account      string   `json:"account"`
		PACURL       string   `json:"pac_url"`
		RootURL      string   `json:"root_url"`
		SSHConfigURL string   `json:"ssh_config_url"`
		Tools        []string `json:"tools"`
		Systems      int      `json:"systems"`
		Customers    []struct {
			ID      string `json:"id"`
			Light   string `json:"light"`
			Message string `json:"message"`
			Systems []struct {
				Name         string  `json:"name"`
				Light        string  `json:"light"`
				Message      string  `json:"message"`
				Online       bool    `json:"online"`
				Since        *string `json:"since"`
				Via          string  `json:"via"`
				RemoteAccess bool    `json:"remote_access"`
				URL          string  `json:"url"`
			} `json:"systems"`
		} `json:"customers"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.Account != "resa" || v.Systems != 7 || len(v.Customers) != 2 || v.Customers[0].ID != "12345" || v.Customers[1].ID != "67890" {
		t.Fatalf("unexpected overview: %+v", v)
	}
	if v.Customers[0].Light != "orange" || v.Customers[1].Light != "orange" || v.Customers[1].Message != "2 of 3 servers offline" {
		t.Errorf("customer lights: %+v", v.Customers)
	}
	se1, se2, se4 := v.Customers[0].Systems[0], v.Customers[0].Systems[1], v.Customers[0].Systems[3]
	if se1.Light != "green" || !se1.Online || se1.Since == nil || se1.URL != "https://admin.example.test:8443/com/remoteproxy/access/12345/se1" {
		t.Errorf("se1 = %+v", se1)
	}
	if se2.Light != "orange" || se2.Message != MsgNotAllowed || se2.RemoteAccess {
		t.Errorf("se2 = %+v", se2)
	}
	if se4.Via != "se1" {
		t.Errorf("se4 = %+v", se4)
	}
	edge := v.Customers[1].Systems[2]
	if edge.Light != "orange" || edge.Message != MsgAuthFailed || edge.Since != nil {
		t.Errorf("edge = %+v", edge)
	}
	if strings.Join(v.Tools, " ") != "maintproxy-ca.pem README.txt" || v.RootURL == "" || v.SSHConfigURL == "" {
		t.Errorf("tools %v, root %q, ssh_config %q", v.Tools, v.RootURL, v.SSHConfigURL)
	}
	mustNotContain(t, w.Body.String(), "pass-a", "commands", "proxytunnel")
	// ?format=json works for clients that cannot set headers.
	w = e.get(t, "/com/remoteproxy/access?format=json", "resb", "pass-b")
	mustContain(t, w.Body.String(), `"id": "55555"`)
}

// TestSystemPageListsOnlyWhatWorks: each system's page offers what its switches allow.
func TestSystemPageListsOnlyWhatWorks(t *testing.T) {
	e := newTestEnv(t, "")
	page := func(path string) string {
		t.Helper()
		w := e.get(t, "/com/remoteproxy/access/"+path, "resa", "pass-a'$x")
		if w.Code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", path, w.Code, w.Body)
		}
		return html.UnescapeString(w.Body.String())
	}
	se1 := page("12345/se1")
	mustContain(t, se1,
		"Customer <b>12345</b> – Hotel Zuid", `<i class="l green" title="green"></i>se1`, "Online since",
		"https://12345-se1.maint.example.test:7071/login",
		"https://12345-se1.maint.example.test:9443/onexportal-admin.html",
		"https://12345-se1.maint.example.test:52233/WebLM/index.jsp",
		"https://12345-se1-127.0.0.5.maint.example.test:8443/", // co-located HTTPS tunnel entry
		// The manual's <user-name>, the tools folders, the first local port.
		`ssh <user-name>@12345-se1.maint.example.test -p 22 -oProxyCommand="proxytunnel -E --proxy=maint.example.test:16443 --dest=12345-se1.maint.example.test:22 -P 'resa:*****' -C ~/maintproxy-tools/maintproxy-ca.pem"`,
		`ssh <user-name>@12345-se1.maint.example.test -p 22 -oProxyCommand="C:/maintproxy-tools/proxytunnel.exe -E`,
		`C:/maintproxy-tools/proxytunnel.exe --standalone=13389 -E --proxy=maint.example.test:16443 --dest=12345-se1.maint.example.test:3389 -P 'resa:*****'`,
		`ssh -p 22 -o ProxyCommand="maint connect %h:%p" <user-name>@12345-se1.maint.example.test`,
		"mstsc /v:127.0.0.1:13389",
		// The tunnel entries: the RDP one forwards on the next port, the SSH one gets SSH commands.
		"maint forward --listen 127.0.0.1:13390 12345-se1-192.168.1.20.maint.example.test:3389",
		`ssh <user-name>@12345-se1-192.168.1.30.maint.example.test -p 22`,
		`href="https://admin.example.test:8443/com/remoteproxy/access/12345/se1/12345-se1-3389.rdp"`,
		`href="https://admin.example.test:8443/com/remoteproxy/access/12345/se1/12345-se1-192.168.1.20-3389.rdp"`,
		`data-copy="12345/se1/ssh_linux"`, `data-id="12345/se1/t1/maint_forward"`,
		`name="ssh_user"`, `name="tools_linux" value="~/maintproxy-tools"`, `name="port" value="13389"`,
	)
	mustNotContain(t, se1, "pass-a", "Remote access is disabled", "root@")

	// Remote access off: the banner, and nothing that would fail with 403.
	se2 := page("12345/se2")
	mustContain(t, se2, "Remote access is disabled", "Remote operations not allowed", `<strong class="off">off</strong>`)
	mustNotContain(t, se2, "https://12345-se2", "proxytunnel", "ssh ", "maint forward", "192.168.1.21", "data-copy", ".rdp")

	// Co-located off: the server's own services, no tunnel entries.
	se3 := page("12345/se3")
	mustContain(t, se3, "ssh <user-name>@12345-se3.maint.example.test", "Co-located servers are switched off")
	mustNotContain(t, se3, "192.168.1.22", "TCP tunnel entries")

	// A secondary reached through the primary's agent says so.
	mustContain(t, page("12345/se4"), "Reached through the agent of <b>se1</b>", "ssh <user-name>@12345-se4.maint.example.test")

	// Never connected: the usual services, said to be assumed.
	main := page("67890/main")
	mustContain(t, main, "Waiting for first connection", "not known until the system connects",
		"https://67890-main.maint.example.test:7071/login", "ssh <user-name>@67890-main.maint.example.test")

	// Another account's system, and one that does not exist, are the same 404.
	for _, path := range []string{"55555/secret-sys", "12345/se9", "99999/se1", "12345/se1/nothing.rdp"} {
		if w := e.get(t, "/com/remoteproxy/access/"+path, "resa", "pass-a'$x"); w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "secret") {
			t.Errorf("%s: status %d: %s", path, w.Code, w.Body)
		}
	}
}

func TestSystemJSON(t *testing.T) {
	e := newTestEnv(t, "")
	var v struct {
		Customer string    `json:"customer"`
		Params   cmdParams `json:"params"`
		System   struct {
			ID       string            `json:"id"`
			Light    string            `json:"light"`
			Disabled bool              `json:"remote_access_disabled"`
			Services []serviceView     `json:"services"`
			Commands map[string]string `json:"commands"`
			RDP      map[string]string `json:"rdp_commands"`
			RDPFile  string            `json:"rdp_file"`
			Tunnels  []struct {
				ID       string            `json:"id"`
				URL      string            `json:"url"`
				Commands map[string]string `json:"commands"`
				RDPFile  string            `json:"rdp_file"`
			} `json:"tunnels"`
		} `json:"system"`
	}
	w := e.get(t, "/com/remoteproxy/access/12345/SE1?format=json&ssh_user=tech&port=14000", "resa", "pass-a'$x")
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("%v: %s", err, w.Body)
	}
	s := v.System
	if v.Customer != "12345" || s.ID != "12345/se1" || s.Light != "green" || s.Disabled || len(s.Services) != 4 || len(s.Tunnels) != 3 {
		t.Fatalf("se1 = %+v", v)
	}
	if v.Params.SSHUser != "tech" || v.Params.Port != 14000 {
		t.Errorf("params %+v", v.Params)
	}
	if !strings.HasPrefix(s.Commands["ssh_linux"], "ssh tech@12345-se1.maint.example.test") || !strings.Contains(s.Commands["ssh_linux"], "'resa:*****'") {
		t.Errorf("ssh_linux = %s", s.Commands["ssh_linux"])
	}
	if s.RDP["maint_forward"] != "maint forward --listen 127.0.0.1:14000 12345-se1.maint.example.test:3389" ||
		s.RDPFile != "https://admin.example.test:8443/com/remoteproxy/access/12345/se1/12345-se1-3389.rdp?port=14000&ssh_user=tech" {
		t.Errorf("rdp %v, file %s", s.RDP, s.RDPFile)
	}
	if s.Tunnels[0].URL == "" || s.Tunnels[1].ID != "12345/se1/t1" || s.Tunnels[1].Commands["maint_forward"] != "maint forward --listen 127.0.0.1:14001 12345-se1-192.168.1.20.maint.example.test:3389" ||
		s.Tunnels[2].Commands["ssh_linux"] == "" || s.Tunnels[2].RDPFile != "" {
		t.Errorf("tunnels %+v", s.Tunnels)
	}
	w = e.get(t, "/com/remoteproxy/access/12345/se2", "resa", "pass-a'$x", "Accept", "application/json")
	mustContain(t, w.Body.String(), `"remote_access_disabled": true`, `"tunnels": []`, `"services": []`)
	mustNotContain(t, w.Body.String(), `"commands"`, "rdp")
}

// TestParams: the technician's choices reach every command; bad values are refused, named.
func TestParams(t *testing.T) {
	e := newTestEnv(t, "")
	q := url.Values{"ssh_user": {"admin"}, "tools_linux": {"/opt/maint-tools/"}, "tools_windows": {`D:\Tools\maint`}, "port": {"20000"}}
	w := e.get(t, "/com/remoteproxy/access/12345/se1?"+q.Encode(), "resa", "pass-a'$x")
	body := html.UnescapeString(w.Body.String())
	mustContain(t, body,
		`ssh admin@12345-se1.maint.example.test -p 22 -oProxyCommand="proxytunnel -E --proxy=maint.example.test:16443 --dest=12345-se1.maint.example.test:22 -P 'resa:*****' -C /opt/maint-tools/maintproxy-ca.pem"`,
		`D:/Tools/maint/proxytunnel.exe --standalone=20000 -E`, "-C D:/Tools/maint/maintproxy-ca.pem",
		"maint forward --listen 127.0.0.1:20001 12345-se1-192.168.1.20", `value="admin"`, `value="D:/Tools/maint"`)
	for _, bad := range []struct{ query, field string }{
		{"ssh_user=root%3Brm", "ssh_user"}, {"ssh_user=-oProxyCommand", "ssh_user"},
		{"tools_linux=/a%20b", "tools_linux"}, {"tools_linux=$HOME/x", "tools_linux"}, {"tools_linux=/a/~b", "tools_linux"},
		{"tools_windows=C:/Program%20Files", "tools_windows"}, {"tools_windows=%22C:/x", "tools_windows"},
		{"port=80", "port"}, {"port=70000", "port"}, {"port=x", "port"},
	} {
		w := e.get(t, "/com/remoteproxy/access/12345/se1?"+bad.query, "resa", "pass-a'$x")
		if w.Code != http.StatusBadRequest || !strings.HasPrefix(w.Body.String(), bad.field+": ") {
			t.Errorf("%s: status %d: %s", bad.query, w.Code, w.Body)
		}
		w = e.get(t, "/com/remoteproxy/access/12345/se1?format=json&"+bad.query, "resa", "pass-a'$x")
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"field": "`+bad.field+`"`) {
			t.Errorf("%s JSON: status %d: %s", bad.query, w.Code, w.Body)
		}
	}
}

func TestCopyFillsPasswordForOwnSystemsOnly(t *testing.T) {
	e := newTestEnv(t, "")
	copyOf := func(query, user, pass string) (int, string) {
		w := e.get(t, "/com/remoteproxy/access/copy?"+query, user, pass)
		if w.Code == http.StatusOK && w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q", w.Header().Get("Cache-Control"))
		}
		return w.Code, w.Body.String()
	}
	code, got := copyOf("id="+url.QueryEscape("12345/se1/ssh_linux"), "resa", "pass-a'$x")
	want := `ssh <user-name>@12345-se1.maint.example.test -p 22 -oProxyCommand="proxytunnel -E --proxy=maint.example.test:16443 --dest=12345-se1.maint.example.test:22 -P 'resa:pass-a'\\''\$x' -C ~/maintproxy-tools/maintproxy-ca.pem"`
	if code != http.StatusOK || got != want {
		t.Errorf("copy payload %d\n got %s\nwant %s", code, got, want)
	}
	// The page's choices come along.
	_, got = copyOf("id=12345/se1/t1/rdp_standalone&port=15000&tools_windows=E:/t", "resa", "pass-a'$x")
	if got != `E:/t/proxytunnel.exe --standalone=15001 -E --proxy=maint.example.test:16443 --dest=12345-se1-192.168.1.20.maint.example.test:3389 -P 'resa:pass-a'\''$x' -C E:/t/maintproxy-ca.pem` {
		t.Errorf("tunnel copy: %s", got)
	}
	for _, c := range []struct{ query, user, pass string }{
		{"id=12345/se1/ssh_linux", "resb", "pass-b"},            // another reseller's system
		{"id=12345/se2/ssh_linux", "resa", "pass-a'$x"},         // remote access off: no commands
		{"id=12345/se3/t0/rdp_standalone", "resa", "pass-a'$x"}, // co-located off
		{"id=12345/se1/nothing", "resa", "pass-a'$x"},
		{"id=garbage", "resa", "pass-a'$x"},
	} {
		if code, body := copyOf(c.query, c.user, c.pass); code != http.StatusNotFound || strings.Contains(body, "pass") {
			t.Errorf("%s as %s: %d %s", c.query, c.user, code, body)
		}
	}
}

func TestRDPFile(t *testing.T) {
	e := newTestEnv(t, "")
	w := e.get(t, "/com/remoteproxy/access/12345/se1/12345-se1-192.168.1.20-3389.rdp?port=14000", "resa", "pass-a'$x")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-rdp" ||
		w.Header().Get("Content-Disposition") != `attachment; filename="12345-se1-192.168.1.20-3389.rdp"` {
		t.Fatalf("status %d, headers %v: %s", w.Code, w.Header(), w.Body)
	}
	want := "full address:s:127.0.0.1:14001\r\nprompt for credentials:i:1\r\nauthentication level:i:2\r\nscreen mode id:i:2\r\n"
	if w.Body.String() != want {
		t.Errorf("rdp file %q", w.Body.String())
	}
	mustContain(t, e.get(t, "/com/remoteproxy/access/12345/se1/12345-se1-3389.rdp", "resa", "pass-a'$x").Body.String(), "127.0.0.1:13389\r\n")
	for _, path := range []string{"12345/se2/12345-se2-192.168.1.21-3389.rdp", "12345/se3/12345-se3-192.168.1.22-3389.rdp", "12345/se4/12345-se4-3389.rdp"} {
		if w := e.get(t, "/com/remoteproxy/access/"+path, "resa", "pass-a'$x"); w.Code != http.StatusNotFound {
			t.Errorf("%s: %d", path, w.Code)
		}
	}
}

// TestSSHConfig: the snippet names every system with SSH, no password, and OpenSSH reads it
// as meant.
func TestSSHConfig(t *testing.T) {
	e := newTestEnv(t, "")
	w := e.get(t, "/com/remoteproxy/access/ssh_config?ssh_user=tech&tools_linux=/opt/mt", "resa", "pass-a'$x")
	if w.Code != http.StatusOK || !strings.Contains(w.Header().Get("Content-Disposition"), "maintproxy-ssh_config") {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	conf := w.Body.String()
	mustContain(t, conf, "Match host *.maint.example.test\n    ProxyCommand proxytunnel -q -E --proxy=maint.example.test:16443 --dest=%h:%p -P resa -C /opt/mt/maintproxy-ca.pem\n    #ProxyCommand maint connect %h:%p\n    User tech\n",
		"Host 12345-se1 12345\n    HostName 12345-se1.maint.example.test\n", "Host 12345-se3\n", "Host 12345-se4\n",
		"Host 12345-se1-192.168.1.30\n    HostName 12345-se1-192.168.1.30.maint.example.test\n    Port 22\n",
		"Host 67890-backup\n", "Host 67890-main 67890\n")
	mustNotContain(t, conf, "12345-se2", "pass-a", "192.168.1.20", "192.168.1.22", "55555")
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("no OpenSSH client to read the snippet")
	}
	file := filepath.Join(t.TempDir(), "maintproxy.conf")
	os.WriteFile(file, []byte(conf), 0o600)
	out, err := exec.Command(ssh, "-G", "-F", file, "12345").Output()
	if err != nil {
		t.Fatalf("ssh -G: %v", err)
	}
	got := string(out)
	out2, _ := exec.Command(ssh, "-G", "-F", file, "67890-main.maint.example.test").Output()
	if !strings.Contains(string(out2), "\nproxycommand proxytunnel -q -E") {
		t.Errorf("a full maintenance name gets no ProxyCommand:\n%s", out2)
	}
	for _, want := range []string{"\nhostname 12345-se1.maint.example.test\n", "\nuser tech\n", "\nport 22\n",
		"\nproxycommand proxytunnel -q -E --proxy=maint.example.test:16443 --dest=%h:%p -P resa -C /opt/mt/maintproxy-ca.pem\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("ssh -G 12345 lacks %q", strings.TrimSpace(want))
		}
	}
}

func TestRootDownload(t *testing.T) {
	e := newTestEnv(t, "")
	w := e.get(t, "/com/remoteproxy/maintproxy-ca.pem", "", "")
	if w.Code != http.StatusOK || w.Body.String() != testRoot || w.Header().Get("Content-Type") != "application/x-pem-file" {
		t.Errorf("root: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if w := e.get(t, "/com/remoteproxy/other.pem", "", ""); w.Code != http.StatusNotFound {
		t.Errorf("other file: %d", w.Code)
	}
	e.root = nil
	if w := e.get(t, "/com/remoteproxy/maintproxy-ca.pem", "", ""); w.Code != http.StatusNotFound {
		t.Errorf("no root: %d", w.Code)
	}
}
