package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"maintproxy/cluster/peer"
	"maintproxy/internal/testkit"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/acme/autocert"
)

type pushed struct {
	yaml []byte
	rev  int64
}

// A pushed config reaches a watching broker with its revision; the watch starts with the
// config already there; a broker records the revision it runs and status tells who is stale.
func TestConfigPushAndWatch(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	a := open(t, opts(ep, "b1"))
	o := opts(ep, "b2")
	o.Self.ConfigStore = true
	b := open(t, o)
	got := make(chan pushed, 10)
	b.WatchConfig(func(y []byte, rev int64) { got <- pushed{y, rev} })

	ctx := testkit.Context(t, 10*time.Second)
	var lat []time.Duration
	var last int64
	for i := 0; i < 20; i++ {
		y := []byte(fmt.Sprintf("limits: {per_account: %d}\n", i+1))
		start := time.Now()
		rev, err := a.PushConfig(ctx, y)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			lat = append(lat, time.Since(start))
			if !bytes.Equal(p.yaml, y) || p.rev != rev || rev <= last {
				t.Fatalf("delivered %q rev %d, pushed %q rev %d (last %d)", p.yaml, p.rev, y, rev, last)
			}
			last = rev
		case <-time.After(2 * time.Second):
			t.Fatal("push not delivered")
		}
	}
	t.Logf("push→delivered to the other broker: p50 %s p99 %s", percentile(lat, .5), percentile(lat, .99))

	// A broker that starts later gets the current config first.
	c := open(t, opts(ep, "b3"))
	late := make(chan pushed, 1)
	c.WatchConfig(func(y []byte, rev int64) { late <- pushed{y, rev} })
	select {
	case p := <-late:
		if p.rev != last {
			t.Errorf("late watcher got rev %d, want %d", p.rev, last)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("late watcher got nothing")
	}

	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ConfigRevision != last || len(st.Brokers) != 3 {
		t.Fatalf("status: %+v", st)
	}
	for _, bs := range st.Brokers {
		if bs.LeaseTTL <= 0 || bs.Stale != (bs.Node == "b2") {
			t.Errorf("status of %s: %+v", bs.Node, bs)
		}
	}
	if err := b.UpdateSelf(ctx, func(bi *BrokerInfo) { bi.ConfigRevision = last }); err != nil {
		t.Fatal(err)
	}
	if st, _ = a.Status(ctx); st.Brokers[1].Node != "b2" || st.Brokers[1].Stale {
		t.Errorf("b2 still stale after recording the revision: %+v", st.Brokers[1])
	}

	if _, err := a.PushConfig(ctx, make([]byte, MaxConfigBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized push: %v", err)
	}
}

// A lock published on one broker holds on another within a second, ends by itself at its
// time, and can be cleared; per-account tunnel counts of other brokers add up.
func TestLocksAndCountsAcrossBrokers(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	a := open(t, opts(ep, "b1"))
	b := open(t, opts(ep, "b2"))
	ctx := testkit.Context(t, 10*time.Second)

	until := time.Now().Add(time.Minute)
	start := time.Now()
	if err := a.PublishLock(ctx, "resa", until); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Locked("resa"); !ok {
		t.Error("not locked on the broker that locked it")
	}
	d := waitFor(t, time.Second, "lock honoured on b2", func() bool { _, ok := b.Locked("resa"); return ok })
	t.Logf("lock published in %s, seen on the other broker %s later", time.Since(start)-d, d)
	if u, _ := b.Locked("resa"); !u.Equal(until.UTC()) {
		t.Errorf("until %s, want %s", u, until)
	}
	if err := b.ClearLock(ctx, "resa"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "unlock honoured on b1", func() bool { _, ok := a.Locked("resa"); return !ok })

	// A short lock ends on its own time on both, before etcd has removed the key.
	if err := a.PublishLock(ctx, "resb", time.Now().Add(700*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "short lock on b2", func() bool { _, ok := b.Locked("resb"); return ok })
	waitFor(t, 3*time.Second, "short lock over", func() bool { _, ok := b.Locked("resb"); return !ok })

	a.SetAccountTunnels("resa", 3)
	a.SetAccountTunnels("resa", 5) // collapses with the first
	waitFor(t, 2*time.Second, "count seen", func() bool { return b.RemoteAccountTunnels("resa") == 5 })
	if a.RemoteAccountTunnels("resa") != 0 {
		t.Error("own count reported as remote")
	}
	b.SetAccountTunnels("resa", 2)
	waitFor(t, 2*time.Second, "b2's count seen", func() bool { return a.RemoteAccountTunnels("resa") == 2 })
	a.SetAccountTunnels("resa", 0)
	waitFor(t, 2*time.Second, "count cleared", func() bool { return b.RemoteAccountTunnels("resa") == 0 })
}

func makeCA(name string) func() ([]byte, []byte, error) {
	return func() ([]byte, []byte, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, nil, err
		}
		cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("cert of " + name)})
		return cert, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	}
}

