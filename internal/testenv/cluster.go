package testenv

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd is an etcd cluster of real etcd processes (Debian's etcd-server) on loopback.
type Etcd struct {
	Endpoints []string
	Members   []*External
}

// StartEtcd runs an n-member etcd cluster and waits until it has a leader. Each member's
// client and peer ports come from StartExternal; the members reach each other through
// Forwards, because every member must be told all peer addresses before any has started.
func StartEtcd(t testing.TB, n int) *Etcd {
	t.Helper()
	NeedCommands(t, "etcd")
	fwd := make([]*Forward, n)
	var initial []string
	for i := range fwd {
		fwd[i] = StartForward(t)
		initial = append(initial, fmt.Sprintf("e%d=http://%s", i+1, fwd[i].Addr()))
	}
	e := &Etcd{}
	for i := range n {
		name, dir := fmt.Sprintf("e%d", i+1), filepath.Join(t.TempDir(), "etcd")
		m := StartExternal(t, "etcd "+name, "127.0.0.1", 2, func(ports []int) *exec.Cmd {
			os.RemoveAll(dir) // a retry on other ports starts afresh
			client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
			return exec.Command("etcd", "--name", name, "--data-dir", dir,
				"--listen-client-urls", client, "--advertise-client-urls", client,
				"--listen-peer-urls", peer, "--initial-advertise-peer-urls", "http://"+fwd[i].Addr(),
				"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
				"--initial-cluster-token", "maintproxy-test", "--log-level", "warn",
				"--heartbeat-interval", "50", "--election-timeout", "500")
		})
		fwd[i].To(fmt.Sprintf("127.0.0.1:%d", m.Ports[1]))
		e.Members = append(e.Members, m)
		e.Endpoints = append(e.Endpoints, fmt.Sprintf("http://127.0.0.1:%d", m.Ports[0]))
	}
	cli := e.Client(t)
	deadline := time.Now().Add(Scale(30 * time.Second))
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(clientv3.WithRequireLeader(ctx), "/health-check", "ok")
		cancel()
		if err == nil {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd cluster of %d has no leader after 30s: %v", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client is an etcd client for the test's own look at the store, closed when it ends.
func (e *Etcd) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// ClusterOptions shape StartCluster.
type ClusterOptions struct {
	Options
	// Brokers is the number of brokers (named b1, b2, …).
	Brokers int
	// Etcd is the store to use; nil starts a 3-member one.
	Etcd *Etcd
	// Store makes the brokers take accounts, customers and limits from the store.
	Store bool
	// LeaseTTL and DrainTimeout of every broker (defaults 2s and 10s).
	LeaseTTL, DrainTimeout time.Duration
}

// Cluster is brokers sharing an etcd cluster.
type Cluster struct {
	Etcd    *Etcd
	Brokers []*Env
	Nodes   []string
	// Secret is the cluster secret file; CAFile the identity CA every broker serves.
	Secret, CAFile string
	prefix         string
}

// StartCluster runs the brokers, each with a cluster section (peer port on 127.0.0.1:0),
// and takes the identity CA they serve (from the store, so the same for all) as every
// Env's CAFile.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	if o.Etcd == nil {
		o.Etcd = StartEtcd(t, 3)
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 2 * time.Second
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 10 * time.Second
	}
	c := &Cluster{Etcd: o.Etcd, Secret: filepath.Join(t.TempDir(), "cluster.secret"), prefix: "/maintproxy/"}
	if err := os.WriteFile(c.Secret, []byte("test-cluster-secret-0123456789abcdefghijklmnop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range o.Brokers {
		node := fmt.Sprintf("b%d", i+1)
		opts := o.Options
		opts.Extra = map[string]any{}
		for k, v := range o.Options.Extra {
			opts.Extra[k] = v
		}
		cc := map[string]any{
			"node": node, "etcd": map[string]any{"endpoints": o.Etcd.Endpoints},
			"peer": map[string]any{"listen": "127.0.0.1:0"}, "lease_ttl": o.LeaseTTL.String(),
			"drain_timeout": o.DrainTimeout.String(), "secret_file": c.Secret,
		}
		if o.Store {
			cc["config"] = "store"
		}
		opts.Extra["cluster"] = cc
		c.Brokers = append(c.Brokers, Start(t, opts))
		c.Nodes = append(c.Nodes, node)
	}
	c.CAFile = filepath.Join(t.TempDir(), "cluster-ca.pem")
	ca := ServedCA(t, c.Brokers[0].WebAddr)
	if err := os.WriteFile(c.CAFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, b := range c.Brokers {
		b.CAFile = c.CAFile
	}
	return c
}

// ServedCA returns, in PEM, the root of the chain the TLS server at addr presents (the
// identity CA, which the self-signed mode sends after the leaf).
func ServedCA(t testing.TB, addr string) []byte {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "admin." + Domain})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	chain := c.ConnectionState().PeerCertificates
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[len(chain)-1].Raw})
}

// Broker returns the broker named node.
func (c *Cluster) Broker(node string) *Env {
	for i, n := range c.Nodes {
		if n == node {
			return c.Brokers[i]
		}
	}
	return nil
}

// WebAddrs are every broker's web address: an agent's broker_addrs.
func (c *Cluster) WebAddrs() []string {
	var out []string
	for _, b := range c.Brokers {
		if b != nil {
			out = append(out, b.WebAddr)
		}
	}
	return out
}

// Holders reads from the store which brokers hold a session of customer/system.
func (c *Cluster) Holders(t testing.TB, customer, system string) []string {
	t.Helper()
	cli := c.Etcd.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	prefix := c.prefix + "presence/" + strings.ToLower(customer) + "/" + strings.ToLower(system) + "/"
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, kv := range resp.Kvs {
		node, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/")
		nodes = append(nodes, node)
	}
	return nodes
}

// WaitReady polls every broker's /readyz until it answers 200.
func (c *Cluster) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	for _, b := range c.Brokers {
		b.WaitReady(t, timeout)
	}
}

// WaitReady polls the broker's /readyz until it answers 200.
func (e *Env) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	hc := e.WebClient(t)
	deadline := time.Now().Add(Scale(timeout))
	for {
		resp, err := hc.Get("https://" + e.WebAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker %s not ready within %v (last: %v)", e.WebAddr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WebClient talks to the web listener as admin.<domain>, trusting the broker's CA.
func (e *Env) WebClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.CAPool(t), ServerName: "admin." + e.Domain}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// HeldBy counts the agent sessions the store lists for node.
func (c *Cluster) HeldBy(t testing.TB, node string) int {
	t.Helper()
	cli := c.Etcd.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, c.prefix+"presence/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		// presence/‹customer›/‹system›/‹node›/‹session›
		if parts := strings.Split(strings.TrimPrefix(string(kv.Key), c.prefix+"presence/"), "/"); len(parts) == 4 && parts[2] == node {
			n++
		}
	}
	return n
}
