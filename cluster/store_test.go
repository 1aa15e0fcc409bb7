package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"maintproxy/cluster/etcdtest"
	"maintproxy/internal/testkit"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Two brokers see each other in the directory and each other's agents in presence; adds
// and removes travel through the watch; more keys than one transaction holds are written.
func TestPresenceAcrossBrokers(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	a := open(t, opts(ep, "b1"))
	b := open(t, opts(ep, "b2"))
	waitFor(t, 5*time.Second, "directory lists both", func() bool {
		return nodes(a.Directory().Brokers()) == "b1,b2" && nodes(b.Directory().Brokers()) == "b1,b2"
	})
	if node, ok := b.Directory().Trusted("fp-b1"); !ok || node != "b1" {
		t.Errorf("Trusted(fp-b1) = %q %v", node, ok)
	}
	if addr, fp, ok := b.Directory().Resolve("b1"); !ok || addr != a.Self().PeerAddr || fp != "fp-b1" {
		t.Errorf("Resolve(b1) = %q %q %v", addr, fp, ok)
	}

	ctx := testkit.Context(t, 10*time.Second)
	since := time.Now().UTC().Truncate(time.Millisecond)
	sw := json.RawMessage(`{"remote_access":true}`)
	var lat []time.Duration
	for i := 0; i < 50; i++ {
		start := time.Now()
		if err := a.Presence().Add(ctx, "12345", "SE1", fmt.Sprintf("s%d", i), AgentInfo{Since: since, Switches: sw}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Second, "b2 sees the add", func() bool { return len(b.Presence().Holders("12345", "se1")) == i+1 })
		lat = append(lat, time.Since(start))
	}
	t.Logf("put→seen by the other broker: p50 %s p99 %s", percentile(lat, .5), percentile(lat, .99))
	h := b.Presence().Holders("12345", "se1")[0]
	if h.Node != "b1" || h.PeerAddr != a.Self().PeerAddr || !h.Since.Equal(since) || string(h.Switches) != string(sw) {
		t.Errorf("holder %+v", h)
	}
	if !b.Presence().Online("12345", "SE1") || b.Presence().Online("12345", "se2") {
		t.Error("Online wrong")
	}
	if got := b.Presence().Systems("12345"); len(got) != 1 || len(got["se1"]) != 50 {
		t.Errorf("Systems: %d systems", len(got))
	}

	for i := 0; i < 50; i++ {
		if err := a.Presence().Remove(ctx, "12345", "se1", fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Second, "b2 sees the removes", func() bool { return !b.Presence().Online("12345", "se1") })

	// 300 sessions at once: more than one transaction's 128 operations.
	errs := make(chan error, 300)
	start := time.Now()
	for i := 0; i < 300; i++ {
		go func() {
			errs <- b.Presence().Add(ctx, fmt.Sprintf("c%d", i%30), "se1", fmt.Sprintf("x%d", i), AgentInfo{Since: since})
		}()
	}
	for i := 0; i < 300; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	d := waitFor(t, 5*time.Second, "300 sessions seen", func() bool { return a.Presence().Counts()["b2"] == 300 })
	t.Logf("300 concurrent adds written in %s, all seen %s later", time.Since(start)-d, d)
}

// A clean Close removes the broker and its agents at once, not after the TTL.
func TestCleanCloseRemovesAtOnce(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	o := opts(ep, "b1")
	o.LeaseTTL = 30 * time.Second // expiry would take this long: the test shows it does not wait
	a := open(t, o)
	b := open(t, opts(ep, "b2"))
	if err := a.Presence().Add(testkit.Context(t, 5*time.Second), "12345", "se1", "s1", AgentInfo{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "b2 sees the agent", func() bool { return b.Presence().Online("12345", "se1") })
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, 2*time.Second, "agent and broker gone", func() bool {
		return !b.Presence().Online("12345", "se1") && nodes(b.Directory().Brokers()) == "b2"
	})
	t.Logf("clean close: keys gone on the other broker %s after Close started", time.Since(start)-d+d)
	if a.Ready() {
		t.Error("closed store reports ready")
	}
}

// A crashed broker (no revoke) loses its agents when its lease expires: the keys are still
// there right after the crash, and gone within TTL plus slack.
func TestCrashExpiresWithLease(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	a := open(t, opts(ep, "b1"))
	b := open(t, opts(ep, "b2"))
	if err := a.Presence().Add(testkit.Context(t, 5*time.Second), "12345", "se1", "s1", AgentInfo{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "b2 sees the agent", func() bool { return b.Presence().Online("12345", "se1") })
	killed := time.Now()
	a.kill()
	if !b.Presence().Online("12345", "se1") {
		t.Fatal("agent vanished at the crash itself: the lease should carry it to its TTL")
	}
	waitFor(t, testTTL+3*time.Second, "agent expires", func() bool { return !b.Presence().Online("12345", "se1") })
	t.Logf("crash: agent gone on the other broker %s after the kill (TTL %s)", time.Since(killed), testTTL)
	// The directory is another watch: its delete event may come a moment later.
	waitFor(t, time.Second, "dead broker gone from the directory", func() bool { return nodes(b.Directory().Brokers()) == "b2" })
}

// Someone revokes the broker's lease behind its back: its keys vanish, the Store notices,
// reports not ready, grants a new lease and writes its keys again.
func TestReRegisterAfterLeaseRevoked(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	var rl readyLog
	o := opts(ep, "b1")
	o.OnReady = rl.on
	a := open(t, o)
	b := open(t, opts(ep, "b2"))
	ctx := testkit.Context(t, 10*time.Second)
	if err := a.Presence().Add(ctx, "12345", "se1", "s1", AgentInfo{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "b2 sees the agent", func() bool { return b.Presence().Online("12345", "se1") })

	cli := raw(t, ep)
	key := "/mp-test/presence/12345/se1/b1/s1"
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v", key, err)
	}
	old := clientv3.LeaseID(resp.Kvs[0].Lease)
	// Watch the key to see it go and come back, independent of the Stores' own views.
	wch := cli.Watch(ctx, key, clientv3.WithRev(resp.Header.Revision+1))
	revoked := time.Now()
	if _, err := cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	var deleted, back bool
	for !back {
		select {
		case wr := <-wch:
			for _, ev := range wr.Events {
				deleted = deleted || ev.Type == clientv3.EventTypeDelete
				back = deleted && ev.Type == clientv3.EventTypePut
			}
		case <-ctx.Done():
			t.Fatalf("key not back (deleted=%v)", deleted)
		}
	}
	t.Logf("lease revoked behind the broker's back: keys back after %s", time.Since(revoked))
	waitFor(t, 5*time.Second, "b1 ready again and b2 sees the agent", func() bool {
		return a.Ready() && b.Presence().Online("12345", "se1") && nodes(b.Directory().Brokers()) == "b1,b2"
	})
	resp, err = cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) == old || resp.Kvs[0].Lease == 0 {
		t.Fatalf("key after re-registration: %v %+v", err, resp.Kvs)
	}
	if !rl.sawFalse() {
		t.Errorf("OnReady never reported false while the lease was lost: %s", rl.String())
	}
	// A write made after the new lease lands under it too.
	if err := a.Presence().Add(ctx, "12345", "se2", "s2", AgentInfo{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "new agent seen", func() bool { return b.Presence().Online("12345", "se2") })
}

// A second broker configured with a node name in use waits (not ready) instead of taking
// over the first one's keys; once the first leaves, it registers.
func TestNodeNameTaken(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	a := open(t, opts(ep, "b1"))
	dup, err := Open(opts(ep, "b1"))
	if err != nil {
		t.Fatal(err)
	}
	defer dup.Close()
	shortCtx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := dup.WaitReady(shortCtx); err == nil {
		t.Fatal("duplicate node became ready while the first runs")
	}
	if b, _ := a.Directory().Lookup("b1"); b.Instance != a.Self().Instance {
		t.Fatalf("directory entry taken over: %+v", b)
	}
	a.Close()
	if err := dup.WaitReady(testkit.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// While the store has no quorum, lookups answer from memory, the Stores report not ready,
// a config push is refused with ErrNoQuorum and changes wait; Close does not hang. When
// quorum is back the Stores keep their leases (the others never see the agents flap), the
// waiting changes land, and both are ready again.
func TestNoQuorumAndRecovery(t *testing.T) {
	t.Parallel()
	ms := etcdtest.StartCluster(t, 3)
	ep := etcdtest.Endpoints(ms...)
	var rl readyLog
	o := opts(ep, "b1")
	o.OnReady = rl.on
	a := open(t, o)
	b := open(t, opts(ep, "b2"))
	c := open(t, opts(ep, "b3"))
	ctx := testkit.Context(t, 20*time.Second)
	for _, s := range []string{"s1", "s2"} {
		if err := a.Presence().Add(ctx, "12345", "se1", s, AgentInfo{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "agents seen", func() bool { return len(b.Presence().Holders("12345", "se1")) == 2 })
	if _, err := a.PushConfig(ctx, []byte("accounts: []\n")); err != nil {
		t.Fatalf("push with quorum: %v", err)
	}
	cli := raw(t, ep[:1])
	key := "/mp-test/presence/12345/se1/b1/s1"
	before, err := cli.Get(ctx, key)
	if err != nil || len(before.Kvs) != 1 {
		t.Fatal(err)
	}

	// No member hears another; the Stores can reach only m0, which has no leader now.
	for _, m := range ms {
		m.CutPeers()
	}
	ms[1].CutClients()
	ms[2].CutClients()
	lost := time.Now()
	waitFor(t, 10*time.Second, "not ready without quorum", func() bool { return !a.Ready() && !b.Ready() })
	t.Logf("quorum lost: both not ready after %s (TTL %s)", time.Since(lost), testTTL)
	if len(b.Presence().Holders("12345", "se1")) != 2 || len(a.Directory().Brokers()) != 3 {
		t.Error("memory views dropped while the store is unavailable")
	}
	start := time.Now()
	_, err = a.PushConfig(ctx, []byte("accounts: []\n"))
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("push without quorum: %v", err)
	}
	t.Logf("push refused after %s: %v", time.Since(start), err)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := a.Presence().Remove(short, "12345", "se1", "s2"); err == nil {
		t.Fatal("remove reported written without quorum")
	}
	a.Presence().Add(short, "12345", "se1", "s3", AgentInfo{})
	start = time.Now()
	c.Close()
	t.Logf("close without quorum took %s", time.Since(start))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Close without quorum took %s", d)
	}

	for _, m := range ms {
		m.Heal()
	}
	d := waitState(t, 15*time.Second, "ready again with the changes made meanwhile", func() (bool, string) {
		hs := b.Presence().Holders("12345", "se1")
		return a.Ready() && b.Ready() && len(hs) == 2 && hs[0].SessionID == "s1" && hs[1].SessionID == "s3",
			fmt.Sprintf("ready %v %v, b sees %+v", a.Ready(), b.Ready(), hs)
	})
	t.Logf("quorum back: ready and consistent after %s", d)
	after, err := cli.Get(ctx, key)
	if err != nil || len(after.Kvs) != 1 || after.Kvs[0].Lease != before.Kvs[0].Lease || after.Kvs[0].CreateRevision != before.Kvs[0].CreateRevision {
		t.Errorf("s1 was re-created or moved to another lease: before %+v after %+v (%v)", before.Kvs, after.Kvs, err)
	}
	if !rl.sawFalse() {
		t.Errorf("OnReady: %s", rl.String())
	}
}

// A broker that cannot reach etcd at all starts, reports not ready, holds its own lockouts,
// and registers (with the agents it took meanwhile) as soon as etcd answers.
func TestUnreachableThenBack(t *testing.T) {
	t.Parallel()
	m := etcdtest.Start(t)
	m.Partition()
	s, err := Open(opts(etcdtest.Endpoints(m), "b1"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Presence().Add(testkit.Context(t, 200*time.Millisecond), "12345", "se1", "s1", AgentInfo{}); err == nil || s.Ready() {
		t.Fatalf("add with etcd unreachable: err=%v ready=%v", err, s.Ready())
	}
	if err := s.PublishLock(testkit.Context(t, 200*time.Millisecond), "resa", time.Now().Add(time.Minute)); err == nil {
		t.Error("lock reported published with etcd unreachable")
	}
	if _, ok := s.Locked("resa"); !ok {
		t.Error("a lock that could not be published does not hold on its own broker")
	}
	m.Heal()
	d := waitFor(t, 15*time.Second, "ready and the agent written", func() bool {
		return s.Ready() && s.Presence().Online("12345", "se1")
	})
	t.Logf("etcd reachable again: registered after %s", d)
}
