package certs

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errProvidedRollover: the identity CA that Options.CA provides (the cluster's, in etcd) is
// not rolled over by a broker on its own.
var errProvidedRollover = errors.New("the shared identity CA (cluster store) is not rolled over automatically; replace it in the store")

// providedStore is the caStore of a Manager given Options.CA: the current CA only, read
// once from the provider, which creates it when it has none (cluster mode: the first
// broker creates it, every other one gets the same).
type providedStore struct {
	m   *Manager
	mu  sync.Mutex
	set *caSet
}

func (p *providedStore) load() (*caSet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set != nil {
		return p.set, nil
	}
	now := p.m.now()
	certPEM, keyPEM, err := p.m.caFrom(func() ([]byte, []byte, error) {
		c, k, _, err := makeCA(p.m.cfg.Domain, now)
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
	p.set = &caSet{cur: &identityCA{cert: pair.Leaf, key: pair.PrivateKey.(crypto.Signer), pem: certPEM}, sum: sha256.Sum256(certPEM)}
	return p.set, nil
}

func (p *providedStore) sum() [32]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set == nil {
		return [32]byte{}
	}
	return p.set.sum
}

func (p *providedStore) create(string, time.Time) error { _, err := p.load(); return err }

func (p *providedStore) addNext(string, time.Time) error { return errProvidedRollover }

func (p *providedStore) promote(*caSet) error { return errProvidedRollover }

func (p *providedStore) retire(slot, *identityCA, string) error { return errProvidedRollover }

func (p *providedStore) finishSwitch() error { return nil }

func (p *providedStore) where() string { return "the cluster store" }
