package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Lifetimes of the self-signed identity.
const (
	caLifetime   = 3 * 365 * 24 * time.Hour
	leafLifetime = 90 * 24 * time.Hour
	// leafRenewBefore: a leaf is replaced when this much of its life is left, so a
	// broker that was down for a few weeks still comes back with a valid one.
	leafRenewBefore = 30 * 24 * time.Hour
	// caWarnBefore is when operators start being told that the CA expires.
	caWarnBefore = 90 * 24 * time.Hour
)

// CA file names inside data_dir. The key file is written with mode 0600.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

var errNoCA = errors.New("no identity CA yet")

// identityCA is the persisted self-signed CA.
type identityCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// selfSigned serves leaves signed by the identity CA in data_dir.
type selfSigned struct {
	m *Manager

	renewMu sync.Mutex // serialises CA replacement and leaf issuance

	mu     sync.RWMutex
	ca     *identityCA
	leaf   *tls.Certificate
	leafCA *identityCA // the CA that signed leaf
}

func newSelfSigned(m *Manager) (*selfSigned, error) {
	s := &selfSigned{m: m}
	now := m.now()
	if m.caFrom != nil {
		ca, err := providedCA(m, now)
		if err != nil {
			return nil, err
		}
		s.ca = ca
		return s, s.issueLeaf(now)
	}
	ca, err := loadCA(m.cfg.DataDir)
	switch {
	case errors.Is(err, errNoCA):
		ca, err = createCA(m.cfg.DataDir, m.cfg.Domain, now)
		if err != nil {
			return nil, err
		}
		m.log.Info("created the self-signed identity CA", "file", filepath.Join(m.cfg.DataDir, CACertFile),
			"expires", ca.cert.NotAfter.UTC().Format(time.DateOnly))
	case err != nil:
		return nil, err
	case !now.Before(ca.cert.NotAfter):
		if ca, err = s.replaceExpiredCA(ca, now); err != nil {
			return nil, err
		}
	}
	s.ca = ca
	if err := s.issueLeaf(now); err != nil {
		return nil, err
	}
	return s, nil
}

// loadCA reads the identity CA from dir; errNoCA when there is none. It tightens the
// key file's mode to 0600 if someone loosened it.
func loadCA(dir string) (*identityCA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoCA
	}
	if err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("data_dir: %s exists but its key cannot be read: %w", certPath, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("data_dir: %s and %s: %w", certPath, keyPath, err)
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("data_dir: %s is not a CA certificate", certPath)
	}
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		_ = os.Chmod(keyPath, 0o600) // best effort: a read-only data_dir still works
	}
	return &identityCA{cert: pair.Leaf, key: pair.PrivateKey.(crypto.Signer), pem: certPEM}, nil
}

