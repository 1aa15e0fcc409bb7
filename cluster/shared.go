package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxConfigBytes bounds a pushed config: one etcd request carries at most 1.5 MiB by
// default, and the whole config is one key so that a push is atomic.
const MaxConfigBytes = 1 << 20

// PushConfig stores yaml (accounts, customers and limits, already validated by the caller)
// as the cluster's shared config and returns its revision. It refuses at once, with
// ErrNoQuorum, when the store has no leader or cannot be reached: nothing is written then.
func (c *Client) PushConfig(ctx context.Context, yaml []byte) (rev int64, err error) {
	if len(yaml) == 0 {
		return 0, fmt.Errorf("cluster: refusing to push an empty config")
	}
	if len(yaml) > MaxConfigBytes {
		return 0, fmt.Errorf("%w: the config has %d bytes, at most %d fit in one store request", ErrTooLarge, len(yaml), MaxConfigBytes)
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Put(rctx, c.keys.config(), string(yaml))
	if err != nil {
		return 0, fmt.Errorf("config not pushed: %w", storeErr(err))
	}
	return resp.Header.Revision, nil
}

// Config reads the shared config now; rev 0 means none was pushed.
func (c *Client) Config(ctx context.Context) (yaml []byte, rev int64, err error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.keys.config())
	if err != nil {
		return nil, 0, storeErr(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// WatchConfig calls apply with the shared config as it is now (if one was pushed) and with
// every config pushed later, each with its revision, one call at a time and never twice for
// the same revision. apply validates and applies it (an invalid one it keeps out, logging
// why); it should then record the revision with UpdateSelf so `cluster status` can tell a
// stale broker. The watch runs until the Store closes and counts towards Ready.
func (s *Store) WatchConfig(apply func(yaml []byte, rev int64)) {
	var mu sync.Mutex
	var last int64
	deliver := func(kv *mvccpb.KeyValue) {
		mu.Lock()
		defer mu.Unlock()
		if kv.ModRevision <= last {
			return
		}
		last = kv.ModRevision
		apply(kv.Value, kv.ModRevision)
	}
	s.startWatch(&watch{name: "config", key: s.keys.config(),
		reset: func(kvs []*mvccpb.KeyValue, _ int64) {
			if len(kvs) == 1 {
				deliver(kvs[0])
			}
		},
		event: func(ev *clientv3.Event) {
			if ev.Type == clientv3.EventTypePut {
				deliver(ev.Kv)
			}
		},
	})
}

// BrokerStatus is one broker as `cluster status` shows it.
type BrokerStatus struct {
	BrokerInfo
	// Agents is the number of agent sessions the broker holds.
	Agents int
	// LeaseTTL is the time left on the broker's lease (the keepalive renews it every third).
	LeaseTTL time.Duration
	// Stale is set when the broker takes its config from the store but runs another
	// revision than the store holds.
	Stale bool
}

// Status is the cluster as the store sees it.
type Status struct {
	// ConfigRevision is the revision of the shared config (0: none pushed).
	ConfigRevision int64
	Brokers        []BrokerStatus
}

// Status reads the directory, the presence counts and each broker's lease from the store
// (linearizable: it fails with ErrNoQuorum rather than show an old picture).
func (c *Client) Status(ctx context.Context) (Status, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).Then(
		clientv3.OpGet(c.keys.config(), clientv3.WithKeysOnly()),
		clientv3.OpGet(c.keys.brokers(), clientv3.WithPrefix()),
		clientv3.OpGet(c.keys.presence(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return Status{}, storeErr(err)
	}
	var st Status
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		st.ConfigRevision = kvs[0].ModRevision
	}
	agents := map[string]int{}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		if parts, ok := split(string(kv.Key), c.keys.presence(), 4); ok {
			agents[parts[2]]++
		}
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var b BrokerInfo
		if json.Unmarshal(kv.Value, &b) != nil {
			continue
		}
		bs := BrokerStatus{BrokerInfo: b, Agents: agents[b.Node]}
		if kv.Lease != 0 {
			if ttl, err := c.cli.TimeToLive(rctx, clientv3.LeaseID(kv.Lease)); err == nil && ttl.TTL > 0 {
				bs.LeaseTTL = time.Duration(ttl.TTL) * time.Second
			}
		}
		bs.Stale = b.ConfigStore && b.ConfigRevision != st.ConfigRevision
		st.Brokers = append(st.Brokers, bs)
	}
	return st, nil
}
