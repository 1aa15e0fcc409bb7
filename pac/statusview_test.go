package pac

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"maintproxy/certs"
	"maintproxy/config"
)

// TestStatusFactsShown: a refused agent login and an offline system's last-seen time are
// in the JSON and on the system's page.
func TestStatusFactsShown(t *testing.T) {
	e := newTestEnv(t, "")
	var v struct {
		Customers []struct {
			Systems []struct {
				Name         string     `json:"name"`
				LastSeen     *time.Time `json:"last_seen"`
				LoginFailed  *time.Time `json:"login_failed"`
				LoginFailure string     `json:"login_failure"`
			} `json:"systems"`
		} `json:"customers"`
	}
	w := e.get(t, "/com/remoteproxy/access", "resa", "pass-a'$x", "Accept", "application/json")
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	backup, edge, se1 := v.Customers[1].Systems[1], v.Customers[1].Systems[2], v.Customers[0].Systems[0]
	want := e.statuses["67890/backup"].Since.UTC().Truncate(time.Second)
	if backup.LastSeen == nil || !backup.LastSeen.Equal(want) || backup.LoginFailed != nil {
		t.Errorf("backup = %+v, want last seen %v", backup, want)
	}
	if edge.LoginFailed == nil || edge.LoginFailure != MsgAuthFailed || edge.LastSeen != nil {
		t.Errorf("edge = %+v", edge)
	}
	if se1.LastSeen != nil || se1.LoginFailed != nil {
		t.Errorf("an online system has a last seen or a refusal: %+v", se1)
	}
	w = e.get(t, "/com/remoteproxy/access/67890/edge", "resa", "pass-a'$x")
	mustContain(t, w.Body.String(), "Last agent login refused", MsgAuthFailed)
	w = e.get(t, "/com/remoteproxy/access/67890/backup", "resa", "pass-a'$x")
	mustContain(t, w.Body.String(), "Last seen "+want.Format("2006-01-02 15:04:05"), "(as last reported)")
	w = e.get(t, "/com/remoteproxy/access/12345/se1", "resa", "pass-a'$x")
	mustNotContain(t, w.Body.String(), "Last seen", "Last agent login refused", "as last reported")
}

// TestCertificateScreen: the overview shows what the listeners serve in a collapsed
// section (and in its JSON), without the source's local paths.
func TestCertificateScreen(t *testing.T) {
	cfg := testConfig(t)
	at := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	leaf := certs.Cert{Role: "leaf", Subject: "CN=maint.example.test", Issuer: "CN=test CA", SANs: []string{"maint.example.test", "admin.example.test"},
		NotBefore: at, NotAfter: at.Add(90 * 24 * time.Hour), DaysLeft: 90, SHA256: "AB:CD:EF", Serial: "01"}
	desc := &certs.Description{Mode: "selfsigned", Source: "/secret/local/path", At: at,
		Served: []certs.Served{{Listener: "proxy", Address: "127.0.0.1:6443", Name: "maint.example.test", Chain: []certs.Cert{leaf}},
			{Listener: "web", Address: "127.0.0.1:443", Name: "admin.example.test", Note: "a note on the web listener"}},
		Roots: []certs.Cert{{Role: "identity CA", Subject: "CN=test CA", Issuer: "CN=test CA", NotAfter: at.Add(-time.Hour), DaysLeft: -1, SHA256: "12:34"}}}
	h := New(Options{
		Config: func() *config.Broker { return cfg },
		Status: func(string, string) SystemStatus { return SystemStatus{} },
		Authenticate: func(user, pass, ip string) (*config.Account, error) {
			if user == "resb" && pass == "pass-b" {
				return cfg.Account(user), nil
			}
			return nil, errors.New("wrong proxy username or password")
		},
		RootPEM:      func() []byte { return nil },
		Certificates: func() *certs.Description { return desc },
	})
	get := func(accept string) string {
		r := httptest.NewRequest(http.MethodGet, "https://admin.example.test:8443/com/remoteproxy/access", nil)
		r.SetBasicAuth("resb", "pass-b")
		r.Header.Set("Accept", accept)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", accept, w.Code, w.Body)
		}
		return w.Body.String()
	}
	page := get("text/html")
	mustContain(t, page, `<details id="certificates">`, "Certificates served by this broker (tls.mode selfsigned)",
		"proxy listener 127.0.0.1:6443 · maint.example.test", "CN=maint.example.test", "CN=test CA",
		"maint.example.test, admin.example.test", "2026-11-28 09:00 UTC to 2027-02-26 09:00 UTC (90 days left)",
		"AB:CD:EF", "a note on the web listener", "EXPIRED", "12:34")
	mustNotContain(t, page, "/secret/local/path", `<details id="certificates" open`)
	var v struct {
		Certificates struct {
			Served []certs.Served `json:"served"`
			Roots  []certs.Cert   `json:"roots"`
		} `json:"certificates"`
	}
	body := get("application/json")
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Certificates.Served) != 2 || v.Certificates.Served[0].Chain[0].SHA256 != "AB:CD:EF" || len(v.Certificates.Roots) != 1 {
		t.Errorf("certificates JSON: %+v", v.Certificates)
	}
	if strings.Contains(body, "/secret/local/path") {
		t.Errorf("the JSON names the local source path")
	}
}
