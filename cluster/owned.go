package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcd refuses a transaction of more than 128 operations and a request over 1.5 MiB (its
// defaults); stay below both with room for the request's framing.
const (
	maxTxnOps   = 128
	maxTxnBytes = 1 << 20
	// maxOwnedValue bounds one owned value (presence with its switches, directory entry).
	maxOwnedValue = 64 << 10
)

// owned reconciles the keys this broker owns with etcd. Callers state what a key should be
// (set) and may wait for it; one goroutine writes the difference in transactions, retries
// after errors, and writes everything again under each new lease. Several changes to one key
// while a write is in flight collapse into one write.
type owned struct {
	cli       *clientv3.Client
	timeout   time.Duration
	log       *slog.Logger
	leaseLost func(clientv3.LeaseID)

	mu      sync.Mutex
	lease   clientv3.LeaseID
	desired map[string]string          // key → value of every key that should exist
	dirty   map[string][]chan struct{} // keys to write → callers waiting for that write
	lastErr error
	kick    chan struct{}
	closed  <-chan struct{} // the Store's end: waiters stop waiting
}

func newOwned(cli *clientv3.Client, timeout time.Duration, log *slog.Logger, leaseLost func(clientv3.LeaseID), closed <-chan struct{}) *owned {
	return &owned{cli: cli, timeout: timeout, log: log, leaseLost: leaseLost, closed: closed,
		desired: map[string]string{}, dirty: map[string][]chan struct{}{}, kick: make(chan struct{}, 1)}
}

// set makes key hold val (del false) or not exist (del true). The returned channel is
// closed once etcd holds that state (or a later one for the same key).
func (o *owned) set(key, val string, del bool) <-chan struct{} {
	done := make(chan struct{})
	o.mu.Lock()
	if del {
		delete(o.desired, key)
	} else {
		o.desired[key] = val
	}
	o.dirty[key] = append(o.dirty[key], done)
	o.mu.Unlock()
	o.poke()
	return done
}

// wait waits for done; on ctx's end it says the write is still pending (it is not dropped).
func (o *owned) wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-o.closed:
		return ErrClosed
	case <-ctx.Done():
		o.mu.Lock()
		last := o.lastErr
		o.mu.Unlock()
		if last != nil {
			return fmt.Errorf("cluster: not yet written, will be when the store answers (%v): %w", storeErr(last), ctx.Err())
		}
		return fmt.Errorf("cluster: not yet written, will be when the store answers: %w", ctx.Err())
	}
}

func (o *owned) poke() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// setLease switches to a new lease (0: none); every desired key must be written under it.
func (o *owned) setLease(id clientv3.LeaseID) {
	o.mu.Lock()
	o.lease = id
	if id != 0 {
		for k := range o.desired {
			if _, ok := o.dirty[k]; !ok {
				o.dirty[k] = nil
			}
		}
	}
	o.mu.Unlock()
	o.poke()
}

type ownedOp struct {
	key, val string
	del      bool
	waiters  []chan struct{}
}

// take removes up to one transaction's worth of dirty keys; nil when there is nothing to do
// or no lease to write under.
func (o *owned) take() ([]ownedOp, clientv3.LeaseID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lease == 0 || len(o.dirty) == 0 {
		return nil, 0
	}
	var ops []ownedOp
	size := 0
	for k, w := range o.dirty {
		v, ok := o.desired[k]
		if len(ops) == maxTxnOps || (len(ops) > 0 && size+len(k)+len(v) > maxTxnBytes) {
			break
		}
		size += len(k) + len(v) + 16
		ops = append(ops, ownedOp{key: k, val: v, del: !ok, waiters: w})
		delete(o.dirty, k)
	}
	return ops, o.lease
}

// finish wakes the waiters of written ops, or puts failed ones back for a retry.
func (o *owned) finish(ops []ownedOp, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lastErr = err
	for _, op := range ops {
		if err == nil {
			for _, w := range op.waiters {
				close(w)
			}
			continue
		}
		// A newer set of the same key may be queued already; its write covers these waiters.
		o.dirty[op.key] = append(o.dirty[op.key], op.waiters...)
	}
}

func (o *owned) write(ctx context.Context, ops []ownedOp, lease clientv3.LeaseID) error {
	txn := make([]clientv3.Op, len(ops))
	for i, op := range ops {
		if op.del {
			txn[i] = clientv3.OpDelete(op.key)
		} else {
			txn[i] = clientv3.OpPut(op.key, op.val, clientv3.WithLease(lease))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	_, err := o.cli.Txn(clientv3.WithRequireLeader(ctx)).Then(txn...).Commit()
	return err
}

// run writes dirty keys until ctx ends.
func (o *owned) run(ctx context.Context) {
	bo := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.kick:
		case <-retry:
			retry = nil
		}
		for {
			ops, lease := o.take()
			if ops == nil {
				break
			}
			err := o.write(ctx, ops, lease)
			o.finish(ops, err)
			if err == nil {
				bo.reset()
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if isLeaseNotFound(err) {
				// The new lease rewrites everything; nothing to retry until then.
				o.leaseLost(lease)
			} else {
				o.log.Warn("cluster write failed, retrying", "keys", len(ops), "err", err)
			}
			bo.cur = min(max(bo.cur*2, bo.min), bo.max)
			retry = time.After(bo.cur/2 + jitter(bo.cur/2))
			break
		}
	}
}
