package certs

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/testclock"
)

func TestSelfSignedCreateThenReuse(t *testing.T) {
	cfg := testConfig(t, config.ModeSelfSigned, func(b *config.Broker) { b.DNS.Addresses = []string{"192.0.2.10"} })
	m, logs := newLogged(t, Options{Config: cfg})
	if !strings.Contains(logs.String(), "created the self-signed identity CA") {
		t.Errorf("no creation log: %s", logs.String())
	}
	caPEM, err := os.ReadFile(filepath.Join(cfg.DataDir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caPEM, m.RootPEM()) {
		t.Error("RootPEM differs from the CA file in data_dir")
	}
	fi, err := os.Stat(filepath.Join(cfg.DataDir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode %v, want 0600", fi.Mode().Perm())
	}
	if got, want := m.CAExpiry(), time.Now().Add(3*365*24*time.Hour); got.Before(want.Add(-2*time.Hour)) || got.After(want.Add(time.Hour)) {
		t.Errorf("CA expires %v, want about %v", got, want)
	}
	if w := m.Warning(); w != "" {
		t.Errorf("fresh CA has a warning: %q", w)
	}

	// Both listeners chain to the CA for every name, and fall back to maint.<domain>
	// without SNI or with an unknown name.
	now := time.Now()
	for _, addr := range []string{serveTLS(t, m.ProxyTLSConfig()), serveTLS(t, m.WebTLSConfig())} {
		for _, c := range []struct{ sni, verify string }{
			{"maint." + testDomain, "maint." + testDomain},
			{"admin." + testDomain, "admin." + testDomain},
			{"MAINT." + strings.ToUpper(testDomain), "maint." + testDomain},
			{"localhost", "localhost"},
			{"", "127.0.0.1"},
			{"", "192.0.2.10"}, // dns.addresses: proxytunnel -p <public IP>
			{"", "maint." + testDomain},
			{"unknown.example.org", "maint." + testDomain},
		} {
			dialLeaf(t, addr, c.sni, c.verify, m.RootPEM(), now)
		}
	}

	// A restart reuses the CA byte for byte.
	m2, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m2.RootPEM(), caPEM) {
		t.Error("restart made a new CA")
	}
	if !m2.CAExpiry().Equal(m.CAExpiry()) {
		t.Error("restart changed the CA expiry")
	}
}

func TestSelfSignedKeyModeRestored(t *testing.T) {
	cfg := testConfig(t, config.ModeSelfSigned)
	if _, err := New(Options{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(cfg.DataDir, CAKeyFile)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(key)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v after restart, want 0600", fi.Mode().Perm())
	}
}

func TestSelfSignedBrokenCAFailsNamingDataDir(t *testing.T) {
	cfg := testConfig(t, config.ModeSelfSigned)
	if err := os.WriteFile(filepath.Join(cfg.DataDir, CACertFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{Check(cfg), func() error { _, err := New(Options{Config: cfg}); return err }()} {
		if err == nil || !strings.HasPrefix(err.Error(), "data_dir: ") {
			t.Errorf("got %v, want a data_dir error", err)
		}
	}
}

func TestSelfSignedLeafRenewal(t *testing.T) {
	cfg := testConfig(t, config.ModeSelfSigned)
	clk := testclock.New(time.Now())
	m, err := New(Options{Config: cfg, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, m.ProxyTLSConfig())
	first := dialLeaf(t, addr, "maint."+testDomain, "maint."+testDomain, m.RootPEM(), clk.Now())
	if got := m.CertExpiry(); !got.Equal(first.NotAfter) {
		t.Errorf("CertExpiry %v, served leaf expires %v", got, first.NotAfter)
	}

	// Well before the renewal point nothing changes.
	clk.Add(30 * 24 * time.Hour)
	m.check()
	if again := dialLeaf(t, addr, "maint."+testDomain, "maint."+testDomain, m.RootPEM(), clk.Now()); again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("leaf renewed 60 days before expiry")
	}

	// 25 days before expiry, Run's check renews it.
	clk.Set(first.NotAfter.Add(-25 * 24 * time.Hour))
	m.check()
	second := dialLeaf(t, addr, "maint."+testDomain, "maint."+testDomain, m.RootPEM(), clk.Now())
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 || !second.NotAfter.After(first.NotAfter) {
		t.Fatalf("leaf not renewed: serial %v expires %v", second.SerialNumber, second.NotAfter)
	}

	// Without Run ticking, a handshake after the leaf expired still gets a fresh one.
	clk.Set(second.NotAfter.Add(time.Hour))
	third := dialLeaf(t, addr, "", "maint."+testDomain, m.RootPEM(), clk.Now())
	if third.SerialNumber.Cmp(second.SerialNumber) == 0 {
		t.Fatal("expired leaf served")
	}
}

func TestIssueFromDataDir(t *testing.T) {
	cfg := testConfig(t, config.ModeSelfSigned)
	if _, err := IssueFromDataDir(cfg.DataDir, "x.example.test"); err == nil {
		t.Fatal("issued without a CA")
	}
	m, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := IssueFromDataDir(cfg.DataDir, "*.maint."+testDomain, "10.0.0.9")
	if err != nil {
		t.Fatal(err)
	}
	ln := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	dialLeaf(t, ln, "12345-se2.maint."+testDomain, "12345-se2.maint."+testDomain, m.RootPEM(), time.Now())
	dialLeaf(t, ln, "", "10.0.0.9", m.RootPEM(), time.Now())
}
