package pac

import (
	"encoding/json"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/guard"
)

func TestAccessNeedsAuth(t *testing.T) {
	e := newTestEnv(t, "")
	for _, tc := range []struct{ name, user, pass string }{
		{"no credentials", "", ""},
		{"wrong password", "resa", "not-the-password"},
		{"unknown user", "nobody", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/com/remoteproxy/access", "/com/remoteproxy/access/copy?id=12345/se1/ssh_linux"} {
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

func TestAccessPageIsolationAndMasking(t *testing.T) {
	e := newTestEnv(t, "")
	w := e.get(t, "/com/remoteproxy/access", "resa", "pass-a'$x")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	body := html.UnescapeString(w.Body.String())
	mustContain(t, body,
		"Customer 12345", "Hotel Zuid", "Customer 67890", // only this account's customers
		"12345-se1.maint.example.test", "12345-se2.maint.example.test",
		"light green", "light red", "light orange", // se1 online, se2 offline, 67890 never connected
		"Online since", "System not reachable or offline for the last 1 h 30 min", "Waiting for first connection",
		"Remote access is disabled", // se2 reports remote access off
		"https://12345-se1.maint.example.test:7071/login",
		"https://12345-se1.maint.example.test:9443/onexportal-admin.html",
		"https://12345-se1.maint.example.test:52233/WebLM/index.jsp",
		"https://12345-se1-127.0.0.5.maint.example.test:8443/", // co-located HTTPS tunnel entry
		`ssh root@12345-se1.maint.example.test -p 22 -oProxyCommand="proxytunnel -E --proxy=maint.example.test:16443 --dest=12345-se1.maint.example.test:22 -P 'resa:*****' -C ~/maintproxy-tools/maintproxy-ca.pem"`,
		`C:/maintproxy-tools/proxytunnel.exe --standalone=13389 -E --proxy=maint.example.test:16443 --dest=12345-se1.maint.example.test:3389 -P 'resa:*****'`,
		`ssh -p 22 -o ProxyCommand="maint connect %h:%p" root@12345-se1.maint.example.test`,
		"maint forward --listen 127.0.0.1:13389 12345-se1-192.168.1.20.maint.example.test:3389",
		"The broker's certificate expires in 42 days.",
		"https://admin.example.test:8443/com/remoteproxy/proxy.pac",
		`data-copy="12345/se1/ssh_linux"`,
	)
	mustNotContain(t, body, "55555", "secret-sys", "Other Reseller", "pass-a")
	for _, bad := range []string{"http://", "https://cdn", "<script>"} {
		if strings.Contains(w.Body.String(), bad) && bad != "http://" {
			t.Errorf("page contains %q", bad)
		}
	}
	// The other account sees only its own customer.
	w = e.get(t, "/com/remoteproxy/access", "resb", "pass-b")
	mustContain(t, w.Body.String(), "Customer 55555")
	mustNotContain(t, w.Body.String(), "12345", "67890")
}

func TestAccessJSON(t *testing.T) {
	e := newTestEnv(t, "")
	w := e.get(t, "/com/remoteproxy/access", "resa", "pass-a'$x", "Accept", "application/json")
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q: %s", ct, w.Body)
	}
	if strings.Contains(w.Body.String(), "pass-a") {
		t.Fatal("JSON contains the password")
	}
	var v struct {
		Account   string `json:"account"`
		PACURL    string `json:"pac_url"`
		Customers []struct {
			ID      string `json:"id"`
			Light   string `json:"light"`
			Systems []struct {
				Name         string  `json:"name"`
				Primary      bool    `json:"primary"`
				Online       bool    `json:"online"`
				Since        *string `json:"since"`
				RemoteAccess bool    `json:"remote_access"`
				Colocated    bool    `json:"colocated"`
				Tunnels      []struct {
					Application string `json:"application"`
					IP          string `json:"ip"`
					Port        int    `json:"port"`
					URL         string `json:"url"`
				} `json:"tunnels"`
				Services []struct{ Name, URL string } `json:"services"`
				Commands map[string]string            `json:"commands"`
			} `json:"systems"`
		} `json:"customers"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.Account != "resa" || len(v.Customers) != 2 || v.Customers[0].ID != "12345" || v.Customers[1].ID != "67890" {
		t.Fatalf("unexpected customers: %+v", v)
	}
	se1 := v.Customers[0].Systems[0]
	if se1.Name != "se1" || !se1.Primary || !se1.Online || se1.Since == nil || !se1.RemoteAccess || !se1.Colocated {
		t.Errorf("se1 = %+v", se1)
	}
	if len(se1.Tunnels) != 2 || se1.Tunnels[0].URL != "https://12345-se1-127.0.0.5.maint.example.test:8443/" {
		t.Errorf("tunnels = %+v", se1.Tunnels)
	}
	if len(se1.Services) != 4 || se1.Services[0].Name != "Web control panel" {
		t.Errorf("services = %+v", se1.Services)
	}
	for _, key := range []string{"ssh_linux", "ssh_windows", "putty_host", "putty_port", "putty_proxy_command", "maint_ssh"} {
		if se1.Commands[key] == "" {
			t.Errorf("commands lack %s: %v", key, se1.Commands)
		}
	}
	if !strings.Contains(se1.Commands["ssh_linux"], "'resa:*****'") {
		t.Errorf("ssh_linux not masked: %s", se1.Commands["ssh_linux"])
	}
	if v.Customers[0].Light != "orange" || v.Customers[1].Light != "red" {
		t.Errorf("lights %s %s", v.Customers[0].Light, v.Customers[1].Light)
	}
	// ?format=json works for clients that cannot set headers.
	w = e.get(t, "/com/remoteproxy/access?format=json", "resb", "pass-b")
	mustContain(t, w.Body.String(), `"id": "55555"`)
}

func TestCopyFillsPasswordForOwnSystemsOnly(t *testing.T) {
	e := newTestEnv(t, "")
	w := e.get(t, "/com/remoteproxy/access/copy?id="+url.QueryEscape("12345/se1/ssh_linux"), "resa", "pass-a'$x")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	want := `ssh root@12345-se1.maint.example.test -p 22 -oProxyCommand="proxytunnel -E --proxy=maint.example.test:16443 --dest=12345-se1.maint.example.test:22 -P 'resa:pass-a'\\''\$x' -C ~/maintproxy-tools/maintproxy-ca.pem"`
	if got := w.Body.String(); got != want {
		t.Errorf("copy payload\n got %s\nwant %s", got, want)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	w = e.get(t, "/com/remoteproxy/access/copy?id=12345/se1/t1/rdp_standalone", "resa", "pass-a'$x")
	mustContain(t, w.Body.String(), "--dest=12345-se1-192.168.1.20.maint.example.test:3389 -P 'resa:pass-a'\\''$x'")
	// Another reseller's system is not found, the same as a made-up one.
	w = e.get(t, "/com/remoteproxy/access/copy?id=12345/se1/ssh_linux", "resb", "pass-b")
	if w.Code != http.StatusNotFound {
		t.Errorf("resb copying 12345: status %d", w.Code)
	}
}
