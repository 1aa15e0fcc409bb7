package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/acme/autocert"
)

// caRecord is the stored identity CAs: the current one (its fields stay where a record with
// only a current CA had them) and, during a rollover, the next and the previous one.
// Certificates are in clear, keys sealed and bound to their certificate, so a CA moves from
// slot to slot without being sealed again.
type caRecord struct {
	CertPEM  string  `json:"cert_pem"`
	Key      sealed  `json:"key"`
	Next     *caSlot `json:"next,omitempty"`
	Previous *caSlot `json:"previous,omitempty"`
}

type caSlot struct {
	CertPEM string `json:"cert_pem"`
	Key     sealed `json:"key"`
}

const caPurpose = "identity-ca-key"

// CAPair is one identity CA: certificate and private key, PEM.
type CAPair struct{ CertPEM, KeyPEM []byte }

// CASet is the cluster's identity CAs. Current is nil when the store has none yet.
type CASet struct{ Current, Next, Previous *CAPair }

// LoadCAs returns the cluster's identity CAs and the record's version (0 when there is
// none), for SwapCAs. A broker with a different cluster secret gets ErrBadSecret.
func (c *Client) LoadCAs(ctx context.Context) (CASet, int64, error) {
	if len(c.secret) == 0 {
		return CASet{}, 0, ErrNoSecret
	}
	rctx, cancel := c.reqCtx(ctx)
	resp, err := c.cli.Get(rctx, c.keys.ca())
	cancel()
	if err != nil {
		return CASet{}, 0, fmt.Errorf("cluster: reading the identity CA: %w", storeErr(err))
	}
	if len(resp.Kvs) == 0 {
		return CASet{}, 0, nil
	}
	set, err := c.openCAs(resp.Kvs[0].Value)
	return set, resp.Kvs[0].ModRevision, err
}

// SwapCAs stores set if the record is still at version (0: the store has none). It
// returns false, storing nothing, when another broker changed the record first: brokers
// moving a rollover on at the same moment make one change between them.
func (c *Client) SwapCAs(ctx context.Context, set CASet, version int64) (bool, error) {
	if len(c.secret) == 0 {
		return false, ErrNoSecret
	}
	if set.Current == nil {
		return false, errors.New("cluster: an identity CA set needs a current CA")
	}
	key := c.keys.ca()
	sealSlot := func(p *CAPair) (*caSlot, error) {
		if p == nil {
			return nil, nil
		}
		s, err := seal(c.secret, caPurpose, key+"\x00"+string(p.CertPEM), p.KeyPEM)
		return &caSlot{CertPEM: string(p.CertPEM), Key: s}, err
	}
	cur, err := sealSlot(set.Current)
	if err != nil {
		return false, err
	}
	rec := caRecord{CertPEM: cur.CertPEM, Key: cur.Key}
	if rec.Next, err = sealSlot(set.Next); err != nil {
		return false, err
	}
	if rec.Previous, err = sealSlot(set.Previous); err != nil {
		return false, err
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	cmp := clientv3.Compare(clientv3.ModRevision(key), "=", version)
	if version == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	tr, err := c.cli.Txn(rctx).If(cmp).Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return false, fmt.Errorf("cluster: storing the identity CA: %w", storeErr(err))
	}
	return tr.Succeeded, nil
}

func (c *Client) openCAs(val []byte) (CASet, error) {
	var r caRecord
	if err := json.Unmarshal(val, &r); err != nil || r.CertPEM == "" {
		return CASet{}, fmt.Errorf("cluster: the identity CA record in the store is damaged")
	}
	open := func(s *caSlot) (*CAPair, error) {
		if s == nil {
			return nil, nil
		}
		key, err := s.Key.open(c.secret, caPurpose, c.keys.ca()+"\x00"+s.CertPEM)
		if err != nil {
			return nil, fmt.Errorf("cluster: identity CA key: %w", err)
		}
		return &CAPair{CertPEM: []byte(s.CertPEM), KeyPEM: key}, nil
	}
	var set CASet
	var err error
	if set.Current, err = open(&caSlot{CertPEM: r.CertPEM, Key: r.Key}); err != nil {
		return CASet{}, err
	}
	if set.Next, err = open(r.Next); err != nil {
		return CASet{}, err
	}
	if set.Previous, err = open(r.Previous); err != nil {
		return CASet{}, err
	}
	return set, nil
}

// Cache is a small shared key/value store for secrets such as ACME account keys and
// certificates; it satisfies autocert.Cache, so brokers share one ACME account and order each
// certificate once. Values are sealed with the cluster secret and bound to their name.
type Cache struct {
	c  *Client
	ns string
}

var _ autocert.Cache = (*Cache)(nil)

// MaxCacheValue bounds one cache value (certificates and keys are a few KiB).
const MaxCacheValue = 256 << 10

// Cache returns the cache for namespace ns (e.g. "acme").
func (c *Client) Cache(ns string) *Cache { return &Cache{c: c, ns: ns} }

// Get returns the value stored under name, or autocert.ErrCacheMiss.
func (k *Cache) Get(ctx context.Context, name string) ([]byte, error) {
	if len(k.c.secret) == 0 {
		return nil, ErrNoSecret
	}
	key := k.c.keys.cache(k.ns, name)
	rctx, cancel := k.c.reqCtx(ctx)
	defer cancel()
	resp, err := k.c.cli.Get(rctx, key)
	if err != nil {
		return nil, storeErr(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, autocert.ErrCacheMiss
	}
	var s sealed
	if err := json.Unmarshal(resp.Kvs[0].Value, &s); err != nil {
		return nil, fmt.Errorf("cluster: cache entry %q is damaged", name)
	}
	return s.open(k.c.secret, "cache", key)
}

// Put stores data under name.
func (k *Cache) Put(ctx context.Context, name string, data []byte) error {
	if len(data) > MaxCacheValue {
		return fmt.Errorf("%w: cache entry %q has %d bytes", ErrTooLarge, name, len(data))
	}
	key := k.c.keys.cache(k.ns, name)
	s, err := seal(k.c.secret, "cache", key, data)
	if err != nil {
		return err
	}
	val, err := json.Marshal(s)
	if err != nil {
		return err
	}
	rctx, cancel := k.c.reqCtx(ctx)
	defer cancel()
	_, err = k.c.cli.Put(rctx, key, string(val))
	return storeErr(err)
}

// Delete removes name; a missing name is not an error.
func (k *Cache) Delete(ctx context.Context, name string) error {
	rctx, cancel := k.c.reqCtx(ctx)
	defer cancel()
	_, err := k.c.cli.Delete(rctx, k.c.keys.cache(k.ns, name))
	return storeErr(err)
}
