package capool

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"maintproxy/internal/atomicfile"
)

// MaxBundle bounds a published root bundle: a handful of PEM certificates.
const MaxBundle = 64 << 10

// NextPath is the file beside caFile where an agent keeps the roots the broker publishes
// (its current identity CA and, during a rollover, the next or previous one).
func NextPath(caFile string) string { return caFile + ".next" }

// Trust is an agent's trust in its broker: the roots of ca_file plus those last fetched
// from the broker into NextPath(ca_file). It can take new roots while connections use it,
// so an agent that fetched the next CA during a rollover reconnects after the switch
// without a restart. Its methods are safe for concurrent use.
type Trust struct {
	file string
	pool atomic.Pointer[x509.CertPool]

	mu   sync.Mutex
	last []byte // the published bundle trusted now
}

// LoadTrust reads caFile and, if it exists, NextPath(caFile). A missing or broken next
// file is ignored (it only adds roots); caFile itself must hold a certificate.
func LoadTrust(caFile string) (*Trust, error) {
	t := &Trust{file: caFile}
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Trust) reload() error {
	pool, err := Load(t.file)
	if err != nil {
		return err
	}
	if next, err := os.ReadFile(NextPath(t.file)); err == nil && pool.AppendCertsFromPEM(next) {
		t.last = next
	}
	t.pool.Store(pool)
	return nil
}

// Pool returns the roots trusted now.
func (t *Trust) Pool() *x509.CertPool { return t.pool.Load() }

// TLSConfig returns a client configuration that verifies the server's chain for
// serverName against the roots trusted at the time of each handshake (now is the clock;
// nil is time.Now). Go's own verification is replaced only because it reads RootCAs once
// per configuration; this one checks the same things: chain, name, validity, server use.
func (t *Trust) TLSConfig(serverName string, now func() time.Time) *tls.Config {
	if now == nil {
		now = time.Now
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: true, // VerifyConnection below verifies every handshake
		VerifyConnection: func(cs tls.ConnectionState) error {
			return t.verify(cs.PeerCertificates, serverName, now())
		},
	}
}

// verify checks a served chain for name at now.
func (t *Trust) verify(chain []*x509.Certificate, name string, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: t.Pool(), Intermediates: inter, DNSName: name, CurrentTime: now})
	return err
}

// Update takes the broker's published root bundle: it must hold only CA certificates, and
// one of them must be the root of served, the chain the broker presented on the
// connection that delivered it (so a bundle can never leave the agent unable to reach the
// broker it came from). A changed bundle is written to NextPath (atomically) and trusted
// at once; changed reports whether it differed from what was trusted. A failed write
// still updates the trust in memory and is returned as the error.
func (t *Trust) Update(bundle []byte, served []*x509.Certificate, name string, now time.Time) (changed bool, err error) {
	if len(bundle) > MaxBundle {
		return false, fmt.Errorf("published roots: %d bytes, more than %d", len(bundle), MaxBundle)
	}
	var n int
	for rest := bundle; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if b.Type != "CERTIFICATE" || err != nil || !c.IsCA {
			return false, errors.New("published roots: not a PEM bundle of CA certificates")
		}
		n++
	}
	if n == 0 {
		return false, errors.New("published roots: no certificate")
	}
	only := &Trust{file: t.file}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	only.pool.Store(pool)
	if err := only.verify(served, name, now); err != nil {
		return false, fmt.Errorf("published roots do not include the root of the broker's own chain: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if bytes.Equal(t.last, bundle) {
		return false, nil
	}
	combined, err := Load(t.file)
	if err != nil {
		return false, err
	}
	combined.AppendCertsFromPEM(bundle)
	t.pool.Store(combined)
	t.last = bytes.Clone(bundle)
	path := NextPath(t.file)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, bundle) {
		return true, nil // another agent sharing ca_file wrote it
	}
	return true, atomicfile.Write(path, bundle, 0o644) // agents sharing a ca_file never read half a bundle
}
