package peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"time"
)

// Identity is a broker's peer certificate: self-signed, made at start and kept in memory.
// Brokers trust each other by the certificate's fingerprint published in the directory, not
// by a CA, so a new process simply publishes a new fingerprint and nothing is stored on disk.
type Identity struct {
	node string
	cert tls.Certificate
	fp   string
}

// NewIdentity makes a fresh ECDSA P-256 key and self-signed certificate for node.
func NewIdentity(node string) (*Identity, error) {
	if node == "" {
		return nil, errors.New("peer: identity needs a node name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node, Organization: []string{"maintproxy peer"}},
		NotBefore:    now.Add(-time.Hour),
		// Validity is not what grants trust (the published fingerprint is); long enough that
		// a broker never outlives it.
		NotAfter:              now.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &Identity{node: node, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, fp: Fingerprint(der)}, nil
}

// Node is the node name the identity was made for.
func (id *Identity) Node() string { return id.node }

// Fingerprint is what the broker publishes (BrokerInfo.PeerFingerprint).
func (id *Identity) Fingerprint() string { return id.fp }

// Certificate is the TLS certificate with its key.
func (id *Identity) Certificate() tls.Certificate { return id.cert }

// Fingerprint returns the lower-case hex SHA-256 of a DER certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
