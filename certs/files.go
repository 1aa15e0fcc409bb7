package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"maintproxy/config"
)

// filesWarnBefore is when operators start being told that a certificate file expires:
// nothing renews it for them.
const filesWarnBefore = 30 * 24 * time.Hour

// filesSource serves tls.files.cert/key (or tls.files.pkcs12) and reloads them when their
// content changes.
type filesSource struct {
	m *Manager

	mu        sync.RWMutex
	cur       *loadedFiles
	failedSum [32]byte // content that failed to load, so it is reported once
	lastErr   error
}

// loadedFiles is one consistent read of the configured files.
type loadedFiles struct {
	cert *tls.Certificate
	root []byte
	sum  [32]byte
}

func newFiles(m *Manager) (*filesSource, error) {
	lf, err := loadFiles(m.cfg, m.now())
	if err != nil {
		return nil, err
	}
	return &filesSource{m: m, cur: lf}, nil
}

// fileContents is one read of the configured files.
type fileContents struct {
	cert, key, p12, password, root []byte
}

// readFiles reads the configured files and a digest of their content (which covers the
// PKCS#12 password too, so a changed password file is a change; the digest stays in memory).
func readFiles(f config.Files) (fc fileContents, sum [32]byte, err error) {
	for _, r := range []struct {
		field, path string
		into        *[]byte
	}{
		{"tls.files.cert", f.Cert, &fc.cert},
		{"tls.files.key", f.Key, &fc.key},
		{"tls.files.pkcs12", f.PKCS12, &fc.p12},
		{"tls.files.pkcs12_password_file", f.PKCS12PasswordFile, &fc.password},
		{"tls.files.root", f.Root, &fc.root},
	} {
		if r.path == "" {
			continue
		}
		if *r.into, err = os.ReadFile(r.path); err != nil {
			return fc, sum, fmt.Errorf("%s: %w", r.field, err)
		}
	}
	h := sha256.New()
	for _, b := range [][]byte{fc.cert, fc.key, fc.p12, fc.password, fc.root} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	copy(sum[:], h.Sum(nil))
	return fc, sum, nil
}

// loadFiles reads and checks the configured files: a parseable chain and matching key
// (PEM, or PKCS#12 opened with its password), valid at now for maint.<domain> and
// admin.<domain>, ending in tls.files.root if given.
func loadFiles(cfg *config.Broker, now time.Time) (*loadedFiles, error) {
	fc, sum, err := readFiles(cfg.TLS.Files)
	if err != nil {
		return nil, err
	}
	var (
		chain []*x509.Certificate
		pair  tls.Certificate
		field = "tls.files.cert"
	)
	if cfg.TLS.Files.PKCS12 != "" {
		field = "tls.files.pkcs12"
		if chain, pair, err = decodePKCS12(cfg.TLS.Files, fc.p12, fc.password); err != nil {
			return nil, err
		}
	} else {
		if chain, err = parseCerts(fc.cert); err != nil {
			return nil, fmt.Errorf("tls.files.cert: %s: %w", cfg.TLS.Files.Cert, err)
		}
		if pair, err = tls.X509KeyPair(fc.cert, fc.key); err != nil {
			return nil, fmt.Errorf("tls.files.key: %s does not hold the key of tls.files.cert: %w", cfg.TLS.Files.Key, err)
		}
	}
	leaf := chain[0]
	for _, name := range []string{cfg.ProxyHost(), cfg.WebHost()} {
		if err := leaf.VerifyHostname(name); err != nil {
			return nil, fmt.Errorf("%s: the certificate is not valid for %s (it names %s)",
				field, name, strings.Join(leaf.DNSNames, ", "))
		}
	}
	if !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("%s: the certificate expired on %s", field, leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	rootPEM := fc.root
	if rootPEM != nil {
		roots, err := parseCerts(rootPEM)
		if err != nil {
			return nil, fmt.Errorf("tls.files.root: %s: %w", cfg.TLS.Files.Root, err)
		}
		if err := verifyChain(chain, roots[0], cfg.ProxyHost(), now); err != nil {
			return nil, fmt.Errorf("tls.files.root: the chain in %s does not lead to this root: %w", field, err)
		}
		rootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: roots[0].Raw})
	} else if top := chain[len(chain)-1]; isSelfSigned(top) {
		rootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: top.Raw})
	}
	return &loadedFiles{cert: &pair, root: rootPEM, sum: sum}, nil
}

func verifyChain(chain []*x509.Certificate, root *x509.Certificate, name string, now time.Time) error {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name, CurrentTime: now})
	return err
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// parseCerts returns every CERTIFICATE block in data, in order.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

func (f *filesSource) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.cur.cert, nil
}

// check reloads the files when their content changed. A broken or half-replaced set (a
// new certificate next to the old key) keeps the previous certificate in service and is
// retried once the content changes again.
func (f *filesSource) check(now time.Time) {
	_, sum, err := readFiles(f.m.cfg.TLS.Files)
	f.mu.RLock()
	same := err == nil && (sum == f.cur.sum || sum == f.failedSum)
	f.mu.RUnlock()
	if same {
		return
	}
	var lf *loadedFiles
	if err == nil {
		lf, err = loadFiles(f.m.cfg, now)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if f.lastErr == nil || f.lastErr.Error() != err.Error() {
			f.m.log.Error("certificate files changed but cannot be loaded; still serving the previous certificate", "err", err)
		}
		f.lastErr, f.failedSum = err, sum
		return
	}
	f.cur, f.lastErr, f.failedSum = lf, nil, [32]byte{}
	f.m.log.Info("reloaded the certificate files", "cert", f.m.cfg.TLS.Files.Cert+f.m.cfg.TLS.Files.PKCS12,
		"expires", lf.cert.Leaf.NotAfter.UTC().Format(time.DateOnly))
}

func (f *filesSource) run(context.Context) {}

func (f *filesSource) rootPEM() []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.cur.root
}

func (f *filesSource) caExpiry() time.Time { return time.Time{} }

func (f *filesSource) certExpiry() time.Time {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.cur.cert.Leaf.NotAfter
}

func (f *filesSource) warning(now time.Time) string {
	f.mu.RLock()
	lastErr, exp := f.lastErr, f.cur.cert.Leaf.NotAfter
	f.mu.RUnlock()
	if lastErr != nil {
		return fmt.Sprintf("the changed certificate files cannot be loaded (%v); still serving the certificate that %s",
			lastErr, expiresIn(exp, now))
	}
	if now.Before(exp.Add(-filesWarnBefore)) {
		return ""
	}
	field := "tls.files.cert"
	if f.m.cfg.TLS.Files.PKCS12 != "" {
		field = "tls.files.pkcs12"
	}
	return fmt.Sprintf("the certificate in %s %s: replace the files (they are reloaded without a restart)",
		field, expiresIn(exp, now))
}
