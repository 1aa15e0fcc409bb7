package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// lockValue is a stored account lockout.
type lockValue struct {
	Until time.Time `json:"until"`
	Node  string    `json:"node"`
}

// locks mirrors the cluster's account lockouts. Each lock key hangs on a lease of its own
// as long as the lock (plus a second), so etcd removes it after it has expired, whichever
// broker set it and whether or not that broker still runs; readers also ignore an entry
// whose time has passed, so a lock ends on time even before etcd removes it. Clocks of the
// brokers are assumed in step (NTP); skew shifts a lock's end by the same amount.
type locks struct {
	s     *Store
	mu    sync.RWMutex
	until map[string]time.Time // as the store has them
	// pending are locks this broker published that the store has not confirmed yet; they
	// hold here even while etcd is unreachable and survive a re-read of the store.
	pending map[string]time.Time
}

func newLocks(s *Store) *locks {
	return &locks{s: s, until: map[string]time.Time{}, pending: map[string]time.Time{}}
}

// get returns the later of the stored and the pending lock; l.mu must be held.
func (l *locks) get(account string) (time.Time, bool) {
	u, ok := l.until[account]
	if p, pok := l.pending[account]; pok && (!ok || p.After(u)) {
		return p, true
	}
	return u, ok
}

// PublishLock locks account until the given time on every broker. It takes effect on this
// broker at once (whatever the store says) and on the others when their watch delivers it,
// normally within milliseconds. A shorter lock than one already known changes nothing.
func (s *Store) PublishLock(ctx context.Context, account string, until time.Time) error {
	if account == "" {
		return errors.New("cluster: lock needs an account")
	}
	until = until.UTC()
	left := time.Until(until)
	if left <= 0 {
		return nil
	}
	s.locks.mu.Lock()
	if cur, ok := s.locks.get(account); ok && !cur.Before(until) {
		s.locks.mu.Unlock()
		return nil
	}
	s.locks.pending[account] = until
	s.locks.mu.Unlock()

	err := s.writeLock(ctx, account, until, left)
	if err == nil {
		s.locks.mu.Lock()
		if s.locks.pending[account].Equal(until) {
			delete(s.locks.pending, account)
			if cur, ok := s.locks.until[account]; !ok || until.After(cur) {
				s.locks.until[account] = until
			}
		}
		s.locks.mu.Unlock()
	}
	return err
}

func (s *Store) writeLock(ctx context.Context, account string, until time.Time, left time.Duration) error {
	val, err := json.Marshal(lockValue{Until: until, Node: s.opts.Node})
	if err != nil {
		return err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	ttl := int64(left/time.Second) + 2 // whole seconds, rounded up, plus slack
	g, err := s.cli.Grant(rctx, ttl)
	if err != nil {
		return fmt.Errorf("lock holds on this broker only until the store answers: %w", storeErr(err))
	}
	if _, err = s.cli.Put(rctx, s.keys.lock(account), string(val), clientv3.WithLease(g.ID)); err != nil {
		return fmt.Errorf("lock holds on this broker only until the store answers: %w", storeErr(err))
	}
	return nil
}

// ClearLock ends account's lock on every broker (an administrator's unlock).
func (s *Store) ClearLock(ctx context.Context, account string) error {
	s.locks.mu.Lock()
	delete(s.locks.until, account)
	delete(s.locks.pending, account)
	s.locks.mu.Unlock()
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	_, err := s.cli.Delete(rctx, s.keys.lock(account))
	return storeErr(err)
}

// Locked reports whether account is locked, and until when. It reads memory only.
func (s *Store) Locked(account string) (until time.Time, ok bool) {
	s.locks.mu.RLock()
	until, ok = s.locks.get(account)
	s.locks.mu.RUnlock()
	if !ok || !time.Now().Before(until) {
		return time.Time{}, false
	}
	return until, true
}

func (l *locks) watch() *watch {
	prefix := l.s.keys.locks()
	decode := func(kv *mvccpb.KeyValue) (string, time.Time, bool) {
		p, ok := split(string(kv.Key), prefix, 1)
		if !ok {
			return "", time.Time{}, false
		}
		var v lockValue
		if len(kv.Value) > 0 && json.Unmarshal(kv.Value, &v) != nil {
			return "", time.Time{}, false
		}
		return p[0], v.Until, true
	}
	return &watch{name: "locks", key: prefix, prefix: true,
		reset: func(kvs []*mvccpb.KeyValue, _ int64) {
			m := map[string]time.Time{}
			for _, kv := range kvs {
				if a, u, ok := decode(kv); ok {
					m[a] = u
				}
			}
			l.mu.Lock()
			l.until = m
			l.mu.Unlock()
		},
		event: func(ev *clientv3.Event) {
			a, u, ok := decode(ev.Kv)
			if !ok {
				return
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if ev.Type == clientv3.EventTypeDelete {
				delete(l.until, a)
			} else if cur, ok := l.until[a]; !ok || u.After(cur) {
				l.until[a] = u
			}
		},
	}
}

// tunnelCounts shares each broker's number of open tunnels per account, so a per-account
// limit holds across brokers. A broker publishes its own counts under its lease (a dead
// broker's counts vanish with it) and reads the others' from memory. Writes are coalesced:
// the overshoot of a limit is at most what other brokers admit during one write's round
// trip (about a millisecond on a LAN) plus the watch's delivery delay.
type tunnelCounts struct {
	s  *Store
	mu sync.RWMutex
	// byAccount maps account → node → open tunnels.
	byAccount map[string]map[string]int
}

func newTunnelCounts(s *Store) *tunnelCounts {
	return &tunnelCounts{s: s, byAccount: map[string]map[string]int{}}
}

// SetAccountTunnels publishes how many tunnels this broker has open for account. It does not
// wait; rapid changes collapse into one write.
func (s *Store) SetAccountTunnels(account string, n int) {
	key := s.keys.tunnel(account, s.opts.Node)
	if n <= 0 {
		s.owned.set(key, "", true)
		return
	}
	s.owned.set(key, strconv.Itoa(n), false)
}

// RemoteAccountTunnels returns the tunnels other brokers have open for account, from memory.
func (s *Store) RemoteAccountTunnels(account string) int {
	s.tunnels.mu.RLock()
	defer s.tunnels.mu.RUnlock()
	n := 0
	for node, c := range s.tunnels.byAccount[account] {
		if node != s.opts.Node {
			n += c
		}
	}
	return n
}

func (t *tunnelCounts) watch() *watch {
	prefix := t.s.keys.tunnels()
	apply := func(m map[string]map[string]int, kv *mvccpb.KeyValue, del bool) {
		p, ok := split(string(kv.Key), prefix, 2)
		if !ok {
			return
		}
		n, err := strconv.Atoi(string(kv.Value))
		if del || err != nil || n <= 0 {
			delete(m[p[0]], p[1])
			if len(m[p[0]]) == 0 {
				delete(m, p[0])
			}
			return
		}
		if m[p[0]] == nil {
			m[p[0]] = map[string]int{}
		}
		m[p[0]][p[1]] = n
	}
	return &watch{name: "tunnels", key: prefix, prefix: true,
		reset: func(kvs []*mvccpb.KeyValue, _ int64) {
			m := map[string]map[string]int{}
			for _, kv := range kvs {
				apply(m, kv, false)
			}
			t.mu.Lock()
			t.byAccount = m
			t.mu.Unlock()
		},
		event: func(ev *clientv3.Event) {
			t.mu.Lock()
			apply(t.byAccount, ev.Kv, ev.Type == clientv3.EventTypeDelete)
			t.mu.Unlock()
		},
	}
}