// providedCA takes the identity CA from the Manager's provider, which creates it with
// makeCA when it has none.
func providedCA(m *Manager, now time.Time) (*identityCA, error) {
	certPEM, keyPEM, err := m.caFrom(func() ([]byte, []byte, error) {
		c, k, _, err := makeCA(m.cfg.Domain, now)
		return c, k, err
	})
	if err != nil {
		return nil, fmt.Errorf("identity CA: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity CA: %w", err)
	}
	if !pair.Leaf.IsCA {
		return nil, errors.New("identity CA: the certificate provided is not a CA")
	}
	if !now.Before(pair.Leaf.NotAfter) {
		return nil, fmt.Errorf("identity CA: the shared CA expired on %s; replace it in the store", pair.Leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	return &identityCA{cert: pair.Leaf, key: pair.PrivateKey.(crypto.Signer), pem: certPEM}, nil
}

// createCA makes a new identity CA valid caLifetime from now and stores it in dir.
func createCA(dir, domain string, now time.Time) (*identityCA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	certPEM, keyPEM, ca, err := makeCA(domain, now)
	if err != nil {
		return nil, err
	}
	// The key goes first: a certificate without its key would block every later start.
	if err := writeFileAtomic(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CACertFile), certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	return ca, nil
}

// makeCA makes a new identity CA valid caLifetime from now, in memory.
func makeCA(domain string, now time.Time) (certPEM, keyPEM []byte, _ *identityCA, _ error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject: pkix.Name{
			CommonName:   "maintproxy identity CA " + domain + " " + now.UTC().Format(time.DateOnly),
			Organization: []string{"maintproxy"},
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return certPEM, keyPEM, &identityCA{cert: cert, key: key, pem: certPEM}, nil
}

// replaceExpiredCA keeps the expired CA under a dated name and creates a new one: an
// expired CA gives no valid TLS at all, and Warning told operators for 90 days.
func (s *selfSigned) replaceExpiredCA(old *identityCA, now time.Time) (*identityCA, error) {
	dir := s.m.cfg.DataDir
	suffix := "-expired-" + old.cert.NotAfter.UTC().Format("20060102")
	for _, f := range []string{CACertFile, CAKeyFile} {
		p := filepath.Join(dir, f)
		if err := os.Rename(p, strings.TrimSuffix(p, ".pem")+suffix+".pem"); err != nil {
			return nil, fmt.Errorf("data_dir: keeping the expired identity CA: %w", err)
		}
	}
	ca, err := createCA(dir, s.m.cfg.Domain, now)
	if err != nil {
		return nil, err
	}
	s.m.log.Error("the identity CA expired and was replaced: technicians must download the tool bundle again",
		"expired", old.cert.NotAfter.UTC().Format(time.DateOnly), "new_expires", ca.cert.NotAfter.UTC().Format(time.DateOnly))
	return ca, nil
}

// issueLeaf signs a new leaf for the broker's names, valid leafLifetime but never past
// the CA's own expiry.
func (s *selfSigned) issueLeaf(now time.Time) error {
	s.mu.RLock()
	ca := s.ca
	s.mu.RUnlock()
	dns, ips := s.m.leafNames()
	leaf, err := signLeaf(ca, now, dns, ips)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.leaf, s.leafCA = leaf, ca
	s.mu.Unlock()
	return nil
}

func signLeaf(ca *identityCA, now time.Time, dns []string, ips []net.IP) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(leafLifetime)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	cn := ""
	if len(dns) > 0 {
		cn = dns[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// leafNames are the DNS names and IPs the self-signed leaf covers: maint.<domain>,
// admin.<domain>, localhost, loopback, the listen IPs and dns.addresses (the broker's
// public addresses, which `proxytunnel -p <IP>` sends as the server name).
func (m *Manager) leafNames() (dns []string, ips []net.IP) {
	dns = []string{m.cfg.ProxyHost(), m.cfg.WebHost(), "localhost"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	seen := map[string]bool{}
	add := func(ip net.IP) {
		if ip == nil || ip.IsUnspecified() || ip.IsLoopback() || seen[ip.String()] {
			return
		}
		seen[ip.String()] = true
		ips = append(ips, ip)
	}
	for _, addr := range []string{m.cfg.Listen.Proxy, m.cfg.Listen.Web} {
		host, _, _ := net.SplitHostPort(addr)
		add(net.ParseIP(host))
	}
	for _, a := range m.cfg.DNS.Addresses {
		add(net.ParseIP(a))
	}
	return dns, ips
}

// getCertificate serves the current leaf, renewing it first if it is due: a broker whose
// Run is not (yet) ticking still never serves an expired leaf.
func (s *selfSigned) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.renewLeaf(s.m.now())
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leaf, nil
}

// check replaces an expired CA, then renews the leaf if due.
func (s *selfSigned) check(now time.Time) {
	s.renewMu.Lock()
	s.mu.RLock()
	ca := s.ca
	s.mu.RUnlock()
	if !now.Before(ca.cert.NotAfter) && s.m.caFrom == nil { // a provided CA is replaced where it lives
		if nca, err := s.replaceExpiredCA(ca, now); err != nil {
			s.m.log.Error("replacing the expired identity CA failed", "err", err)
		} else {
			s.mu.Lock()
			s.ca = nca
			s.mu.Unlock()
		}
	}
	s.renewMu.Unlock()
	s.renewLeaf(now)
}

// renewLeaf issues a new leaf when the CA changed or leafRenewBefore before the leaf's
// expiry (unless it already lasts as long as the CA).
func (s *selfSigned) renewLeaf(now time.Time) {
	s.mu.RLock()
	due := s.leafCA != s.ca ||
		now.After(s.leaf.Leaf.NotAfter.Add(-leafRenewBefore)) && s.leaf.Leaf.NotAfter.Before(s.ca.cert.NotAfter)
	s.mu.RUnlock()
	if !due {
		return
	}
	s.renewMu.Lock()
	defer s.renewMu.Unlock()
	s.mu.RLock()
	due = s.leafCA != s.ca || // re-checked: a concurrent handshake may have renewed it
		now.After(s.leaf.Leaf.NotAfter.Add(-leafRenewBefore)) && s.leaf.Leaf.NotAfter.Before(s.ca.cert.NotAfter)
	s.mu.RUnlock()
	if !due {
		return
	}
	if err := s.issueLeaf(now); err != nil {
		s.m.log.Error("renewing the self-signed leaf certificate failed", "err", err)
		return
	}
	s.m.log.Info("renewed the self-signed leaf certificate", "expires", s.certExpiry().UTC().Format(time.DateOnly))
}

func (s *selfSigned) run(context.Context) {}

func (s *selfSigned) rootPEM() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ca.pem
}

func (s *selfSigned) caExpiry() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ca.cert.NotAfter
}

func (s *selfSigned) certExpiry() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leaf.Leaf.NotAfter
}

func (s *selfSigned) warning(now time.Time) string {
	exp := s.caExpiry()
	if now.Before(exp.Add(-caWarnBefore)) {
		return ""
	}
	return fmt.Sprintf("the identity CA %s; the broker then creates a new one and technicians must download "+
		"the tool bundle again (to switch earlier, remove %s and %s from data_dir and restart)",
		expiresIn(exp, now), CACertFile, CAKeyFile)
}

// IssueFromDataDir signs a leaf certificate for names (DNS names, wildcards or IPs) with
// the identity CA already in dataDir, for demo and test servers that technicians' clients
// should trust through the same CA. It fails when dataDir has no identity CA.
func IssueFromDataDir(dataDir string, names ...string) (tls.Certificate, error) {
	ca, err := loadCA(dataDir)
	if errors.Is(err, errNoCA) {
		return tls.Certificate{}, fmt.Errorf("data_dir: no %s in %s (start the broker once)", CACertFile, dataDir)
	}
	if err != nil {
		return tls.Certificate{}, err
	}
	var dns []string
	var ips []net.IP
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, strings.ToLower(n))
		}
	}
	leaf, err := signLeaf(ca, time.Now(), dns, ips)
	if err != nil {
		return tls.Certificate{}, err
	}
	return *leaf, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n.Add(n, big.NewInt(1)) // never zero
}

// writeFileAtomic writes data to path through a temporary file and a rename, so a crash
// never leaves a half-written certificate or key.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
