package certs

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/atomicfile"
	"maintproxy/internal/testclock"
)

// writePair signs a leaf for names with ca and writes chain and key to cert and key.
func writePair(t *testing.T, ca *identityCA, certPath, keyPath string, names ...string) *x509.Certificate {
	t.Helper()
	leaf, err := signLeaf(ca, time.Now(), names, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	for _, der := range leaf.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != "" {
		replaceFile(t, certPath, chain)
	}
	if keyPath != "" {
		replaceFile(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	}
	return leaf.Leaf
}

// replaceFile swaps path's content with a rename, as deployment tools do.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func testCA(t *testing.T) *identityCA {
	t.Helper()
	ca, err := createCA(t.TempDir(), "files test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func filesConfig(t *testing.T) (*config.Broker, *identityCA) {
	t.Helper()
	ca := testCA(t)
	dir := t.TempDir()
	cfg := testConfig(t, config.ModeFiles, func(b *config.Broker) {
		b.TLS.Files = config.Files{Cert: filepath.Join(dir, "fullchain.pem"), Key: filepath.Join(dir, "privkey.pem")}
	})
	writePair(t, ca, cfg.TLS.Files.Cert, cfg.TLS.Files.Key, "maint."+testDomain, "admin."+testDomain)
	return cfg, ca
}

// TestFilesReloadWithoutRestart drives Run's periodic work (check) at an injected time,
// so each step is decided, not raced: a replaced pair is served after the next check, a
// half-replaced one is not; then Run itself picks up a change on its ticker.
func TestFilesReloadWithoutRestart(t *testing.T) {
	cfg, ca := filesConfig(t)
	clk := testclock.New(time.Now())
	m, logs := newLogged(t, Options{Config: cfg, Now: clk.Now, CheckInterval: 10 * time.Millisecond})
	if string(m.RootPEM()) != string(ca.pem) {
		t.Error("RootPEM is not the self-signed top of the chain")
	}
	proxy, web := serveTLS(t, m.ProxyTLSConfig()), serveTLS(t, m.WebTLSConfig())
	served := func(addr, sni, name string) *x509.Certificate {
		t.Helper()
		return dialLeaf(t, addr, sni, name, ca.pem, clk.Now())
	}
	wantServed := func(want *x509.Certificate, what string) {
		t.Helper()
		if got := served(web, "admin."+testDomain, "admin."+testDomain); got.SerialNumber.Cmp(want.SerialNumber) != 0 {
			t.Fatalf("%s: web serves serial %v, want %v", what, got.SerialNumber, want.SerialNumber)
		}
		if got := served(proxy, "", "maint."+testDomain); got.SerialNumber.Cmp(want.SerialNumber) != 0 {
			t.Fatalf("%s: proxy serves serial %v, want %v", what, got.SerialNumber, want.SerialNumber)
		}
	}
	first := served(proxy, "maint."+testDomain, "maint."+testDomain)

	// A whole new pair is picked up on both listeners at the next check, not before.
	second := writePair(t, ca, cfg.TLS.Files.Cert, cfg.TLS.Files.Key, "maint."+testDomain, "admin."+testDomain)
	wantServed(first, "before the check")
	clk.Add(10 * time.Second)
	m.check()
	wantServed(second, "after the check")

	// Half-replaced (new certificate, old key): the previous one stays in service and a
	// warning says why; once the key follows, the new pair is served.
	writePair(t, ca, cfg.TLS.Files.Cert, "", "maint."+testDomain, "admin."+testDomain)
	clk.Add(10 * time.Second)
	m.check()
	if !strings.Contains(m.Warning(), "tls.files.key") {
		t.Errorf("warning %q does not name tls.files.key", m.Warning())
	}
	wantServed(second, "certificate without its key")
	fourth := writePair(t, ca, cfg.TLS.Files.Cert, cfg.TLS.Files.Key, "maint."+testDomain, "admin."+testDomain)
	clk.Add(10 * time.Second)
	m.check()
	wantServed(fourth, "key followed")
	if w := m.Warning(); w != "" {
		t.Errorf("warning after a good reload: %q", w)
	}
	if !strings.Contains(logs.String(), "reloaded the certificate files") {
		t.Errorf("reload not logged:\n%s", logs.String())
	}

	// Run checks on its own ticker (real time: the injected clock only tells the time).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}()
	fifth := writePair(t, ca, cfg.TLS.Files.Cert, cfg.TLS.Files.Key, "maint."+testDomain, "admin."+testDomain)
	deadline := time.Now().Add(10 * time.Second)
	for served(web, "admin."+testDomain, "admin."+testDomain).SerialNumber.Cmp(fifth.SerialNumber) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not reload the files within 10s")
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

func TestFilesExpiryWarning(t *testing.T) {
	cfg, _ := filesConfig(t)
	clk := testclock.New(time.Now())
	m, err := New(Options{Config: cfg, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if m.Warning() != "" || !m.CAExpiry().IsZero() {
		t.Fatalf("warning %q, CA expiry %v", m.Warning(), m.CAExpiry())
	}
	clk.Set(m.CertExpiry().Add(-10 * 24 * time.Hour))
	if w := m.Warning(); !strings.Contains(w, "tls.files.cert expires on") || !strings.Contains(w, "(in 10 days)") {
		t.Errorf("warning %q", w)
	}
}

func TestFilesMisconfigurationNamesField(t *testing.T) {
	ca, other := testCA(t), testCA(t)
	dir := t.TempDir()
	good, goodKey := filepath.Join(dir, "good.pem"), filepath.Join(dir, "good-key.pem")
	writePair(t, ca, good, goodKey, "maint."+testDomain, "admin."+testDomain)
	wrongNames, wrongNamesKey := filepath.Join(dir, "wrong.pem"), filepath.Join(dir, "wrong-key.pem")
	writePair(t, ca, wrongNames, wrongNamesKey, "maint."+testDomain, "www.example.org")
	otherKey := filepath.Join(dir, "other-key.pem")
	writePair(t, ca, "", otherKey, "maint."+testDomain)
	otherRoot := filepath.Join(dir, "other-root.pem")
	replaceFile(t, otherRoot, other.pem)
	rightRoot := filepath.Join(dir, "root.pem")
	replaceFile(t, rightRoot, ca.pem)
	garbage := filepath.Join(dir, "garbage.pem")
	replaceFile(t, garbage, []byte("not a certificate"))

	for _, c := range []struct {
		name            string
		cert, key, root string
		want            string
	}{
		{"missing cert", filepath.Join(dir, "nope.pem"), goodKey, "", "tls.files.cert: open "},
		{"missing key", good, filepath.Join(dir, "nope.pem"), "", "tls.files.key: open "},
		{"not PEM", garbage, goodKey, "", "tls.files.cert: "},
		{"key of another cert", good, otherKey, "", "tls.files.key: "},
		{"names outside", wrongNames, wrongNamesKey, "", "tls.files.cert: the certificate is not valid for admin." + testDomain},
		{"root not issuing", good, goodKey, otherRoot, "tls.files.root: "},
		{"root unreadable", good, goodKey, filepath.Join(dir, "nope.pem"), "tls.files.root: open "},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, config.ModeFiles, func(b *config.Broker) {
				b.TLS.Files = config.Files{Cert: c.cert, Key: c.key, Root: c.root}
			})
			_, err := New(Options{Config: cfg})
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("New: %v, want prefix %q", err, c.want)
			}
			if err2 := Check(cfg); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("Check: %v, New: %v", err2, err)
			}
		})
	}

	// The explicit root is what the bundle ships.
	cfg := testConfig(t, config.ModeFiles, func(b *config.Broker) {
		b.TLS.Files = config.Files{Cert: good, Key: goodKey, Root: rightRoot}
	})
	m, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if string(m.RootPEM()) != string(ca.pem) {
		t.Error("RootPEM is not tls.files.root")
	}
}

