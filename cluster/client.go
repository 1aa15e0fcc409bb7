package cluster

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultPrefix is the key prefix when Options.Prefix is empty.
const DefaultPrefix = "/maintproxy/"

// Defaults for Options.
const (
	DefaultLeaseTTL       = 10 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
)

// Sentinel errors.
var (
	// ErrNoQuorum: the store has no leader (lost quorum) or cannot be reached; nothing was written.
	ErrNoQuorum = errors.New("cluster: the store (etcd) has no quorum or cannot be reached")
	// ErrNoSecret: an operation needs the cluster secret (cluster.secret_file) and none was given.
	ErrNoSecret = errors.New("cluster.secret_file: the cluster secret is required for this")
	// ErrBadSecret: a sealed value in the store does not open with this broker's secret.
	ErrBadSecret = errors.New("cluster.secret_file: a value in the store does not decrypt with this secret (is the file the same on every broker?)")
	// ErrNodeTaken: another running broker is registered under the same node name.
	ErrNodeTaken = errors.New("cluster.node: another running broker is registered under this node name")
	// ErrTooLarge: a value exceeds what the store accepts in one request.
	ErrTooLarge = errors.New("cluster: value too large for the store")
	// ErrClosed: the Store or Client was closed.
	ErrClosed = errors.New("cluster: closed")
)

// Options configures a Client (Endpoints, Prefix, TLS, Secret, timeouts, Logger) and a Store
// (all fields).
type Options struct {
	// Node names this broker; unique in the cluster (Store only).
	Node string
	// Endpoints are etcd client URLs, e.g. http://127.0.0.1:2379.
	Endpoints []string
	// Prefix is where every key lives (default DefaultPrefix); must start and end with "/".
	Prefix string
	// TLS is the client TLS towards etcd; nil for plain http endpoints.
	TLS *tls.Config
	// LeaseTTL is the broker lease's time to live (default 10 s; etcd raises values below ~2 s).
	LeaseTTL time.Duration
	// Secret is the cluster secret (at least MinSecretLength bytes) that seals the identity
	// CA key and cache values. Only the identity CA and Cache need it.
	Secret []byte
	// Self is what this broker publishes in the directory; Node, Instance and Started are
	// filled by Open.
	Self BrokerInfo
	// DialTimeout bounds connecting to an endpoint (default 5 s).
	DialTimeout time.Duration
	// RequestTimeout bounds each etcd request the Store makes on its own (default 5 s).
	RequestTimeout time.Duration
	// Logger receives the Store's own events (lease lost, re-registered); default discards.
	Logger *slog.Logger
	// OnReady, if set, is called with every change of Ready, in order, from the Store's
	// goroutines; it must not block.
	OnReady func(ready bool)
}

func (o *Options) applyDefaults() {
	o.Prefix = cmp.Or(o.Prefix, DefaultPrefix)
	o.LeaseTTL = cmp.Or(o.LeaseTTL, DefaultLeaseTTL)
	o.DialTimeout = cmp.Or(o.DialTimeout, DefaultDialTimeout)
	o.RequestTimeout = cmp.Or(o.RequestTimeout, DefaultRequestTimeout)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validateClient() error {
	if len(o.Endpoints) == 0 {
		return errors.New("cluster.etcd.endpoints: at least one etcd endpoint is required")
	}
	if !strings.HasPrefix(o.Prefix, "/") || !strings.HasSuffix(o.Prefix, "/") {
		return fmt.Errorf("cluster.etcd.prefix: %q must start and end with /", o.Prefix)
	}
	if o.Secret != nil && len(o.Secret) < MinSecretLength {
		return fmt.Errorf("cluster.secret_file: the secret has %d bytes, at least %d are required", len(o.Secret), MinSecretLength)
	}
	return nil
}

// Client is a connection to the store without a lease: config push, cluster status, the
// identity CA and the cache. Safe for concurrent use.
type Client struct {
	cli     *clientv3.Client
	keys    keyspace
	timeout time.Duration
	secret  []byte
}

// Dial connects to etcd. It does not wait for an endpoint to answer; the first request does.
func Dial(opts Options) (*Client, error) {
	opts.applyDefaults()
	if err := opts.validateClient(); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		TLS:         opts.TLS,
		DialTimeout: opts.DialTimeout,
		// Detect a dead member well inside a lease TTL so the client moves to another one.
		DialKeepAliveTime:    opts.LeaseTTL / 3,
		DialKeepAliveTimeout: opts.LeaseTTL / 3,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("cluster.etcd.endpoints: %w", err)
	}
	return &Client{cli: cli, keys: keyspace(opts.Prefix), timeout: opts.RequestTimeout, secret: opts.Secret}, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.cli.Close() }

// reqCtx bounds one request; WithRequireLeader makes a member without a leader answer at
// once instead of letting the request hang until the deadline.
func (c *Client) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	return clientv3.WithRequireLeader(ctx), cancel
}

// storeErr turns the ways etcd says "no quorum" into ErrNoQuorum, keeping the cause.
func storeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrGRPCNoLeader),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, rpctypes.ErrTimeout),
		errors.Is(err, rpctypes.ErrGRPCTimeout):
		return fmt.Errorf("%w: %v", ErrNoQuorum, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrGRPCRequestTooLarge):
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	return err
}

func isLeaseNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrGRPCLeaseNotFound)
}

// keyspace builds the keys of the layout in the package doc.
type keyspace string

func seg(s string) string { return url.PathEscape(s) }

func (k keyspace) brokers() string           { return string(k) + "brokers/" }
func (k keyspace) broker(node string) string { return k.brokers() + seg(node) }
func (k keyspace) presence() string          { return string(k) + "presence/" }
func (k keyspace) tunnels() string           { return string(k) + "tunnels/" }
func (k keyspace) tunnel(account, node string) string {
	return k.tunnels() + seg(account) + "/" + seg(node)
}
func (k keyspace) locks() string              { return string(k) + "locks/" }
func (k keyspace) lock(account string) string { return k.locks() + seg(account) }
func (k keyspace) config() string             { return string(k) + "config" }
func (k keyspace) ca() string                 { return string(k) + "ca/identity" }
func (k keyspace) cache(ns, name string) string {
	return string(k) + "cache/" + seg(ns) + "/" + seg(name)
}

func (k keyspace) presenceKey(customer, system, node, session string) string {
	return k.presence() + seg(customer) + "/" + seg(system) + "/" + seg(node) + "/" + seg(session)
}

// split returns the n escaped segments of key below prefix, unescaped.
func split(key, prefix string, n int) ([]string, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return nil, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != n {
		return nil, false
	}
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil || u == "" {
			return nil, false
		}
		parts[i] = u
	}
	return parts, true
}
