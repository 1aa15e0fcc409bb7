package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"maintproxy/config"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Store is one broker's membership in the cluster: its lease, the keys it owns, and the
// in-memory views of what every broker publishes. Lookups (Presence().Holders, Locked,
// Directory()) read memory only. Safe for concurrent use.
type Store struct {
	*Client
	opts     Options
	log      *slog.Logger
	instance string
	started  time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	owned    *owned
	dir      *Directory
	presence *Presence
	locks    *locks
	tunnels  *tunnelCounts

	lost chan clientv3.LeaseID // the writer found the lease gone

	mu        sync.Mutex
	lease     clientv3.LeaseID // held and kept alive; 0 while (re)acquiring
	granted   clientv3.LeaseID // the last one granted: Close revokes it
	fresh     bool             // a keepalive answered recently
	watches   []*watch
	self      BrokerInfo
	closed    bool
	readyMu   sync.Mutex // orders OnReady calls
	ready     atomic.Bool
	readyCh   chan struct{} // closed and replaced on every change of ready
	readyChMu sync.Mutex
}

// Open starts this broker's membership: it connects, then in the background grants the
// lease, registers the directory entry and starts the watches. It does not wait for etcd
// (use WaitReady); a broker started while etcd is down serves what it has and reports not
// ready until the store answers.
func Open(opts Options) (*Store, error) {
	opts.applyDefaults()
	if !config.ValidNodeName(opts.Node) {
		return nil, fmt.Errorf("cluster.node: %q must be 1-63 letters, digits, '-', '_' or '.'", opts.Node)
	}
	c, err := Dial(opts)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 8)
	rand.Read(id)
	s := &Store{
		Client:   c,
		opts:     opts,
		log:      opts.Logger.With("node", opts.Node),
		instance: hex.EncodeToString(id),
		started:  time.Now().UTC().Truncate(time.Second),
		lost:     make(chan clientv3.LeaseID, 1),
		readyCh:  make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.self = opts.Self
	s.self.Node, s.self.Instance, s.self.Started = opts.Node, s.instance, s.started
	s.owned = newOwned(c.cli, c.timeout, s.log, s.leaseLost, s.ctx.Done())
	s.dir = newDirectory(s)
	s.presence = newPresence(s)
	s.locks = newLocks(s)
	s.tunnels = newTunnelCounts(s)

	if err := s.putSelf(); err != nil {
		c.Close()
		return nil, err
	}
	s.startWatch(s.dir.watch())
	s.startWatch(s.presence.watch())
	s.startWatch(s.locks.watch())
	s.startWatch(s.tunnels.watch())
	s.goRun(s.owned.run)
	s.goRun(s.runLease)
	return s, nil
}

func (s *Store) goRun(f func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(s.ctx)
	}()
}

// Node is this broker's node name.
func (s *Store) Node() string { return s.opts.Node }

// Ready reports whether the store is usable right now: this broker is registered under a
// lease that was renewed within about two thirds of its TTL, and every watch is in sync.
// While not ready the in-memory views still answer from what was last known, and writes
// wait to be made when the store answers.
func (s *Store) Ready() bool { return s.ready.Load() }

// WaitReady blocks until Ready or ctx ends.
func (s *Store) WaitReady(ctx context.Context) error {
	for {
		s.readyChMu.Lock()
		ch := s.readyCh
		s.readyChMu.Unlock()
		if s.Ready() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("cluster: not ready: %w", ctx.Err())
		}
	}
}

// updateReady recomputes readiness and reports a change through OnReady.
func (s *Store) updateReady() {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	s.mu.Lock()
	r := !s.closed && s.lease != 0 && s.fresh
	for _, w := range s.watches {
		r = r && w.synced.Load()
	}
	s.mu.Unlock()
	if s.ready.Swap(r) == r {
		return
	}
	s.readyChMu.Lock()
	close(s.readyCh)
	s.readyCh = make(chan struct{})
	s.readyChMu.Unlock()
	s.log.Info("cluster store readiness changed", "ready", r)
	if s.opts.OnReady != nil {
		s.opts.OnReady(r)
	}
}

// Close leaves the cluster at once: it revokes the lease, which deletes every key this
// broker owns (its agents are offline for the others now, not after the TTL), then stops
// the watches and closes the connection.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.updateReady()
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	id := s.granted
	s.mu.Unlock()
	var err error
	if id != 0 {
		ctx, cancel := s.reqCtx(context.Background())
		_, err = s.cli.Revoke(ctx, id)
		cancel()
		if err != nil {
			err = fmt.Errorf("cluster: revoking the lease (keys expire after the TTL instead): %w", storeErr(err))
		}
	}
	return errors.Join(err, s.Client.Close())
}

// kill ends the Store the way a crash does: no revoke, the lease runs out on its own.
func (s *Store) kill() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.Client.Close()
	s.wg.Wait()
}

