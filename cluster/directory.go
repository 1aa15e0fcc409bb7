package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"
)

// BrokerInfo is what a broker publishes about itself under its lease.
type BrokerInfo struct {
	Node string `json:"node"`
	// PeerAddr is the HOST:PORT other brokers dial for the peer link (cluster.peer.advertise).
	PeerAddr string `json:"peer_addr"`
	// PeerFingerprint is the SHA-256 of the broker's peer certificate (peer.Fingerprint); the
	// peer link trusts exactly the fingerprints in the directory.
	PeerFingerprint string `json:"peer_fingerprint"`
	WebAddr         string `json:"web_addr,omitempty"`
	ProxyAddr       string `json:"proxy_addr,omitempty"`
	// ConfigStore is set when the broker takes accounts, customers and limits from the store
	// (cluster.config: store); ConfigRevision is then the revision it runs (0: none yet).
	ConfigStore    bool  `json:"config_store,omitempty"`
	ConfigRevision int64 `json:"config_revision"`
	// Draining is set while the broker hands its agents to others before it exits.
	Draining bool      `json:"draining,omitempty"`
	Started  time.Time `json:"started"`
	// Instance is random per process: it tells a restarted broker from a second broker
	// configured with the same node name.
	Instance string `json:"instance"`
}

// Directory is the in-memory copy of every live broker's BrokerInfo.
type Directory struct {
	s      *Store
	mu     sync.RWMutex
	byNode map[string]BrokerInfo
	byFP   map[string]string // peer fingerprint → node
	// lookups bounds the store reads for fingerprints not (yet) in memory.
	lookups *rate.Limiter
}

func newDirectory(s *Store) *Directory {
	return &Directory{s: s, byNode: map[string]BrokerInfo{}, byFP: map[string]string{},
		lookups: rate.NewLimiter(4, 2)}
}

// Directory returns the broker directory.
func (s *Store) Directory() *Directory { return s.dir }

// Brokers lists the live brokers (this one included once registered), sorted by node.
func (d *Directory) Brokers() []BrokerInfo {
	d.mu.RLock()
	out := make([]BrokerInfo, 0, len(d.byNode))
	for _, b := range d.byNode {
		out = append(out, b)
	}
	d.mu.RUnlock()
	slices.SortFunc(out, func(a, b BrokerInfo) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// Lookup returns the named broker's entry.
func (d *Directory) Lookup(node string) (BrokerInfo, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	b, ok := d.byNode[node]
	return b, ok
}

// Trusted returns the node whose published peer fingerprint is fp; the peer server's trust
// check (peer.Server.Trust). A fingerprint the watch has not brought yet (a broker that
// registered a moment ago and dials at once) is looked up in the store itself, a few times
// a second at most, so a stranger cannot turn handshakes into store reads.
func (d *Directory) Trusted(fp string) (node string, ok bool) {
	d.mu.RLock()
	node, ok = d.byFP[fp]
	d.mu.RUnlock()
	if ok || fp == "" || !d.lookups.Allow() {
		return node, ok
	}
	ctx, cancel := context.WithTimeout(d.s.ctx, d.s.timeout)
	defer cancel()
	resp, err := d.s.cli.Get(clientv3.WithRequireLeader(ctx), d.s.keys.brokers(), clientv3.WithPrefix())
	if err != nil {
		return "", false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, kv := range resp.Kvs {
		// Added only: the watch, behind this read, brings any later change or delete.
		if b, ok := d.decode(kv); ok && b.PeerFingerprint == fp {
			d.byNode[b.Node] = b
			d.reindex()
			return b.Node, true
		}
	}
	return "", false
}

// Resolve returns where to dial node and the fingerprint its certificate must have; the
// peer dialer's address book (peer.Dialer.Resolve).
func (d *Directory) Resolve(node string) (addr, fp string, ok bool) {
	b, ok := d.Lookup(node)
	if !ok || b.PeerAddr == "" || b.PeerFingerprint == "" {
		return "", "", false
	}
	return b.PeerAddr, b.PeerFingerprint, true
}

func (d *Directory) watch() *watch {
	return &watch{name: "brokers", key: d.s.keys.brokers(), prefix: true,
		reset: func(kvs []*mvccpb.KeyValue, _ int64) {
			byNode := map[string]BrokerInfo{}
			for _, kv := range kvs {
				if b, ok := d.decode(kv); ok {
					byNode[b.Node] = b
				}
			}
			d.mu.Lock()
			d.byNode = byNode
			d.reindex()
			d.mu.Unlock()
		},
		event: func(ev *clientv3.Event) {
			d.mu.Lock()
			defer d.mu.Unlock()
			if ev.Type == clientv3.EventTypeDelete {
				if p, ok := split(string(ev.Kv.Key), d.s.keys.brokers(), 1); ok {
					delete(d.byNode, p[0])
				}
			} else if b, ok := d.decode(ev.Kv); ok {
				d.byNode[b.Node] = b
			}
			d.reindex()
		},
	}
}

func (d *Directory) decode(kv *mvccpb.KeyValue) (BrokerInfo, bool) {
	p, ok := split(string(kv.Key), d.s.keys.brokers(), 1)
	var b BrokerInfo
	if !ok || json.Unmarshal(kv.Value, &b) != nil || b.Node != p[0] {
		return BrokerInfo{}, false
	}
	return b, true
}

// reindex rebuilds byFP; d.mu must be held.
func (d *Directory) reindex() {
	d.byFP = make(map[string]string, len(d.byNode))
	for n, b := range d.byNode {
		if b.PeerFingerprint != "" {
			d.byFP[b.PeerFingerprint] = n
		}
	}
}

// UpdateSelf changes this broker's directory entry (e.g. ConfigRevision after applying a
// pushed config, Draining on SIGTERM) and waits until etcd has it or ctx ends; the change
// is kept and written when the store answers either way. Node, Instance and Started stay.
func (s *Store) UpdateSelf(ctx context.Context, change func(*BrokerInfo)) error {
	s.mu.Lock()
	b := s.self
	change(&b)
	b.Node, b.Instance, b.Started = s.self.Node, s.self.Instance, s.self.Started
	s.self = b
	s.mu.Unlock()
	val, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return s.owned.wait(ctx, s.owned.set(s.keys.broker(s.opts.Node), string(val), false))
}

// Self returns this broker's current directory entry.
func (s *Store) Self() BrokerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.self
}

// putSelf queues the first directory entry.
func (s *Store) putSelf() error {
	val, err := json.Marshal(s.self)
	if err != nil {
		return err
	}
	if len(val) > maxOwnedValue {
		return fmt.Errorf("%w: directory entry of %d bytes", ErrTooLarge, len(val))
	}
	s.owned.set(s.keys.broker(s.opts.Node), string(val), false)
	return nil
}