func TestConfigMisconfigurationNamesField(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*config.Broker)
		want string
	}{
		{"unknown mode", func(b *config.Broker) { b.TLS.Mode = "letsencrypt" }, "tls.mode: "},
		{"acme without email", func(b *config.Broker) { b.TLS.Mode = config.ModeACME }, "tls.acme.email: "},
		{"acme name outside the domain", func(b *config.Broker) {
			b.TLS.Mode, b.TLS.ACME.Email = config.ModeACME, "ops@example.test"
			b.TLS.ACME.ExtraNames = []string{"www.example.org"}
		}, "tls.acme.extra_names[0]: "},
		{"files without cert", func(b *config.Broker) { b.TLS.Mode = config.ModeFiles }, "tls.files.cert: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := rawConfig(t, config.ModeSelfSigned)
			c.edit(cfg)
			_, err := config.NewBroker(*cfg)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("NewBroker: %v, want prefix %q", err, c.want)
			}
			// New takes configurations from the config constructors, which validate these
			// fields; it does not check them a second time.
		})
	}
	for _, c := range []struct {
		name string
		edit func(*config.Broker)
		want string
	}{
		{"root_file unreadable", func(b *config.Broker) { b.TLS.ACME.RootFile = "/nonexistent/root.pem" }, "tls.acme.root_file: open "},
		{"ca_file unreadable", func(b *config.Broker) { b.TLS.ACME.CAFile = "/nonexistent/ca.pem" }, "tls.acme.ca_file: open "},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, config.ModeACME, func(b *config.Broker) {
				b.TLS.ACME.Email = "ops@example.test"
				c.edit(b)
			})
			_, err := New(Options{Config: cfg})
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("New: %v, want prefix %q", err, c.want)
			}
		})
	}
}

func TestACMEDefaultRootIsISRGRootX1(t *testing.T) {
	cfg := testConfig(t, config.ModeACME, func(b *config.Broker) { b.TLS.ACME.Email = "ops@example.test" })
	m, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(m.RootPEM())
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "ISRG Root X1" || c.Subject.Organization[0] != "Internet Security Research Group" {
		t.Errorf("root subject %v", c.Subject)
	}
	const fp = "96bcec06264976f37460779acf28c5a7cfe8a3c0aae11a8ffcee05c0bddf08c6"
	if got := sha256Hex(c.Raw); got != fp {
		t.Errorf("root fingerprint %s, want %s", got, fp)
	}
	if got := m.WebTLSConfig().NextProtos; strings.Join(got, ",") != "http/1.1,acme-tls/1" {
		t.Errorf("web ALPN %v", got)
	}
	if got := m.ProxyTLSConfig().NextProtos; strings.Join(got, ",") != "http/1.1" {
		t.Errorf("proxy ALPN %v", got)
	}
}
