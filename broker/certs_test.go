package broker_test

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/certs"
	"maintproxy/internal/capool"
	"maintproxy/tunnel"
)

// startAgentCA is startAgent with the agent's own ca_file.
func (r *rig) startAgentCA(t *testing.T, s system, target, caFile string) *agent {
	t.Helper()
	m := map[string]any{
		"broker": "https://" + r.WebAddr().String(), "ca_file": caFile, "server_name": "admin." + domain,
		"customer": s.customer, "system": s.name, "secret": secret(s.customer, s.name),
		"remote_access": map[string]any{"enabled": true, "services": map[string]string{"7": target}},
		"max_backoff":   "1s", "dial_timeout": "3s",
	}
	return runAgent(t, s, loadAgent(t, m))
}

func pemCount(b []byte) int {
	n := 0
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return n
		}
		n++
	}
}

// TestAgentsFollowCARollover: during an identity CA rollover the broker publishes both
// CAs at /agent/v1/ca and /certs; an agent whose ca_file holds only the old CA fetches
// them after its login and keeps them beside its ca_file. After a switch (regenerate --now
// and a broker restart on the same address) that agent reconnects by itself, an agent
// started from the same ca_file connects too, and one that never fetched is refused.
func TestAgentsFollowCARollover(t *testing.T) {
	target := startEcho(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := parse(t, hashes{}.conf(t, dataDir, se1))
	if _, err := certs.Regenerate(cfg, time.Now(), false); err != nil { // the first CA
		t.Fatal(err)
	}
	oldCA, _ := os.ReadFile(filepath.Join(dataDir, certs.CACertFile))
	if _, err := certs.Regenerate(cfg, time.Now(), false); err != nil { // its successor, published
		t.Fatal(err)
	}
	useData := func(m map[string]any) { m["data_dir"] = dataDir }
	r1 := startBroker(t, useData, se1, se2, other)
	r1.dataDir = dataDir
	web := r1.webClient(t)
	code, h, published := r1.get(t, web, tunnel.AgentCAPath)
	if code != http.StatusOK || h.Get("Content-Type") != "application/x-pem-file" || pemCount([]byte(published)) != 2 ||
		!strings.HasPrefix(published, string(oldCA)) {
		t.Fatalf("GET %s: %d %q, %d certificates", tunnel.AgentCAPath, code, h.Get("Content-Type"), pemCount([]byte(published)))
	}
	code, _, body := r1.get(t, web, "/certs")
	var d certs.Description
	if err := json.Unmarshal([]byte(body), &d); code != http.StatusOK || err != nil || len(d.Roots) != 2 ||
		d.Rollover == nil || d.Rollover.SwitchAt.IsZero() || len(d.Served) != 2 || len(d.Served[0].Chain) != 2 || d.Source != "" {
		t.Fatalf("GET /certs: %d %v\n%s", code, err, body)
	}

	// An agent knowing only the current CA logs in and keeps the published roots.
	dir := t.TempDir()
	caA, caStale := filepath.Join(dir, "a", "ca.pem"), filepath.Join(dir, "stale", "ca.pem")
	for _, f := range []string{caA, caStale} {
		os.MkdirAll(filepath.Dir(f), 0o755)
		os.WriteFile(f, oldCA, 0o644)
	}
	a := r1.startAgentCA(t, se1, target.Addr(), caA)
	r1.waitOnline(t, se1)
	waitFor(t, "the agent keeps the published roots", func() bool {
		b, err := os.ReadFile(capool.NextPath(caA))
		return err == nil && string(b) == published
	})

	// Switch now and restart the broker on the same address.
	webAddr := r1.WebAddr().String()
	if err := r1.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.Regenerate(cfg, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	newCA, _ := os.ReadFile(filepath.Join(dataDir, certs.CACertFile))
	if bytes.Equal(newCA, oldCA) {
		t.Fatal("regenerate --now did not switch")
	}
	r2 := startBroker(t, func(m map[string]any) {
		useData(m)
		m["listen"].(map[string]any)["web"] = webAddr
	}, se1, se2, other)
	r2.dataDir = dataDir
	r2.waitOnline(t, se1) // the running agent, on the roots it fetched
	roundTrip(t, r2.mustConnect(t, "12345-se1.maint."+domain+":7"), "after the switch")
	if a.log.Contains("unknown authority") {
		t.Error("the agent that fetched the roots was refused on the way")
	}

	// An agent started from the same ca_file (ca.pem + ca.pem.next) connects; one whose
	// ca_file holds only the old CA and that never fetched is refused.
	stale := r2.startAgentCA(t, other, target.Addr(), caStale)
	r2.startAgentCA(t, se2, target.Addr(), caA)
	r2.waitOnline(t, se2)
	waitFor(t, "the stale agent refused", func() bool { return stale.log.Contains("certificate signed by unknown authority") })
	if r2.Registry().Status(other.id()).Online {
		t.Error("an agent trusting only the old CA connected after the switch")
	}
}
