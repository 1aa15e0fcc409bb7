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
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Lifetimes of the self-signed identity.
const (
	caLifetime   = 3 * 365 * 24 * time.Hour
	leafLifetime = 90 * 24 * time.Hour
)

// CA file names inside data_dir.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

type selfSigned struct {
	m      *Manager
	caCert *x509.Certificate
	caKey  crypto.Signer
	caPEM  []byte

	mu   sync.RWMutex
	leaf *tls.Certificate
}

func newSelfSigned(m *Manager) (*selfSigned, error) {
	s := &selfSigned{m: m}
	if err := s.loadOrCreateCA(); err != nil {
		return nil, err
	}
	if err := s.issueLeaf(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *selfSigned) loadOrCreateCA() error {
	dir := s.m.cfg.DataDir
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err == nil {
		keyPEM, err := os.ReadFile(keyPath)
		if err != nil {
			return fmt.Errorf("data_dir: %s exists but its key does not: %w", certPath, err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("data_dir: %s: %w", certPath, err)
		}
		s.caCert, s.caKey, s.caPEM = pair.Leaf, pair.PrivateKey.(crypto.Signer), certPEM
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data_dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := s.m.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "maintproxy identity CA " + s.m.cfg.Domain, Organization: []string{"maintproxy"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	s.caCert, _ = x509.ParseCertificate(der)
	s.caKey, s.caPEM = key, certPEM
	s.m.log.Info("created self-signed identity CA", "file", certPath, "expires", tmpl.NotAfter.Format(time.DateOnly))
	return nil
}

func (s *selfSigned) issueLeaf() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := s.m.now()
	dns, ips := s.m.names()
	notAfter := now.Add(leafLifetime)
	if notAfter.After(s.caCert.NotAfter) {
		notAfter = s.caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: dns[0]},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.caCert, key.Public(), s.caKey)
	if err != nil {
		return err
	}
	leaf, _ := x509.ParseCertificate(der)
	s.mu.Lock()
	s.leaf = &tls.Certificate{Certificate: [][]byte{der, s.caCert.Raw}, PrivateKey: key, Leaf: leaf}
	s.mu.Unlock()
	return nil
}

func (s *selfSigned) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leaf, nil
}

func (s *selfSigned) rootPEM() []byte { return s.caPEM }

// run renews the leaf when two thirds of its life have passed.
func (s *selfSigned) run(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.mu.RLock()
		leaf := s.leaf.Leaf
		s.mu.RUnlock()
		if s.m.now().After(leaf.NotAfter.Add(-leafLifetime / 3)) {
			if err := s.issueLeaf(); err != nil {
				s.m.log.Error("renewing the self-signed leaf certificate failed", "err", err)
			}
		}
	}
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

// writeFileAtomic writes data to path through a temporary file and a rename.
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
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
