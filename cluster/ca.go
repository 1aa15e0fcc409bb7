package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/acme/autocert"
)

// caRecord is the stored identity CA: the certificate in clear, the key sealed.
type caRecord struct {
	CertPEM string `json:"cert_pem"`
	Key     sealed `json:"key"`
}

const caPurpose = "identity-ca-key"

// EnsureCA returns the cluster's identity CA, creating it with create if the store has none.
// When several brokers start at once each may call create, but one transaction (the key must
// not exist yet) decides, and every broker returns that winner's CA. The key is stored sealed
// with the cluster secret (see the comment on sealed values in this package): reading etcd
// does not reveal it, and a broker with a different secret gets ErrBadSecret.
func (c *Client) EnsureCA(ctx context.Context, create func() (certPEM, keyPEM []byte, err error)) (certPEM, keyPEM []byte, err error) {
	if len(c.secret) == 0 {
		return nil, nil, ErrNoSecret
	}
	key := c.keys.ca()
	rctx, cancel := c.reqCtx(ctx)
	resp, err := c.cli.Get(rctx, key)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: reading the identity CA: %w", storeErr(err))
	}
	if len(resp.Kvs) == 1 {
		return c.openCA(resp.Kvs[0].Value)
	}
	certPEM, keyPEM, err = create()
	if err != nil {
		return nil, nil, err
	}
	s, err := seal(c.secret, caPurpose, key+"\x00"+string(certPEM), keyPEM)
	if err != nil {
		return nil, nil, err
	}
	val, err := json.Marshal(caRecord{CertPEM: string(certPEM), Key: s})
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel = c.reqCtx(ctx)
	defer cancel()
	tr, err := c.cli.Txn(rctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: storing the identity CA: %w", storeErr(err))
	}
	if tr.Succeeded {
		return certPEM, keyPEM, nil
	}
	kvs := tr.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 {
		return nil, nil, fmt.Errorf("cluster: identity CA vanished while being created; try again")
	}
	return c.openCA(kvs[0].Value)
}

func (c *Client) openCA(val []byte) (certPEM, keyPEM []byte, err error) {
	var r caRecord
	if err := json.Unmarshal(val, &r); err != nil || r.CertPEM == "" {
		return nil, nil, fmt.Errorf("cluster: the identity CA record in the store is damaged")
	}
	keyPEM, err = r.Key.open(c.secret, caPurpose, c.keys.ca()+"\x00"+r.CertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: identity CA key: %w", err)
	}
	return []byte(r.CertPEM), keyPEM, nil
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
