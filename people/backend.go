package people

import "context"

// Buckets of the store (see the package doc).
const (
	bucketPeople   = "people"
	bucketTokens   = "tokens"
	bucketModes    = "modes"
	bucketRequests = "requests"
	bucketGrants   = "grants"
	bucketSessions = "sessions"
	bucketAudit    = "audit"
	bucketAccounts = "accounts"
)

// buckets lists every bucket, in the order a backup holds them.
var buckets = [...]string{bucketPeople, bucketTokens, bucketModes, bucketRequests, bucketGrants, bucketSessions, bucketAudit, bucketAccounts}

// Backend is where the records live: a bbolt file (NewBolt) or etcd (NewEtcd). Keys order
// bytewise within a bucket. Every method is safe for concurrent use.
type Backend interface {
	// Get returns the value under bucket/key, or nil if there is none.
	Get(ctx context.Context, bucket, key string) ([]byte, error)
	// Scan calls fn for each key in [from, to) of bucket in order; "" leaves an end open.
	// An error from fn stops the scan and is returned.
	Scan(ctx context.Context, bucket, from, to string, fn func(key string, val []byte) error) error
	// Update replaces the value under bucket/key with fn(old) atomically: no other write to
	// the key comes between. old is nil when there is none; fn returning nil deletes the
	// key; an error from fn leaves everything as it was and is returned. fn may run more
	// than once (etcd retries on a conflict).
	Update(ctx context.Context, bucket, key string, fn func(old []byte) ([]byte, error)) error
	// Put stores each value of kvs under its key in bucket, whatever was there: bbolt in
	// one transaction (one sync for them all), etcd in transactions of at most etcdTxnOps.
	Put(ctx context.Context, bucket string, kvs map[string][]byte) error
	// DeleteRange removes the keys in [from, to) of bucket ("" leaves an end open).
	DeleteRange(ctx context.Context, bucket, from, to string) error
	// Replace makes data (bucket → key → value) the whole content of the buckets it
	// names; other buckets stay. bbolt does it in one transaction; etcd in batches.
	Replace(ctx context.Context, data map[string]map[string][]byte) error
	// Watch calls changed, until ctx ends, after writes that another process made (etcd:
	// another broker or a command); a backend only one process can open never calls it.
	Watch(ctx context.Context, changed func())
	// Close releases the backend.
	Close() error
}
