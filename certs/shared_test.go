package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"maintproxy/config"
	"maintproxy/internal/testclock"
)

// memCAs stands in for the cluster store's identity CA record (the broker tests run the
// real one on etcd): one record, a version, compare-and-swap.
type memCAs struct {
	mu    sync.Mutex
	set   CASet
	ver   int64
	swaps int
}

func (s *memCAs) LoadCAs() (CASet, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set, s.ver, nil
}

func (s *memCAs) SwapCAs(set CASet, version int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if version != s.ver {
		return false, nil
	}
	s.set, s.ver, s.swaps = set, s.ver+1, s.swaps+1
	return true, nil
}

func mustParse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	cs, err := parseCerts(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

// leafIssuer is the CA that signed the leaf m serves now.
func leafIssuer(t *testing.T, m *Manager) *x509.Certificate {
	t.Helper()
	leaf, err := m.getCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(leaf.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestSharedCAsRollover: brokers sharing one CA store create one CA, and move one
// rollover on between them: one next CA published by all, one switch, the old CA kept
// published until it expires. Nothing of it is written to their data directories.
func TestSharedCAsRollover(t *testing.T) {
	st := &memCAs{}
	clk := testclock.New(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	var ms []*Manager
	for range 2 {
		cfg := testConfig(t, config.ModeSelfSigned)
		m, err := New(Options{Config: cfg, CAStore: st, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, CAKeyFile)); err == nil {
			t.Error("the shared CA's key was written to data_dir")
		}
		ms = append(ms, m)
	}
	first := st.set.Current
	if st.swaps != 1 || !bytes.Equal(ms[0].RootPEM(), ms[1].RootPEM()) || !bytes.Equal(ms[0].RootPEM(), first.CertPEM) {
		t.Fatalf("want one CA created and served by both (%d writes)", st.swaps)
	}
	checkAll := func() {
		for _, m := range ms {
			m.check()
		}
	}
	roots := func(m *Manager) int { return bytes.Count(m.RootPEM(), []byte("BEGIN CERTIFICATE")) }

	// Rollover begins (a year before expiry): one next CA, published by both.
	clk.Set(time.Date(2029, 1, 5, 0, 0, 0, 0, time.UTC))
	checkAll()
	if st.set.Next == nil || st.swaps != 2 {
		t.Fatalf("want exactly one next CA made (%d writes)", st.swaps)
	}
	for i, m := range ms {
		if roots(m) != 2 || !bytes.Contains(m.RootPEM(), st.set.Next.CertPEM) {
			t.Errorf("broker %d publishes %d roots, want current and next", i, roots(m))
		}
		if !bytes.Equal(leafIssuer(t, m).Raw, ms[0].source.(*selfSigned).current().cur.cert.Raw) {
			t.Errorf("broker %d switched before the switch date", i)
		}
	}

	// Half the overlap later: both serve leaves from the new CA; the old one stays published.
	next := st.set.Next
	clk.Set(clk.Now().Add(200 * day))
	checkAll()
	if !bytes.Equal(st.set.Current.CertPEM, next.CertPEM) || st.set.Previous == nil || st.swaps != 3 {
		t.Fatalf("want one switch (%d writes)", st.swaps)
	}
	for i, m := range ms {
		iss := leafIssuer(t, m)
		if !bytes.Equal(iss.Raw, mustParse(t, next.CertPEM).Raw) || roots(m) != 2 {
			t.Errorf("broker %d: leaf from %s, %d roots; want the new CA and both published", i, iss.Subject, roots(m))
		}
	}

	// The old CA expires: no longer published anywhere.
	clk.Set(time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC))
	checkAll()
	if st.set.Previous != nil {
		t.Fatal("the expired CA is still in the store")
	}
	for i, m := range ms {
		if roots(m) != 1 {
			t.Errorf("broker %d publishes %d roots after the old CA expired", i, roots(m))
		}
	}

	// `certs regenerate` on the store: a next CA every broker picks up.
	if _, err := RegenerateIn(testConfig(t, config.ModeSelfSigned), st, clk.Now(), false); err != nil {
		t.Fatal(err)
	}
	checkAll()
	for i, m := range ms {
		if roots(m) != 2 {
			t.Errorf("broker %d did not pick up the regenerated CA", i)
		}
	}
}

// TestACMECacheFromOptions: the ACME source keeps its account and certificates in the
// cache it is given (the store), not in data_dir.
func TestACMECacheFromOptions(t *testing.T) {
	cfg := testConfig(t, config.ModeACME, func(c *config.Broker) { c.TLS.ACME.Email = "ops@example.test" })
	cache := autocert.DirCache(t.TempDir())
	m, err := New(Options{Config: cfg, ACMECache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.source.(*acmeSource).am.Cache; got != cache {
		t.Errorf("autocert cache %v, want the one given", got)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "acme")); err == nil {
		t.Error("an ACME cache directory was made in data_dir")
	}
}