// Brokers starting together end up with one identity CA (one create wins, the others
// read it); a rollover step at a stale version is refused; etcd holds the keys only sealed;
// a broker with another secret is told so; the cache is shared and sealed too.
func TestSharedCAsConcurrentAndSealed(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	const n = 4
	won := make(chan bool, n)
	for i := 0; i < n; i++ {
		c, err := Dial(opts(ep, "x"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			cert, key, err := makeCA(fmt.Sprint("b", i))()
			if err != nil {
				t.Error(err)
			}
			ok, err := c.SwapCAs(testkit.Context(t, 10*time.Second), CASet{Current: &CAPair{cert, key}}, 0)
			if err != nil {
				t.Error(err)
			}
			won <- ok
		}()
	}
	wins := 0
	for range n {
		if <-won {
			wins++
		}
	}
	if wins != 1 {
		t.Fatalf("%d brokers created the CA, want 1", wins)
	}
	c0, _ := Dial(opts(ep, "x"))
	defer c0.Close()
	set, ver, err := c0.LoadCAs(testkit.Context(t, 5*time.Second))
	if err != nil || set.Current == nil || ver == 0 {
		t.Fatalf("load: %+v %d %v", set, ver, err)
	}
	first := *set.Current

	// A rollover step: the next CA beside the current one; a second writer at the old
	// version is refused and changes nothing.
	nc, nk, _ := makeCA("next")()
	if ok, err := c0.SwapCAs(testkit.Context(t, 5*time.Second), CASet{Current: &first, Next: &CAPair{nc, nk}}, ver); !ok || err != nil {
		t.Fatalf("swap at the current version: %v %v", ok, err)
	}
	oc, ok2, _ := makeCA("other")()
	if ok, err := c0.SwapCAs(testkit.Context(t, 5*time.Second), CASet{Current: &first, Next: &CAPair{oc, ok2}}, ver); ok || err != nil {
		t.Fatalf("swap at a stale version: %v %v", ok, err)
	}
	set, _, err = c0.LoadCAs(testkit.Context(t, 5*time.Second))
	if err != nil || set.Next == nil || !bytes.Equal(set.Next.KeyPEM, nk) || !bytes.Equal(set.Current.KeyPEM, first.KeyPEM) {
		t.Fatalf("after the rollover step: %+v %v", set, err)
	}

	cli := raw(t, ep)
	resp, err := cli.Get(testkit.Context(t, 5*time.Second), "/mp-test/ca/identity")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("ca key: %v", err)
	}
	stored := resp.Kvs[0].Value
	blk, _ := pem.Decode(first.KeyPEM)
	if bytes.Contains(stored, first.KeyPEM) || bytes.Contains(stored, blk.Bytes) || bytes.Contains(stored, []byte("PRIVATE KEY")) {
		t.Fatal("the CA key is readable in etcd")
	}
	if !bytes.Contains(stored, []byte("cert of b")) && !strings.Contains(string(stored), "CERTIFICATE") {
		t.Error("the certificate should be stored in clear")
	}

	o := opts(ep, "x")
	o.Secret = []byte(strings.Repeat("z", MinSecretLength))
	other, err := Dial(o)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, _, err := other.LoadCAs(testkit.Context(t, 5*time.Second)); !errors.Is(err, ErrBadSecret) {
		t.Errorf("wrong secret: %v", err)
	}

	// The ACME cache: shared, sealed, bound to its name.
	c1, _ := Dial(opts(ep, "x"))
	defer c1.Close()
	c2, _ := Dial(opts(ep, "x"))
	defer c2.Close()
	ctx := testkit.Context(t, 5*time.Second)
	var cache autocert.Cache = c1.Cache("acme")
	if _, err := cache.Get(ctx, "maint.example.com"); err != autocert.ErrCacheMiss {
		t.Fatalf("miss: %v", err)
	}
	secret := []byte("-----BEGIN EC PRIVATE KEY-----\nacme account key\n")
	if err := cache.Put(ctx, "acme_account+key", secret); err != nil {
		t.Fatal(err)
	}
	if got, err := c2.Cache("acme").Get(ctx, "acme_account+key"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("shared get: %q %v", got, err)
	}
	all, _ := cli.Get(ctx, "/mp-test/cache/", clientv3.WithPrefix())
	for _, kv := range all.Kvs {
		if bytes.Contains(kv.Value, []byte("acme account key")) {
			t.Fatal("cache value stored in clear")
		}
		// Moving a sealed value to another name must not make it readable there.
		if _, err := cli.Put(ctx, "/mp-test/cache/acme/moved", string(kv.Value)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c2.Cache("acme").Get(ctx, "moved"); !errors.Is(err, ErrBadSecret) {
		t.Errorf("moved value: %v", err)
	}
	if err := cache.Delete(ctx, "acme_account+key"); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Cache("acme").Get(ctx, "acme_account+key"); err != autocert.ErrCacheMiss {
		t.Errorf("after delete: %v", err)
	}
}

// The peer link trusts exactly the fingerprints in the directory: a broker's link works
// while it is published and is refused once it has left the cluster.
func TestPeerTrustFromDirectory(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	id1, _ := peer.NewIdentity("b1")
	id2, _ := peer.NewIdentity("b2")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o1 := opts(ep, "b1")
	o1.Self = BrokerInfo{PeerAddr: ln.Addr().String(), PeerFingerprint: id1.Fingerprint()}
	a := open(t, o1)
	o2 := opts(ep, "b2")
	o2.Self = BrokerInfo{PeerAddr: "127.0.0.1:1", PeerFingerprint: id2.Fingerprint()}
	b := open(t, o2)
	waitFor(t, 2*time.Second, "directories complete", func() bool {
		return nodes(a.Directory().Brokers()) == "b1,b2" && nodes(b.Directory().Brokers()) == "b1,b2"
	})

	srv := &peer.Server{Identity: id1, Trust: a.Directory().Trusted,
		Handle: func(ctx context.Context, req peer.Request, s *peer.Stream) {
			s.Reply(peer.Reply{Code: peer.CodeOK, Message: req.From})
			io.Copy(s, s)
		}}
	go srv.Serve(ln)
	defer srv.Close()

	open := func() error {
		d := &peer.Dialer{Identity: id2, Resolve: b.Directory().Resolve}
		defer d.Close()
		conn, rep, err := d.Open(testkit.Context(t, 5*time.Second), "b1", peer.Request{Customer: "12345", System: "se1", Port: 22})
		if err != nil {
			return err
		}
		defer conn.Close()
		if rep.Message != "b2" {
			return fmt.Errorf("holder saw the request from %q", rep.Message)
		}
		conn.Write([]byte("ping"))
		buf := make([]byte, 4)
		_, err = io.ReadFull(conn, buf)
		return err
	}
	if err := open(); err != nil {
		t.Fatalf("published broker refused: %v", err)
	}
	b.Close()
	waitFor(t, 2*time.Second, "b2 gone from b1's directory", func() bool { _, ok := a.Directory().Lookup("b2"); return !ok })
	// b2's directory view is frozen at close; it still knows where b1 is.
	if err := open(); err == nil {
		t.Fatal("a broker that left the cluster still gets streams")
	}
}

// A broker that has just registered is trusted even before this broker's watch brings its
// entry: the directory looks an unknown fingerprint up in the store. A stranger's is not
// found there either.
func TestTrustedLooksUpUnseenBroker(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	a := open(t, opts(ep, "b1"))
	open(t, opts(ep, "b2"))
	d := newDirectory(a) // no watch: it has seen nothing
	if node, ok := d.Trusted("fp-b2"); !ok || node != "b2" {
		t.Fatalf("unseen broker: %q %v", node, ok)
	}
	if _, ok := d.Lookup("b2"); !ok {
		t.Error("the entry read from the store was not kept")
	}
	if node, ok := d.Trusted("fp-stranger"); ok {
		t.Fatalf("a stranger was trusted as %q", node)
	}
}
