package people

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcd limits: a transaction holds at most 128 operations by default; a page of a scan
// stays well inside a response's size limit.
const (
	etcdTxnOps      = 100
	etcdPage        = 500
	etcdRetries     = 20
	etcdRequestWait = 5 * time.Second
)

// etcdBackend keeps the records under prefix + "people/" in etcd.
type etcdBackend struct {
	cli    *clientv3.Client
	prefix string
}

// NewEtcd keeps the records in etcd under prefix (the cluster prefix, e.g. /maintproxy/)
// + "people/", through cli (cluster.Client.Etcd). Close does not close cli.
func NewEtcd(cli *clientv3.Client, prefix string) Backend {
	return &etcdBackend{cli: cli, prefix: prefix + "people/"}
}

func (e *etcdBackend) bucketPrefix(bucket string) string { return e.prefix + bucket + "/" }

func (e *etcdBackend) key(bucket, key string) string {
	return e.bucketPrefix(bucket) + url.PathEscape(key)
}

// bound is the key after every key of bucket when k is empty, else the escaped key k.
func (e *etcdBackend) bound(bucket, k string) string {
	if k == "" {
		return clientv3.GetPrefixRangeEnd(e.bucketPrefix(bucket))
	}
	return e.key(bucket, k)
}

func (e *etcdBackend) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, etcdRequestWait)
	return clientv3.WithRequireLeader(ctx), cancel
}

func (e *etcdBackend) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.key(bucket, key))
	if err != nil {
		return nil, fmt.Errorf("people store (etcd): %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

func (e *etcdBackend) Scan(ctx context.Context, bucket, from, to string, fn func(string, []byte) error) error {
	start := e.bound(bucket, from)
	if from == "" {
		start = e.bucketPrefix(bucket)
	}
	end := e.bound(bucket, to)
	for page := 0; ; page++ {
		rctx, cancel := e.ctx(ctx)
		resp, err := e.cli.Get(rctx, start, clientv3.WithRange(end), clientv3.WithLimit(etcdPage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		cancel()
		if err != nil {
			return fmt.Errorf("people store (etcd): %w", err)
		}
		for _, kv := range resp.Kvs {
			k, err := url.PathUnescape(strings.TrimPrefix(string(kv.Key), e.bucketPrefix(bucket)))
			if err != nil {
				continue
			}
			if err := fn(k, kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// errConflict: another writer changed the key between the read and the write.
var errConflict = errors.New("people store (etcd): the record kept changing; try again")

func (e *etcdBackend) Update(ctx context.Context, bucket, key string, fn func([]byte) ([]byte, error)) error {
	k := e.key(bucket, key)
	for try := 0; try < etcdRetries; try++ {
		rctx, cancel := e.ctx(ctx)
		resp, err := e.cli.Get(rctx, k)
		cancel()
		if err != nil {
			return fmt.Errorf("people store (etcd): %w", err)
		}
		var old []byte
		var rev int64
		if len(resp.Kvs) > 0 {
			old, rev = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
		}
		v, err := fn(old)
		if err != nil {
			return err
		}
		op := clientv3.OpPut(k, string(v))
		if v == nil {
			op = clientv3.OpDelete(k)
		}
		rctx, cancel = e.ctx(ctx)
		tr, err := e.cli.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(op).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("people store (etcd): %w", err)
		}
		if tr.Succeeded {
			return nil
		}
	}
	return errConflict
}

func (e *etcdBackend) Put(ctx context.Context, bucket string, kvs map[string][]byte) error {
	ops := make([]clientv3.Op, 0, min(len(kvs), etcdTxnOps))
	for k, v := range kvs {
		ops = append(ops, clientv3.OpPut(e.key(bucket, k), string(v)))
		if len(ops) == etcdTxnOps {
			if err := e.commit(ctx, ops); err != nil {
				return err
			}
			ops = ops[:0]
		}
	}
	return e.commit(ctx, ops)
}

// commit runs ops in one transaction (none: nothing to do).
func (e *etcdBackend) commit(ctx context.Context, ops []clientv3.Op) error {
	if len(ops) == 0 {
		return nil
	}
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	if _, err := e.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("people store (etcd): %w", err)
	}
	return nil
}

func (e *etcdBackend) DeleteRange(ctx context.Context, bucket, from, to string) error {
	start := e.bound(bucket, from)
	if from == "" {
		start = e.bucketPrefix(bucket)
	}
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	if _, err := e.cli.Delete(ctx, start, clientv3.WithRange(e.bound(bucket, to))); err != nil {
		return fmt.Errorf("people store (etcd): %w", err)
	}
	return nil
}

// Replace deletes each named bucket and writes its records in transactions of at most
// etcdTxnOps operations: not atomic as a whole (a failure midway leaves a part written;
// run the restore again).
func (e *etcdBackend) Replace(ctx context.Context, data map[string]map[string][]byte) error {
	for name, kvs := range data {
		if err := e.DeleteRange(ctx, name, "", ""); err != nil {
			return err
		}
		if err := e.Put(ctx, name, kvs); err != nil {
			return err
		}
	}
	return nil
}

// Watch calls changed after every change below the prefix except the audit history,
// whoever made it, and once each time the watch is (re)established: a change made between
// the caller's load and the watch's start, or while a watch was down (compaction, lost
// connection), is not missed.
func (e *etcdBackend) Watch(ctx context.Context, changed func()) {
	audit := e.bucketPrefix(bucketAudit)
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range e.cli.Watch(wctx, e.prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify()) {
			if resp.Err() != nil {
				break
			}
			if resp.Created {
				changed()
				continue
			}
			for _, ev := range resp.Events {
				if !strings.HasPrefix(string(ev.Kv.Key), audit) {
					changed()
					break
				}
			}
		}
		cancel()
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

func (e *etcdBackend) Close() error { return nil }
