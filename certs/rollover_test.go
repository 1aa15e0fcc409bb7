package certs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/capool"
	"maintproxy/internal/testclock"
	"maintproxy/internal/testkit"
)

const day = 24 * time.Hour

// testAgent is an agent's view of the broker: a ca_file and the trust the agent builds
// from it (capool.LoadTrust, as tunnel.NewAgent does).
type testAgent struct {
	caFile string
	trust  *capool.Trust
}

func newTestAgent(t *testing.T, rootPEM []byte) *testAgent {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, rootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := capool.LoadTrust(f)
	if err != nil {
		t.Fatal(err)
	}
	return &testAgent{caFile: f, trust: tr}
}

// dial handshakes with the broker's web listener as the agent does, at now, and returns
// the served chain.
func (a *testAgent) dial(addr string, now time.Time) ([]*x509.Certificate, error) {
	cfg := a.trust.TLSConfig("admin."+testDomain, func() time.Time { return now })
	cs, err := handshake(addr, cfg)
	return cs.PeerCertificates, err
}

// fetch is the agent's fetch after a login: connect, then take the published roots (what
// GET /agent/v1/ca serves: Manager.RootPEM) checked against the chain just served.
func (a *testAgent) fetch(t *testing.T, m *Manager, addr string, now time.Time) {
	t.Helper()
	chain, err := a.dial(addr, now)
	if err != nil {
		t.Fatalf("agent cannot connect to fetch the roots: %v", err)
	}
	if _, err := a.trust.Update(m.RootPEM(), chain, "admin."+testDomain, now); err != nil {
		t.Fatal(err)
	}
}

// restarted is the agent after a process restart: its trust read again from disk.
func (a *testAgent) restarted(t *testing.T) *testAgent {
	t.Helper()
	tr, err := capool.LoadTrust(a.caFile)
	if err != nil {
		t.Fatal(err)
	}
	return &testAgent{caFile: a.caFile, trust: tr}
}

func countCerts(t *testing.T, pemData []byte) int {
	t.Helper()
	certs, err := parseCerts(pemData)
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}

func issuerOf(t *testing.T, addr string, now time.Time, roots []byte) *x509.Certificate {
	t.Helper()
	leaf := dialLeaf(t, addr, "admin."+testDomain, "admin."+testDomain, roots, now)
	return leaf
}

// startSelfSigned is a self-signed Manager with its own data directory on a test clock
// (now), logging into logs, its web configuration served at web.
func startSelfSigned(t *testing.T) (cfg *config.Broker, clk *testclock.Clock, m *Manager, logs *testkit.Buffer, web string) {
	t.Helper()
	cfg = testConfig(t, config.ModeSelfSigned)
	clk = testclock.New(time.Now())
	m, logs = newLogged(t, Options{Config: cfg, Now: clk.Now})
	return cfg, clk, m, logs, serveTLS(t, m.WebTLSConfig())
}

