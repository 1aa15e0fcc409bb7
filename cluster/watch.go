package cluster

import (
	"context"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watch mirrors a key or prefix into memory: a full read (reset), then every change from
// the next revision on (event). After any watch failure (compaction, lost leader, closed
// stream) it reads everything again, so the copy never silently misses an event.
type watch struct {
	name   string
	key    string
	prefix bool
	reset  func(kvs []*mvccpb.KeyValue, rev int64)
	event  func(ev *clientv3.Event)
	synced atomic.Bool
}

// startWatch runs w until the Store closes; its sync state counts towards Ready.
func (s *Store) startWatch(w *watch) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.watches = append(s.watches, w)
	s.wg.Add(1) // under mu, so never concurrent with Close's Wait
	s.mu.Unlock()
	s.updateReady() // not ready until this one is in sync too
	go func() {
		defer s.wg.Done()
		s.runWatch(s.ctx, w)
	}()
}

func (s *Store) runWatch(ctx context.Context, w *watch) {
	bo := backoff{min: 50 * time.Millisecond, max: 2 * time.Second}
	var opts []clientv3.OpOption
	if w.prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Get(clientv3.WithRequireLeader(rctx), w.key, opts...)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Debug("cluster watch read failed", "watch", w.name, "err", err)
			}
			bo.wait(ctx)
			continue
		}
		w.reset(resp.Kvs, resp.Header.Revision)
		s.follow(ctx, w, resp.Header.Revision, opts)
		if w.synced.Swap(false) {
			s.updateReady()
		}
		bo.wait(ctx)
	}
}

// follow applies events after rev until the watch fails or ctx ends. RequireLeader ends the
// watch when the member loses its leader, so a partitioned broker notices (not ready)
// instead of waiting on a silent stream.
func (s *Store) follow(ctx context.Context, w *watch, rev int64, opts []clientv3.OpOption) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts = append(opts, clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	ch := s.cli.Watch(clientv3.WithRequireLeader(wctx), w.key, opts...)
	if !w.synced.Swap(true) {
		s.updateReady()
	}
	for resp := range ch {
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				s.log.Info("cluster watch ended; reading again", "watch", w.name, "err", err)
			}
			return
		}
		for _, ev := range resp.Events {
			w.event(ev)
		}
	}
}
