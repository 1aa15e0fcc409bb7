package e2e

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/internal/refusal"
	"maintproxy/internal/testenv"
)

// TestClusterSecondaryAndPolicyUpdate: the primary's agent is held by b1 only. A CONNECT
// on b2 to the secondary SE2 (no agent of its own) crosses the peer hop and the primary's
// agent, which audits the account and the technician's address; b2's status shows SE2
// through SE1. A switch flipped in the agent's file reaches b2's status through the
// cluster's presence, and b2 then refuses with the customer-settings answer.
func TestClusterSecondaryAndPolicyUpdate(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Brokers: 2, Etcd: testenv.StartEtcd(t, 1)})
	c.WaitReady(t, 20*time.Second)
	b2 := c.Brokers[1]
	se2 := testenv.StartEcho(t, "127.0.0.10:0")
	_, port, _ := net.SplitHostPort(se2)
	var p int
	fmt.Sscan(port, &p)
	a := testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true,
		Services: map[int]string{p: testenv.RefusedAddr(t, "127.0.0.1")}, Network: map[string]string{"SE2": "127.0.0.10"},
		ConfigPath: filepath.Join(c.Brokers[0].Dir, "se1-agent.yaml")}
	agent := clusterAgent(t, c, a, []string{c.Brokers[0].WebAddr}, 1)
	waitHeld(t, c, "12345", "se1", "b1")

	waitJSON(t, b2, "12345", "se2", "se2 through se1 at b2", func(st map[string]any) bool {
		return st["via"] == "se1" && st["online"] == true && st["remote_access"] == true
	})
	r := b2.Connect(t, "resa", "pass-a", fmt.Sprintf("12345-SE2.maint.%s:%d", b2.Domain, p))
	if r.Status != http.StatusOK {
		t.Fatalf("CONNECT on b2 to the secondary: %d %s", r.Status, r.Body)
	}
	assertEcho(t, r.Conn, []byte("through b1 and the primary"))
	local := r.Conn.LocalAddr().String()
	r.Conn.Close()
	rec := agent.WaitLog(t, 10*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "tunnel" && r.Str("system") == "se2" && r.Str("result") == "ok"
	})
	if rec.Str("user") != "resa" || rec.Str("client") != local || rec.Str("target") != se2 {
		t.Errorf("agent audit through the peer hop: %v (technician at %s)", rec, local)
	}

	a.RemoteAccess = false
	flipped := time.Now()
	c.Brokers[0].RewriteAgent(t, a)
	waitJSON(t, b2, "12345", "se1", "remote access off at b2", func(st map[string]any) bool {
		return st["remote_access"] == false && st["message"] == "Remote operations not allowed"
	})
	t.Logf("switch flipped in the file; b2's status showed it %v later", time.Since(flipped).Round(time.Millisecond))
	r = b2.Connect(t, "resa", "pass-a", fmt.Sprintf("12345-SE2.maint.%s:%d", b2.Domain, p))
	if r.Status != http.StatusForbidden || r.Header.Get(refusal.Header) != string(refusal.CustomerSettings) ||
		!strings.Contains(r.Body, "remote access is disabled") {
		t.Fatalf("CONNECT on b2 with the primary's remote access off: %d %s %s", r.Status, r.Header.Get(refusal.Header), r.Body)
	}
}
