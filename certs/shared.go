package certs

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"maintproxy/config"
)

// CAPair is one identity CA: certificate and private key, PEM.
type CAPair struct{ CertPEM, KeyPEM []byte }

// CASet is the identity CAs as a CAStore keeps them. Current is nil when there is none yet.
type CASet struct{ Current, Next, Previous *CAPair }

// CAStore keeps the identity CAs outside data_dir as one versioned record, so that every
// broker of a cluster serves leaves from the same CA and moves the same rollover on.
type CAStore interface {
	// LoadCAs returns the record and its version (0 and an empty set when there is none).
	LoadCAs() (CASet, int64, error)
	// SwapCAs stores set if the record is still at version (0: there is none). It returns
	// false, storing nothing, when another writer changed the record first.
	SwapCAs(set CASet, version int64) (bool, error)
}

// storeFor is the caStore over shared, or data_dir when shared is nil.
func storeFor(cfg *config.Broker, shared CAStore) caStore {
	if shared != nil {
		return &sharedStore{s: shared}
	}
	return dirStore{cfg.DataDir}
}

// sharedStore is the caStore over a CAStore. Every change is one compare-and-swap on the
// record as read just before, applied only if the record still shows the state the change
// was decided on: when brokers move the rollover on at once, one makes the change and the
// others read its result.
type sharedStore struct {
	s CAStore

	mu   sync.Mutex
	last [32]byte // sum of the record last read, kept when the store cannot be read
}

func (p *sharedStore) where() string { return "the cluster store" }

func versionSum(ver int64) [32]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(ver))
	return sha256.Sum256(b[:])
}

func (p *sharedStore) read() (CASet, int64, error) {
	rec, ver, err := p.s.LoadCAs()
	if err == nil {
		p.mu.Lock()
		p.last = versionSum(ver)
		p.mu.Unlock()
	}
	return rec, ver, err
}

func (p *sharedStore) sum() [32]byte {
	_, _, _ = p.read() // an unreadable store keeps the last sum: nothing to reload
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *sharedStore) load() (*caSet, error) {
	rec, ver, err := p.read()
	if err != nil {
		return nil, err
	}
	if rec.Current == nil {
		return nil, errNoCA
	}
	set := &caSet{sum: versionSum(ver)}
	if set.cur, err = sharedPair(rec.Current, "current"); err != nil {
		return nil, err
	}
	if rec.Next != nil {
		if set.next, err = sharedPair(rec.Next, "next"); err != nil {
			return nil, err
		}
	}
	if rec.Previous != nil {
		if set.prev, err = sharedPair(rec.Previous, "previous"); err != nil {
			return nil, err
		}
	}
	return set, nil
}

func sharedPair(p *CAPair, which string) (*identityCA, error) {
	pair, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity CA (%s, cluster store): %w", which, err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !pair.Leaf.IsCA || !ok {
		return nil, fmt.Errorf("identity CA (%s, cluster store): not a CA certificate with a signing key", which)
	}
	return &identityCA{cert: pair.Leaf, key: signer, pem: p.CertPEM}, nil
}

// update applies f to the record as stored now and swaps the result in when f reports a
// change. A lost race is no error: the winner made the change the state called for.
func (p *sharedStore) update(f func(rec *CASet) (bool, error)) error {
	rec, ver, err := p.read()
	if err != nil {
		return err
	}
	if changed, err := f(&rec); err != nil || !changed {
		return err
	}
	_, err = p.s.SwapCAs(rec, ver)
	return err
}

func newPair(domain string, now time.Time) (*CAPair, error) {
	certPEM, keyPEM, _, err := makeCA(domain, now)
	if err != nil {
		return nil, err
	}
	return &CAPair{CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

func samePEM(p *CAPair, ca *identityCA) bool {
	return p != nil && ca != nil && bytes.Equal(p.CertPEM, ca.pem)
}

func (p *sharedStore) create(domain string, now time.Time) error {
	return p.update(func(rec *CASet) (bool, error) {
		if rec.Current != nil {
			return false, nil
		}
		var err error
		rec.Current, err = newPair(domain, now)
		return err == nil, err
	})
}

// addNext makes a next CA unless the store has one already (another broker made it).
func (p *sharedStore) addNext(domain string, now time.Time) error {
	return p.update(func(rec *CASet) (bool, error) {
		if rec.Current == nil || rec.Next != nil {
			return false, nil
		}
		var err error
		rec.Next, err = newPair(domain, now)
		return err == nil, err
	})
}

func (p *sharedStore) promote(set *caSet) error {
	if set.next == nil {
		return errors.New("identity CA: no next CA to switch to")
	}
	return p.update(func(rec *CASet) (bool, error) {
		if !samePEM(rec.Current, set.cur) || !samePEM(rec.Next, set.next) {
			return false, nil
		}
		rec.Previous, rec.Current, rec.Next = rec.Current, rec.Next, nil
		return true, nil
	})
}

// retire drops the CA from its slot. The store keeps no dated copy: etcd's own history and
// backups hold the old record.
func (p *sharedStore) retire(s slot, ca *identityCA, _ string) error {
	return p.update(func(rec *CASet) (bool, error) {
		at := &rec.Next
		if s == slotPrevious {
			at = &rec.Previous
		}
		if s == slotCurrent || !samePEM(*at, ca) {
			return false, nil
		}
		*at = nil
		return true, nil
	})
}

// finishSwitch has nothing to finish: a switch is one write of the whole record.
func (p *sharedStore) finishSwitch() error { return nil }
