package pac

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
)

// fakeHash passes config's bcrypt format check; these tests never verify it.
const fakeHash = "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"

const testRoot = "-----BEGIN CERTIFICATE-----\nTESTROOT\n-----END CERTIFICATE-----\n"

// testConfig: resa manages 12345 and 67890, resb manages 55555. testStatuses says what
// their agents do.
func testConfig(t *testing.T) *config.Broker {
	t.Helper()
	sys := func(name string, primary bool) config.System {
		return config.System{Name: name, Primary: primary, AgentSecretHash: fakeHash}
	}
	if len(fakeHash) != 60 {
		t.Fatalf("fakeHash has %d characters", len(fakeHash))
	}
	cfg, err := config.NewBroker(config.Broker{
		Domain: "example.test",
		Listen: config.Listen{Proxy: "127.0.0.1:16443", Web: "127.0.0.1:8443"},
		Accounts: []config.Account{
			{Username: "resa", PasswordHash: fakeHash, Customers: []string{"12345", "67890"}},
			{Username: "resb", PasswordHash: fakeHash, Customers: []string{"55555"}},
		},
		Customers: []config.Customer{
			{ID: "12345", Name: "Hotel Zuid", Systems: []config.System{sys("SE1", true), sys("SE2", false), sys("SE3", false), sys("SE4", false)}},
			{ID: "67890", Systems: []config.System{sys("main", true), sys("backup", false), sys("edge", false)}},
			{ID: "55555", Name: "Other Reseller's Customer", Systems: []config.System{sys("secret-sys", true)}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testEnv is a handler over testConfig with fixed statuses and a log buffer.
type testEnv struct {
	cfg      *config.Broker
	handler  http.Handler
	logs     *bytes.Buffer
	root     []byte
	statuses map[string]SystemStatus
}

// testStatuses covers every light:
//
//	12345/se1  online, everything on, three tunnel entries (HTTPS, RDP, SSH)   green
//	12345/se2  online, remote access off                                       orange
//	12345/se3  online, co-located off (a tunnel entry listed anyway)           green
//	12345/se4  reached through se1's agent                                      green
//	67890/main never connected                                                  red
//	67890/backup offline for 90 minutes                                          red
//	67890/edge an agent with a wrong secret, 2 minutes ago                       orange
func testStatuses(now time.Time) map[string]SystemStatus {
	since := now.Add(-90 * time.Minute)
	return map[string]SystemStatus{
		"12345/se1": {Online: true, Since: since, Reported: true, RemoteAccess: true, Colocated: true,
			Services: []int{22, 443, 3389, 7071, 9443, 52233},
			Tunnels: []TunnelEntry{
				{Application: "HTTPS", IP: "127.0.0.5", Port: 8443},
				{Application: "RDP", IP: "192.168.1.20", Port: 3389},
				{Application: "SSH", IP: "192.168.1.30", Port: 22},
			}},
		"12345/se2": {Online: true, Since: since, Reported: true, Services: []int{22, 3389, 7071}, Colocated: true,
			Tunnels: []TunnelEntry{{Application: "RDP", IP: "192.168.1.21", Port: 3389}}},
		"12345/se3": {Online: true, Since: since, Reported: true, RemoteAccess: true, Services: []int{22},
			Tunnels: []TunnelEntry{{Application: "RDP", IP: "192.168.1.22", Port: 3389}}},
		"12345/se4":    {Online: true, Since: since, Reported: true, RemoteAccess: true, Services: []int{22}, Via: "se1"},
		"67890/backup": {Since: since, Reported: true, RemoteAccess: true, Services: []int{22}},
		"67890/edge":   {LoginFailed: now.Add(-2 * time.Minute)},
	}
}

func newTestEnv(t *testing.T, toolsDir string) *testEnv {
	t.Helper()
	e := &testEnv{cfg: testConfig(t), logs: &bytes.Buffer{}, root: []byte(testRoot)}
	passwords := map[string]string{"resa": "pass-a'$x", "resb": "pass-b"}
	e.statuses = testStatuses(time.Now())
	e.handler = New(Options{
		Config: func() *config.Broker { return e.cfg },
		Status: func(customer, system string) SystemStatus { return e.statuses[strings.ToLower(customer+"/"+system)] },
		Authenticate: func(user, pass, ip string) (*config.Account, error) {
			if p, ok := passwords[user]; ok && p == pass {
				return e.cfg.Account(user), nil
			}
			return nil, errors.New("wrong proxy username or password")
		},
		RootPEM:     func() []byte { return e.root },
		CertWarning: func() string { return "The broker's certificate expires in 42 days." },
		ToolsDir:    toolsDir,
		Logger:      slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	return e
}

// get performs a GET with optional Basic credentials and extra header pairs.
func (e *testEnv) get(t *testing.T, path, user, pass string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://admin.example.test:8443"+path, nil)
	if user != "" {
		r.SetBasicAuth(user, pass)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, r)
	return w
}

func mustContain(t *testing.T, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			t.Errorf("body lacks %q", s)
		}
	}
}

func mustNotContain(t *testing.T, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if strings.Contains(body, s) {
			t.Errorf("body contains %q", s)
		}
	}
}

// runNode runs Node with args (a script of testdata and its arguments), in as JSON on its
// standard input, and decodes its JSON output into out. Without Node the test is skipped:
// the scripts need a real JavaScript engine.
func runNode(t *testing.T, in, out any, args ...string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed: these checks need a real JavaScript engine")
	}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, args...)
	cmd.Stdin = bytes.NewReader(data)
	got, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("node: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, out); err != nil {
		t.Fatalf("node output %q: %v", got, err)
	}
}
