package certs

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/crypto/acme/autocert"

	"maintproxy/config"
)

// store stands in for the cluster store: it keeps the first CA it is given.
type store struct {
	mu      sync.Mutex
	cert    []byte
	key     []byte
	creates int
}

func (s *store) ca(create func() ([]byte, []byte, error)) ([]byte, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert == nil {
		c, k, err := create()
		if err != nil {
			return nil, nil, err
		}
		s.cert, s.key = c, k
		s.creates++
	}
	return s.cert, s.key, nil
}

// TestProvidedCA: two brokers given one CA provider serve leaves of the same CA, created
// once, and nothing of it is written to their data directories.
func TestProvidedCA(t *testing.T) {
	st := &store{}
	var roots [][]byte
	for range 2 {
		cfg := testConfig(t, config.ModeSelfSigned)
		m, err := New(Options{Config: cfg, CA: st.ca})
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, m.RootPEM())
		leaf, err := m.getCertificate(&tls.ClientHelloInfo{})
		if err != nil || !bytes.Equal(leaf.Certificate[1], m.source.(*selfSigned).current().cur.cert.Raw) {
			t.Fatalf("leaf not signed by the provided CA: %v", err)
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, CAKeyFile)); err == nil {
			t.Error("the provided CA's key was written to data_dir")
		}
	}
	if !bytes.Equal(roots[0], roots[1]) || !bytes.Equal(roots[0], st.cert) || st.creates != 1 {
		t.Errorf("roots differ or the CA was created %d times", st.creates)
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