// runLease holds a lease for as long as the Store lives: grant, register, keep alive; when
// the keepalive ends (lease expired, revoked behind our back, or not renewable for a whole
// TTL) start over, so this broker's keys come back as soon as the store lets them.
func (s *Store) runLease(ctx context.Context) {
	var old clientv3.LeaseID
	bo := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	for ctx.Err() == nil {
		id, err := s.acquire(ctx, old)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("cluster lease not granted, retrying", "err", err)
			}
			if !bo.wait(ctx) {
				return
			}
			continue
		}
		bo.reset()
		old = id
		s.keepAlive(ctx, id)
		s.setLease(0)
	}
}

// acquire returns the lease to hold next. The previous one is kept if it still exists: the
// keepalive can end without the lease ending (the store lost quorum, and leases do not
// expire without a leader), and keeping it means the others never see this broker's agents
// go and come back. Otherwise it grants a new lease and registers the directory entry under
// it, refusing a node name a live broker holds. Either way the writer then writes every
// owned key again, including deletions made while the store did not answer.
func (s *Store) acquire(ctx context.Context, old clientv3.LeaseID) (clientv3.LeaseID, error) {
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if old != 0 {
		r, err := s.cli.KeepAliveOnce(rctx, old)
		switch {
		case err == nil && r.TTL > 0:
			s.log.Info("cluster lease still alive; keeping it", "lease", fmt.Sprintf("%x", old))
			return old, nil
		case err != nil && !isLeaseNotFound(err):
			return 0, storeErr(err) // the store does not answer yet: no new lease either
		}
	}
	g, err := s.cli.Grant(rctx, int64((s.opts.LeaseTTL+time.Second-1)/time.Second))
	if err != nil {
		return 0, storeErr(err)
	}
	if err := s.register(rctx, g.ID); err != nil {
		s.cli.Revoke(rctx, g.ID)
		return 0, err
	}
	s.mu.Lock()
	s.granted = g.ID
	s.mu.Unlock()
	s.log.Info("cluster lease granted", "lease", fmt.Sprintf("%x", g.ID), "ttl", g.TTL)
	return g.ID, nil
}

func (s *Store) register(ctx context.Context, id clientv3.LeaseID) error {
	key := s.keys.broker(s.opts.Node)
	s.mu.Lock()
	val, err := json.Marshal(s.self)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	put := clientv3.OpPut(key, string(val), clientv3.WithLease(id))
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(put).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return storeErr(err)
	}
	if resp.Succeeded {
		return nil
	}
	var other BrokerInfo
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		json.Unmarshal(kvs[0].Value, &other)
	}
	if other.Instance != s.instance {
		return fmt.Errorf("%w: %q (started %s, peer %s); waiting for its lease to end", ErrNodeTaken, s.opts.Node, other.Started.Format(time.RFC3339), other.PeerAddr)
	}
	_, err = s.cli.Put(ctx, key, string(val), clientv3.WithLease(id))
	return storeErr(err)
}

// keepAlive renews lease id until it is lost or ctx ends. A renewal that does not answer
// for most of a TTL makes the Store not ready before the lease can expire.
func (s *Store) keepAlive(ctx context.Context, id clientv3.LeaseID) {
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.cli.KeepAlive(kctx, id)
	if err != nil {
		return
	}
	s.setLease(id)
	staleAfter := s.opts.LeaseTTL*2/3 + 500*time.Millisecond
	stale := time.NewTimer(staleAfter)
	defer stale.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				if ctx.Err() == nil {
					s.log.Warn("cluster lease lost; registering again", "lease", fmt.Sprintf("%x", id))
				}
				return
			}
			stale.Reset(staleAfter)
			s.setFresh(true)
		case <-stale.C:
			s.log.Warn("cluster lease not renewed recently; not ready", "lease", fmt.Sprintf("%x", id))
			s.setFresh(false)
		case l := <-s.lost:
			if l == id {
				s.log.Warn("cluster lease gone (found by a write); registering again", "lease", fmt.Sprintf("%x", id))
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// leaseLost is called by the writer when etcd says the lease does not exist.
func (s *Store) leaseLost(id clientv3.LeaseID) {
	select {
	case s.lost <- id:
	default:
	}
}

func (s *Store) setLease(id clientv3.LeaseID) {
	s.mu.Lock()
	s.lease = id
	s.fresh = id != 0
	s.mu.Unlock()
	s.owned.setLease(id)
	s.updateReady()
}

func (s *Store) setFresh(f bool) {
	s.mu.Lock()
	changed := s.fresh != f
	s.fresh = f
	s.mu.Unlock()
	if changed {
		s.updateReady()
	}
}

// backoff is a capped, jittered exponential wait.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

// wait sleeps for the next interval; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	b.cur = min(max(b.cur*2, b.min), b.max)
	d := b.cur/2 + jitter(b.cur/2)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return mrand.N(d)
}
