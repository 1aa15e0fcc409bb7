// Package etcdtest runs real etcd members inside a test process (go.etcd.io/etcd/server/v3/embed)
// on loopback, for tests of the cluster mode that need no external service.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds a member's (or a cluster's) start; ~0.3 s is usual for one member.
const startTimeout = 20 * time.Second

// Member is one running etcd member.
type Member struct {
	Name      string
	ClientURL string
	etcd      *embed.Etcd
	once      sync.Once
}

// Close stops the member gracefully (idempotent): it hands leadership on and waits up to
// etcd's request timeout (several seconds) for client streams. Its data directory stays
// until the test ends.
func (m *Member) Close() { m.once.Do(m.etcd.Close) }

// Kill stops the member's raft node at once, as a crash would for the rest of the cluster
// (no leadership hand-over), and finishes closing it in the background; Close waits for that.
func (m *Member) Kill() {
	m.etcd.Server.HardStop()
	go m.Close()
}

// Endpoints returns the client URLs of ms.
func Endpoints(ms ...*Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ClientURL
	}
	return out
}

func config(t testing.TB, name string, client, peer string) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = t.TempDir()
	cu, _ := url.Parse("http://" + client)
	pu, _ := url.Parse("http://" + peer)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.LogLevel = "error"
	// Members log to nowhere: a closing member reports "server closed" as errors, and the
	// test reads failures from StartEtcd and ReadyNotify instead.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Nothing written here must survive a crash of the test machine.
	cfg.UnsafeNoFsync = true
	return cfg
}

// Start runs a single-member cluster on loopback ports chosen by the kernel and stops it
// when the test ends.
func Start(t testing.TB) *Member {
	t.Helper()
	cfg := config(t, "m0", "127.0.0.1:0", "127.0.0.1:0")
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	m := &Member{Name: cfg.Name, ClientURL: "http://" + e.Clients[0].Addr().String(), etcd: e}
	t.Cleanup(m.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd: %v", err)
	case <-time.After(startTimeout):
		t.Fatal("etcd: not ready in time")
	}
	return m
}

// StartCluster runs an n-member cluster on loopback and stops it when the test ends. Peer
// URLs must be known before any member starts, so ports are picked free and the start is
// retried (a few times) if another process took one meanwhile.
func StartCluster(t testing.TB, n int) []*Member {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ms, err := startCluster(t, n)
		if err == nil {
			return ms
		}
		lastErr = err
	}
	t.Fatalf("etcd cluster: %v", lastErr)
	return nil
}

func startCluster(t testing.TB, n int) ([]*Member, error) {
	ports, err := freeAddrs(2 * n)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := 0; i < n; i++ {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, ports[2*i+1]))
	}
	ms := make([]*Member, 0, n)
	stopAll := func() {
		for _, m := range ms {
			m.Close()
		}
	}
	for i := 0; i < n; i++ {
		cfg := config(t, fmt.Sprintf("m%d", i), ports[2*i], ports[2*i+1])
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "etcdtest"
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			stopAll()
			return nil, err
		}
		m := &Member{Name: cfg.Name, ClientURL: "http://" + ports[2*i], etcd: e}
		ms = append(ms, m)
		t.Cleanup(m.Close)
	}
	deadline := time.After(startTimeout)
	for _, m := range ms {
		select {
		case <-m.etcd.Server.ReadyNotify():
		case err := <-m.etcd.Err():
			stopAll()
			return nil, err
		case <-deadline:
			stopAll()
			return nil, fmt.Errorf("not ready in %s", startTimeout)
		}
	}
	return ms, nil
}

// freeAddrs returns n loopback addresses whose ports were free a moment ago.
func freeAddrs(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	out := make([]string, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out[i] = l.Addr().String()
	}
	return out, nil
}
