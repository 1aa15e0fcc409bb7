package cluster

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
)

// MinSecretLength is the least number of bytes the cluster secret must have.
const MinSecretLength = 32

// Why the CA key (and the ACME cache) are sealed rather than stored as they are: etcd keeps
// every value in each member's WAL and snapshots, in `etcdctl snapshot` backups, and hands it
// to any client allowed to read the prefix (often any client, when etcd runs without auth).
// The identity CA key lets its holder impersonate the broker to every agent and technician
// that trusts the CA, so reading etcd alone must not reveal it. Each value is sealed with
// AES-256-GCM under a key derived (HKDF-SHA256, fresh random salt per value, so no key/nonce
// pair repeats) from the cluster secret, a file only brokers have. The associated data binds
// the ciphertext to its etcd key, so a value cannot be moved to another key. What it does not
// protect against: someone with both the secret file and etcd access (a broker host), and a
// writer to etcd replacing the whole record (use etcd auth and client TLS for that).

// sealAlg names the construction, so a later change can be told apart from this one.
const sealAlg = "hkdf-sha256/aes-256-gcm/v1"

// sealed is the stored form of a secret value.
type sealed struct {
	Alg   string `json:"alg"`
	Salt  []byte `json:"salt"`
	Nonce []byte `json:"nonce"`
	Data  []byte `json:"data"` // ciphertext and tag
}

func aead(secret, salt []byte, purpose string) (cipher.AEAD, error) {
	if len(secret) < MinSecretLength {
		return nil, ErrNoSecret
	}
	key, err := hkdf.Key(sha256.New, secret, salt, "maintproxy cluster "+purpose, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plain for the etcd key ad (the associated data).
func seal(secret []byte, purpose, ad string, plain []byte) (sealed, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	g, err := aead(secret, salt, purpose)
	if err != nil {
		return sealed{}, err
	}
	nonce := make([]byte, g.NonceSize())
	rand.Read(nonce)
	return sealed{Alg: sealAlg, Salt: salt, Nonce: nonce, Data: g.Seal(nil, nonce, plain, []byte(ad))}, nil
}

// open reverses seal; a wrong secret or a moved value gives ErrBadSecret.
func (s sealed) open(secret []byte, purpose, ad string) ([]byte, error) {
	if s.Alg != sealAlg {
		return nil, fmt.Errorf("cluster: sealed value uses %q, this broker knows %q", s.Alg, sealAlg)
	}
	g, err := aead(secret, s.Salt, purpose)
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != g.NonceSize() {
		return nil, ErrBadSecret
	}
	plain, err := g.Open(nil, s.Nonce, s.Data, []byte(ad))
	if err != nil {
		return nil, ErrBadSecret
	}
	return plain, nil
}

// LoadSecret reads the cluster secret file (cluster.secret_file). Surrounding white space is
// not part of the secret, so a base64 or hex line works; it must keep MinSecretLength bytes.
// Make one with: head -c 48 /dev/urandom | base64 > cluster.secret
func LoadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster.secret_file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < MinSecretLength {
		return nil, fmt.Errorf("cluster.secret_file: %s holds %d bytes, at least %d are required (e.g. head -c 48 /dev/urandom | base64)", path, len(b), MinSecretLength)
	}
	return b, nil
}