// TestRolloverWalkthrough walks one identity CA rollover with an injected clock and real
// TLS handshakes against the Manager's web configuration: before, overlap (both roots
// published, leaves from the old CA), after the switch (leaves from the new CA; an agent
// that fetched during the overlap still connects, also after a restart; one that never
// fetched is stranded), and after the old CA expired (dropped from the published roots).
func TestRolloverWalkthrough(t *testing.T) {
	cfg, clk, m, logs, web := startSelfSigned(t)
	oldPEM := m.RootPEM()
	old, err := loadCA(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	oldExp := old.cert.NotAfter
	fetcher, stale := newTestAgent(t, oldPEM), newTestAgent(t, oldPEM)

	// Before: one root, leaves from it, the rollover scheduled a year before expiry.
	clk.Set(oldExp.Add(-366 * day))
	m.check()
	if n := countCerts(t, m.RootPEM()); n != 1 {
		t.Fatalf("before the rollover %d roots are published", n)
	}
	d := m.Describe()
	if d.Rollover == nil || !d.Rollover.NextAt.Equal(oldExp.Add(-365*day).UTC()) || !d.Rollover.SwitchAt.IsZero() {
		t.Fatalf("schedule before the rollover: %+v", d.Rollover)
	}
	fetcher.fetch(t, m, web, clk.Now())

	// Overlap: the next CA is made and published beside the old one; leaves still come
	// from the old CA, so agents that know only it still connect.
	clk.Set(oldExp.Add(-365*day + time.Minute))
	m.check()
	if n := countCerts(t, m.RootPEM()); n != 2 || !bytes.HasPrefix(m.RootPEM(), oldPEM) {
		t.Fatalf("during the overlap %d roots are published, want the old one and the next", n)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, NextCACertFile)); err != nil {
		t.Fatalf("next CA not in data_dir: %v", err)
	}
	if leaf := issuerOf(t, web, clk.Now(), oldPEM); !bytes.Equal(leaf.RawIssuer, old.cert.RawSubject) {
		t.Fatal("the leaf changed CA at the start of the overlap")
	}
	if _, err := stale.dial(web, clk.Now()); err != nil {
		t.Fatalf("an agent knowing only the old CA fails during the overlap: %v", err)
	}
	d = m.Describe()
	wantSwitch := clk.Now().Add(182*day + 12*time.Hour)
	if d.Rollover.SwitchAt.Sub(wantSwitch).Abs() > 2*time.Hour || len(d.Roots) != 2 {
		t.Fatalf("overlap schedule %+v, roots %d; want the switch about %v", d.Rollover, len(d.Roots), wantSwitch)
	}
	switchAt := d.Rollover.SwitchAt
	if w := m.Warning(); w != "" {
		t.Errorf("warning half a year before the switch: %q", w)
	}
	// A broker restarted during the overlap keeps both.
	if m2, err := New(Options{Config: cfg, Now: clk.Now}); err != nil || !bytes.Equal(m2.RootPEM(), m.RootPEM()) {
		t.Fatalf("restart during the overlap: %v, same roots %v", err, err == nil && bytes.Equal(m2.RootPEM(), m.RootPEM()))
	}
	fetcher.fetch(t, m, web, clk.Now())
	if b, err := os.ReadFile(capool.NextPath(fetcher.caFile)); err != nil || !bytes.Equal(b, m.RootPEM()) {
		t.Fatalf("the agent did not keep the published roots beside its ca_file: %v", err)
	}

	// 89 days before the switch operators are warned.
	clk.Set(switchAt.Add(-89 * day))
	m.check()
	if w := m.Warning(); !strings.Contains(w, "changes on "+switchAt.Format(time.DateOnly)) {
		t.Errorf("warning before the switch: %q", w)
	}

	// After the switch: leaves from the new CA. The agent that fetched connects, also
	// after a restart (its trust read from ca_file and ca_file.next); the stale one not.
	clk.Set(switchAt.Add(time.Minute))
	m.check()
	next, err := loadCA(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if next.cert.Equal(old.cert) {
		t.Fatal("ca.pem still holds the old CA after the switch")
	}
	chain, err := fetcher.dial(web, clk.Now())
	if err != nil {
		t.Fatalf("the agent that fetched during the overlap cannot connect after the switch: %v", err)
	}
	if !bytes.Equal(chain[0].RawIssuer, next.cert.RawSubject) {
		t.Fatal("after the switch the leaf does not come from the new CA")
	}
	if _, err := fetcher.restarted(t).dial(web, clk.Now()); err != nil {
		t.Fatalf("after a restart the agent that fetched cannot connect: %v", err)
	}
	var unknown x509.UnknownAuthorityError
	if _, err := stale.dial(web, clk.Now()); !errors.As(err, &unknown) {
		t.Fatalf("an agent that never fetched: %v, want an unknown authority", err)
	}
	if n := countCerts(t, m.RootPEM()); n != 2 || !bytes.HasPrefix(m.RootPEM(), next.pem) {
		t.Fatalf("after the switch %d roots published, want the new one first and the old one", n)
	}
	if d := m.Describe(); d.Rollover.PreviousUntil.IsZero() || !d.Rollover.SwitchAt.IsZero() {
		t.Errorf("schedule after the switch: %+v", d.Rollover)
	}
	if w := m.Warning(); w != "" {
		t.Errorf("warning after the switch: %q", w)
	}
	fetcher.fetch(t, m, web, clk.Now())

	// After the old CA expired: it leaves the published roots, its files are kept aside.
	clk.Set(oldExp.Add(time.Minute))
	m.check()
	if !bytes.Equal(m.RootPEM(), next.pem) {
		t.Fatalf("after the old CA expired the published roots are not just the new CA")
	}
	if kept, _ := filepath.Glob(filepath.Join(cfg.DataDir, "ca-expired-*.pem")); len(kept) != 2 {
		t.Errorf("old CA files not kept aside: %v", kept)
	}
	fetcher.fetch(t, m, web, clk.Now())
	if _, err := fetcher.restarted(t).dial(web, clk.Now()); err != nil {
		t.Fatalf("after the old CA expired the agent cannot connect: %v", err)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged during a regular rollover:\n%s", logs.String())
	}
}

// TestRolloverWarningRepeatsDaily: the switch warning is logged at once, then daily.
func TestRolloverWarningRepeatsDaily(t *testing.T) {
	cfg := testConfig(t, config.ModeSelfSigned)
	clk := testclock.New(time.Now())
	m, err := New(Options{Config: cfg, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(m.CAExpiry().Add(-365*day + time.Minute))
	m.check()
	sw := m.Describe().Rollover.SwitchAt
	clk.Set(sw.Add(-44*day - time.Hour))
	m, logs := newLogged(t, Options{Config: cfg, Now: clk.Now})
	if n := strings.Count(logs.String(), "(in 44 days)"); n != 1 {
		t.Fatalf("warning logged %d times at start, want 1:\n%s", n, logs.String())
	}
	m.check()
	clk.Add(23 * time.Hour)
	m.check()
	if n := strings.Count(logs.String(), "the identity CA changes on"); n != 1 {
		t.Fatalf("warning repeated within a day:\n%s", logs.String())
	}
	clk.Add(2 * time.Hour)
	m.check()
	if n := strings.Count(logs.String(), "the identity CA changes on"); n != 2 {
		t.Fatalf("warning not repeated the next day:\n%s", logs.String())
	}
}

// TestExpiredCAWithoutOverlap: a broker stopped for years finds its CA expired and no
// successor published. It switches to a new CA at start, says so loudly, and keeps the
// old one aside.
func TestExpiredCAWithoutOverlap(t *testing.T) {
	cfg := testConfig(t, config.ModeSelfSigned)
	if _, err := New(Options{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	old, _ := loadCA(cfg.DataDir)
	clk := testclock.New(old.cert.NotAfter.Add(400 * day))
	m, logs := newLogged(t, Options{Config: cfg, Now: clk.Now})
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "expired before its successor was published") {
		t.Errorf("no loud log for a switch without overlap:\n%s", logs.String())
	}
	if bytes.Contains(m.RootPEM(), old.pem) || !m.CAExpiry().After(clk.Now().Add(2*365*day)) {
		t.Fatal("the expired CA is still published or no fresh CA serves")
	}
	dialLeaf(t, serveTLS(t, m.ProxyTLSConfig()), "maint."+testDomain, "maint."+testDomain, m.RootPEM(), clk.Now())
	if kept, _ := filepath.Glob(filepath.Join(cfg.DataDir, "ca-expired-*.pem")); len(kept) != 2 {
		t.Errorf("old CA not kept aside: %v", kept)
	}
	disk, _ := os.ReadFile(filepath.Join(cfg.DataDir, CACertFile))
	if !bytes.Equal(disk, m.RootPEM()) {
		t.Error("new CA not written to data_dir")
	}

	// The same while running: Run's check finds the CA expired.
	cfg2 := testConfig(t, config.ModeSelfSigned)
	clk2 := testclock.New(time.Now())
	m2, logs2 := newLogged(t, Options{Config: cfg2, Now: clk2.Now})
	oldRoot := m2.RootPEM()
	// Without a check for over three years (a frozen Run): the CA has expired.
	clk2.Set(m2.CAExpiry().Add(time.Minute))
	if !strings.Contains(m2.Warning(), "expired on") {
		t.Errorf("warning after expiry: %q", m2.Warning())
	}
	m2.check()
	if bytes.Contains(m2.RootPEM(), oldRoot) || !strings.Contains(logs2.String(), "expired before its successor") {
		t.Fatalf("expired CA kept, or no loud log:\n%s", logs2.String())
	}
}

// TestRegenerate: `certs regenerate` makes a next CA with overlap, a running broker picks
// it up from data_dir, a second call without --now refuses, and --now switches at once.
func TestRegenerate(t *testing.T) {
	cfg, clk, m, logs, web := startSelfSigned(t)
	oldPEM := m.RootPEM()
	agent := newTestAgent(t, oldPEM)

	d, err := Regenerate(cfg, clk.Now(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Roots) != 2 || d.Rollover.SwitchAt.Sub(clk.Now()) < 182*day {
		t.Fatalf("regenerate: %d roots, switch %v", len(d.Roots), d.Rollover.SwitchAt)
	}
	if countCerts(t, m.RootPEM()) != 1 {
		t.Fatal("the running broker published the new CA before its check")
	}
	m.check()
	if n := countCerts(t, m.RootPEM()); n != 2 || !strings.Contains(logs.String(), "reloaded the identity CAs") {
		t.Fatalf("the running broker did not pick up the new CA: %d roots\n%s", n, logs.String())
	}
	if leaf := issuerOf(t, web, clk.Now(), oldPEM); leaf == nil {
		t.Fatal("no leaf")
	}
	agent.fetch(t, m, web, clk.Now())

	_, err = Regenerate(cfg, clk.Now(), false)
	if err == nil || !strings.Contains(err.Error(), "--now") {
		t.Fatalf("second regenerate: %v, want a refusal pointing to --now", err)
	}

	// --now: the published next CA becomes current at once.
	stale := newTestAgent(t, oldPEM)
	if _, err := Regenerate(cfg, clk.Now(), true); err != nil {
		t.Fatal(err)
	}
	m.check()
	cur, _ := loadCA(cfg.DataDir)
	chain, err := agent.dial(web, clk.Now())
	if err != nil || !bytes.Equal(chain[0].RawIssuer, cur.cert.RawSubject) {
		t.Fatalf("after --now: the agent that fetched: %v; leaf from the new CA: %v", err, err == nil && bytes.Equal(chain[0].RawIssuer, cur.cert.RawSubject))
	}
	if _, err := stale.dial(web, clk.Now()); err == nil {
		t.Fatal("an agent without the new CA still connects after --now")
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, PreviousCACertFile)); err != nil {
		t.Errorf("previous CA not kept: %v", err)
	}
	if _, err := Regenerate(testConfig(t, config.ModeFiles, func(b *config.Broker) {
		b.TLS.Files = config.Files{Cert: "/c", Key: "/k"}
	}), clk.Now(), false); err == nil || !strings.HasPrefix(err.Error(), "tls.mode: ") {
		t.Errorf("regenerate in files mode: %v", err)
	}
}

// TestInterruptedSwitch: a switch that stopped between moving the key and the
// certificate still loads (check), and the broker finishes it at start.
func TestInterruptedSwitch(t *testing.T) {
	cfg := testConfig(t, config.ModeSelfSigned)
	if _, err := New(Options{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	if _, err := Regenerate(cfg, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	next, err := dirStore{cfg.DataDir}.loadSlot(slotNext, true)
	if err != nil {
		t.Fatal(err)
	}
	dir := cfg.DataDir
	old, err := loadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	// promote's first steps: the current CA copied to the previous slot, the next key moved.
	keyPEM, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err := (dirStore{dir}).write(slotPrevious, old.pem, keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, NextCAKeyFile), filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if err := Check(cfg); err != nil {
		t.Fatalf("check of an interrupted switch: %v", err)
	}
	m, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.RootPEM(), append(bytes.Clone(next.pem), old.pem...)) {
		t.Fatal("the interrupted switch was not finished: want the new CA current and the old one previous")
	}
	if _, err := os.Stat(filepath.Join(dir, NextCACertFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ca-next.pem left behind: %v", err)
	}
}
