package broker_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/broker"
)

// accessSystem is one system of the access overview's JSON.
type accessSystem struct {
	Light        string     `json:"light"`
	Message      string     `json:"message"`
	LoginFailed  *time.Time `json:"login_failed"`
	LoginFailure string     `json:"login_failure"`
}

// accessStatus returns the overview's view of customer/system (names in lower case).
func (r *rig) accessStatus(t *testing.T, c *http.Client, customer, system string) accessSystem {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+r.WebAddr().String()+"/com/remoteproxy/access?format=json", nil)
	req.SetBasicAuth(user, password)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Customers []struct {
			ID      string `json:"id"`
			Systems []struct {
				Name string `json:"name"`
				accessSystem
			} `json:"systems"`
		} `json:"customers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	for _, cu := range v.Customers {
		for _, s := range cu.Systems {
			if cu.ID == customer && strings.EqualFold(s.Name, system) {
				return s.accessSystem
			}
		}
	}
	t.Fatalf("no %s/%s in the overview", customer, system)
	return accessSystem{}
}

// TestStatusRefusedAgentLogins: the login path's refusals reach the pages in the manual's
// words — a wrong secret is "Invalid credentials", an address locked out after too many is
// "Account temporarily locked" — while a connected system stays green, and logins of
// unknown systems are only counted in the status file.
func TestStatusRefusedAgentLogins(t *testing.T) {
	se1, other := system{"12345", "SE1"}, system{"67890", "SE1"}
	r := startBroker(t, func(m map[string]any) {
		m["limits"] = map[string]any{"auth": map[string]any{"per_minute": 1, "burst": 2}}
	}, se1, other)
	c := r.webClient(t)
	r.startAgent(t, se1, "127.0.0.1:1")
	r.waitOnline(t, se1)

	wrong := r.startAgentWith(t, other, "127.0.0.1:1", func(m map[string]any) { m["secret"] = "not-the-secret" })
	waitFor(t, "a refused login on the page", func() bool { return r.accessStatus(t, c, "67890", "se1").LoginFailed != nil })
	s := r.accessStatus(t, c, "67890", "se1")
	if s.Light != "orange" || s.LoginFailure != "Invalid credentials" || s.Message != "Invalid credentials" {
		t.Errorf("wrong secret: %+v", s)
	}
	unknown := r.startAgentWith(t, system{"99999", "NOPE"}, "127.0.0.1:1", nil)
	// Out of tokens, the address is refused before any check.
	waitFor(t, "the address locked out", func() bool {
		return r.accessStatus(t, c, "67890", "se1").LoginFailure == "Account temporarily locked"
	})
	if s := r.accessStatus(t, c, "12345", "se1"); s.Light != "green" || s.LoginFailed != nil {
		t.Errorf("the connected system: %+v", s)
	}
	wrong.stop()
	unknown.stop()
	path := filepath.Join(r.dataDir, broker.StatusFile)
	var f struct {
		Systems map[string]json.RawMessage `json:"systems"`
		Unknown struct {
			Count  int64 `json:"count"`
			Recent []struct {
				Identity string `json:"identity"`
			} `json:"recent"`
		} `json:"unknown_logins"`
	}
	waitFor(t, "the status file", func() bool {
		data, err := os.ReadFile(path)
		return err == nil && json.Unmarshal(data, &f) == nil && f.Unknown.Count > 0
	})
	if m := r.metrics(t); m[`maintproxy_status_writes_total{result="ok"}`] < 1 || m[`maintproxy_status_writes_total{result="error"}`] != 0 {
		t.Errorf("status writes: ok %v, error %v", m[`maintproxy_status_writes_total{result="ok"}`], m[`maintproxy_status_writes_total{result="error"}`])
	}
	if len(f.Systems) > 2 || f.Systems["67890/se1"] == nil || f.Unknown.Recent[0].Identity != "99999/nope" {
		t.Errorf("status file: systems %v, unknown %+v", f.Systems, f.Unknown)
	}
}
