package e2e

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/certs"
	"maintproxy/internal/capool"
	"maintproxy/internal/testenv"
)

// TestCertsCommandsAndRollover drives `maintproxy certs show` and `certs regenerate`
// against a running broker process and real agent processes: show agrees with what the
// broker serves; a regenerated CA reaches the running broker, which publishes both roots;
// an agent keeps them beside its ca_file; after `regenerate --now` and a broker restart
// that agent connects, one that holds only the old CA does not.
func TestCertsCommandsAndRollover(t *testing.T) {
	bin := filepath.Join(testenv.Bin(t), "maintproxy")
	env := testenv.Start(t, testenv.Options{})
	show := func() certs.Description {
		t.Helper()
		out, err := exec.Command(bin, "certs", "show", "--config", env.ConfigPath, "--json").Output()
		if err != nil {
			t.Fatalf("certs show: %v", err)
		}
		var d certs.Description
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatalf("certs show --json: %v\n%s", err, out)
		}
		return d
	}
	web := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: env.CAPool(t), ServerName: "admin." + env.Domain}}}
	get := func(path string) string {
		t.Helper()
		resp, err := web.Get("https://" + env.WebAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	var live certs.Description
	if err := json.Unmarshal([]byte(get("/certs")), &live); err != nil {
		t.Fatal(err)
	}
	off := show()
	if len(off.Roots) != 1 || len(live.Roots) != 1 || off.Roots[0].SHA256 != live.Roots[0].SHA256 {
		t.Fatalf("certs show roots %+v, broker's /certs roots %+v", off.Roots, live.Roots)
	}
	if len(live.Served) != 2 || len(live.Served[0].Chain) != 2 || live.Served[0].Chain[0].Issuer != off.Roots[0].Subject {
		t.Fatalf("broker's /certs served %+v", live.Served)
	}
	out, err := exec.Command(bin, "certs", "show", "--config", env.ConfigPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SHA-256   "+off.Roots[0].SHA256) {
		t.Fatalf("certs show: %v\n%s", err, out)
	}

	oldCA, _ := os.ReadFile(env.CAFile)
	agentCA, staleCA := filepath.Join(t.TempDir(), "ca.pem"), filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(agentCA, oldCA, 0o644)
	os.WriteFile(staleCA, oldCA, 0o644)

	// Regenerate while the broker runs: it picks the next CA up on its own.
	mark := env.Proc().Mark()
	if out, err := exec.Command(bin, "certs", "regenerate", "--config", env.ConfigPath).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "Made the next identity CA") {
		t.Fatalf("certs regenerate: %v\n%s", err, out)
	}
	env.Proc().WaitLogAfter(t, mark, 30*time.Second, func(r testenv.Record) bool { return r.Msg() == "reloaded the identity CAs" })
	published := get("/agent/v1/ca")
	if n := strings.Count(published, "-----BEGIN CERTIFICATE-----"); n != 2 || !strings.HasPrefix(published, string(oldCA)) {
		t.Fatalf("published %d roots after regenerate, want the current and the next", n)
	}
	if d := show(); len(d.Roots) != 2 || d.Rollover.SwitchAt.Before(time.Now().Add(180*24*time.Hour)) {
		t.Fatalf("certs show after regenerate: %+v", d.Rollover)
	}

	agent := env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", CAFile: agentCA})
	agent.WaitLog(t, 20*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "trusting the roots the broker publishes, beside ca_file"
	})
	if b, err := os.ReadFile(capool.NextPath(agentCA)); err != nil || string(b) != published {
		t.Fatalf("the agent's %s: %v", capool.NextPath(agentCA), err)
	}

	// Switch now; restart the broker so that every agent must handshake again.
	if out, err := exec.Command(bin, "certs", "regenerate", "--config", env.ConfigPath, "--now").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "Switched") {
		t.Fatalf("certs regenerate --now: %v\n%s", err, out)
	}
	env.Restart(t)
	env.WaitAgent(t, "12345", "SE1", 0) // a new broker process: its log starts afresh
	newCA, _ := os.ReadFile(env.CAFile)
	blk, _ := pem.Decode(newCA)
	if blk == nil || strings.HasPrefix(string(newCA), string(oldCA)) {
		t.Fatal("ca.pem did not change with --now")
	}
	stale := env.StartAgent(t, testenv.Agent{Customer: "67890", System: "SE1", CAFile: staleCA, NoWait: true})
	stale.WaitLog(t, 20*time.Second, func(r testenv.Record) bool {
		return strings.Contains(r.Str("reason"), "certificate signed by unknown authority")
	})
}
