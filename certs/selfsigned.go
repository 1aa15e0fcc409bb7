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

// identityCA is a self-signed identity CA; key is nil for a CA that is only published.
type identityCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// caBackdate is how far before its creation a CA's validity starts (clock skew between
// broker and clients); created undoes it.
const caBackdate = time.Hour

// created is when ca was made.
func (ca *identityCA) created() time.Time { return ca.cert.NotBefore.Add(caBackdate) }

// selfSigned serves leaves signed by the current identity CA of its store (data_dir), and
// rolls the CA over before it expires (rollover.go).
type selfSigned struct {
	m              *Manager
	store          caStore
	rolloverBefore time.Duration

	renewMu sync.Mutex // serialises store changes and leaf issuance
	lastErr string     // the last store failure logged (under renewMu)

	mu     sync.RWMutex
	set    *caSet
	leaf   *tls.Certificate
	leafCA *x509.Certificate // the CA that signed leaf
}

func newSelfSigned(m *Manager) (*selfSigned, error) {
	s := &selfSigned{m: m, store: storeFor(m.cfg, m.caStore), rolloverBefore: m.cfg.TLS.SelfSigned.RolloverBefore}
	now := m.now()
	set, err := s.store.load()
	if errors.Is(err, errNoCA) {
		if err := s.store.create(m.cfg.Domain, now); err != nil {
			return nil, err
		}
		if set, err = s.store.load(); err == nil {
			m.log.Info("created the self-signed identity CA", "store", s.store.where(),
				"expires", set.cur.cert.NotAfter.UTC().Format(time.DateOnly), "sha256", fingerprint(set.cur.cert))
		}
	}
	if err != nil {
		return nil, err
	}
	s.set = set
	s.renewMu.Lock()
	err = s.advance(now)
	s.renewMu.Unlock()
	if err != nil {
		if !now.Before(s.current().cur.cert.NotAfter) {
			return nil, fmt.Errorf("data_dir: the identity CA expired and no new one can be made: %w", err)
		}
		m.log.Error("identity CA rollover failed; retrying", "err", err.Error())
	}
	if err := s.issueLeaf(now); err != nil {
		return nil, err
	}
	return s, nil
}

// current returns the CAs in use.
func (s *selfSigned) current() *caSet {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.set
}

// loadCA reads the current identity CA from dir; errNoCA when there is none.
func loadCA(dir string) (*identityCA, error) {
	set, err := dirStore{dir}.load()
	if err != nil {
		return nil, err
	}
	return set.cur, nil
}

// createCA makes a new current identity CA valid caLifetime from now and stores it in dir.
func createCA(dir, domain string, now time.Time) (*identityCA, error) {
	if err := (dirStore{dir}).create(domain, now); err != nil {
		return nil, err
	}
	return loadCA(dir)
}

// makeCA makes a new identity CA valid caLifetime from now, in memory.
func makeCA(domain string, now time.Time) (certPEM, keyPEM []byte, _ *identityCA, _ error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	sn := serial()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject: pkix.Name{
			// The serial's start tells apart CAs made on one day (a rollover's pair).
			CommonName:   fmt.Sprintf("maintproxy identity CA %s %s %s", domain, now.UTC().Format(time.DateOnly), shortSerial(sn)),
			Organization: []string{"maintproxy"},
		},
		NotBefore:             now.Add(-caBackdate),
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

// issueLeaf signs a new leaf for the broker's names, valid leafLifetime but never past
// the CA's own expiry.
func (s *selfSigned) issueLeaf(now time.Time) error {
	ca := s.current().cur
	dns, ips := s.m.leafNames()
	leaf, err := signLeaf(ca, now, dns, ips)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.leaf, s.leafCA = leaf, ca.cert
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

// check picks up CA files changed by another process, moves the rollover on, then renews
// the leaf if due.
func (s *selfSigned) check(now time.Time) {
	s.renewMu.Lock()
	s.reload()
	if err := s.advance(now); err != nil {
		s.logOnce("identity CA rollover failed; retrying", err)
	}
	s.renewMu.Unlock()
	s.renewLeaf(now)
}

// reload reads the store again when its content changed (`maintproxy certs regenerate`).
// A store that cannot be loaded leaves the CAs in use in place. Called under renewMu.
func (s *selfSigned) reload() {
	if s.store.sum() == s.current().sum {
		return
	}
	set, err := s.store.load()
	if err != nil {
		s.logOnce("the identity CA files changed but cannot be loaded; keeping the CAs in use", err)
		return
	}
	s.lastErr = ""
	s.mu.Lock()
	s.set = set
	s.mu.Unlock()
	s.m.log.Info("reloaded the identity CAs", "store", s.store.where(), "current", fingerprint(set.cur.cert),
		"next", optFingerprint(set.next), "previous", optFingerprint(set.prev))
}

// logOnce logs err unless it is the one logged last. Called under renewMu.
func (s *selfSigned) logOnce(msg string, err error) {
	if err.Error() == s.lastErr {
		return
	}
	s.lastErr = err.Error()
	s.m.log.Error(msg, "err", err.Error())
}

// leafDue reports whether the leaf must be replaced: the current CA changed, or the leaf
// is within leafRenewBefore of its expiry (unless it already lasts as long as the CA).
func (s *selfSigned) leafDue(now time.Time) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ca := s.set.cur.cert
	return !s.leafCA.Equal(ca) ||
		now.After(s.leaf.Leaf.NotAfter.Add(-leafRenewBefore)) && s.leaf.Leaf.NotAfter.Before(ca.NotAfter)
}

// renewLeaf issues a new leaf when leafDue.
func (s *selfSigned) renewLeaf(now time.Time) {
	if !s.leafDue(now) {
		return
	}
	s.renewMu.Lock()
	defer s.renewMu.Unlock()
	if !s.leafDue(now) { // re-checked: a concurrent handshake may have renewed it
		return
	}
	if err := s.issueLeaf(now); err != nil {
		s.m.log.Error("renewing the self-signed leaf certificate failed", "err", err)
		return
	}
	s.m.log.Info("renewed the self-signed leaf certificate", "expires", s.certExpiry().UTC().Format(time.DateOnly),
		"ca", fingerprint(s.current().cur.cert))
}

func (s *selfSigned) run(context.Context) {}

// rootPEM is every published CA: current, next, and previous until it expires.
func (s *selfSigned) rootPEM() []byte {
	var out []byte
	for _, ca := range s.current().published(s.m.now()) {
		out = append(out, ca.pem...)
	}
	return out
}

func (s *selfSigned) caExpiry() time.Time { return s.current().cur.cert.NotAfter }

func (s *selfSigned) certExpiry() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leaf.Leaf.NotAfter
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

// shortSerial is the first 8 hex digits of a serial number.
func shortSerial(n *big.Int) string {
	h := fmt.Sprintf("%X", n)
	return h[:min(8, len(h))]
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n.Add(n, big.NewInt(1)) // never zero
}
