// Package etcdtest runs real etcd members inside a test process (go.etcd.io/etcd/server/v3/embed)
// on loopback, for tests of the cluster mode that need no external service.
//
// Every member is reached only through gates (small TCP relays of this package), for its
// clients and for its peers alike, so a test can cut a member off the network and reconnect
// it instantly (Partition, Heal) — the way a crash or a partition looks to everyone else —
// without waiting for etcd's graceful shutdown.
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

// startTimeout bounds a cluster's start; ~0.3 s is usual for one member.
const startTimeout = 20 * time.Second

// Member is one etcd member.
type Member struct {
	Name string
	// ClientURL is where clients reach the member (through its gate).
	ClientURL string

	etcd         *embed.Etcd
	client, peer *gate
	once         sync.Once
}

// Endpoints returns the client URLs of ms.
func Endpoints(ms ...*Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ClientURL
	}
	return out
}

// Partition cuts the member off its clients and peers: connections to it drop and new ones
// are refused until Heal; the member keeps running, alone. A gate sees only connections made
// to its member, and etcd members dial each other both ways, so to separate members from
// each other cut the peers of every one of them (CutPeers).
func (m *Member) Partition() {
	m.CutClients()
	m.CutPeers()
}

// CutClients drops and refuses the member's client connections until Heal.
func (m *Member) CutClients() { m.client.cut() }

// CutPeers drops and refuses connections from other members to this one until Heal.
// Heal every member whose peers were cut: a member left half cut can still dial out, may
// become leader, and then the others cannot reach it for lease renewals (which a follower
// forwards to the leader's peer URL), so leases expire while writes succeed.
func (m *Member) CutPeers() { m.peer.cut() }

// Heal reopens the member's client and peer gates.
func (m *Member) Heal() {
	m.client.heal()
	m.peer.heal()
}

// Close stops the member (idempotent).
func (m *Member) Close() {
	m.once.Do(func() {
		m.client.close()
		m.peer.close()
		m.etcd.Close()
	})
}

// Start runs a single-member cluster and stops it when the test ends.
func Start(t testing.TB) *Member {
	t.Helper()
	return StartCluster(t, 1)[0]
}

// StartCluster runs an n-member cluster on loopback and stops it when the test ends.
func StartCluster(t testing.TB, n int) []*Member {
	t.Helper()
	ms := make([]*Member, n)
	var initial []string
	for i := range ms {
		cg, err := newGate()
		if err != nil {
			t.Fatal(err)
		}
		pg, err := newGate()
		if err != nil {
			cg.close()
			t.Fatal(err)
		}
		ms[i] = &Member{Name: fmt.Sprintf("m%d", i), ClientURL: "http://" + cg.addr(), client: cg, peer: pg}
		initial = append(initial, fmt.Sprintf("%s=http://%s", ms[i].Name, pg.addr()))
		t.Cleanup(func() {
			if ms[i].etcd == nil {
				cg.close()
				pg.close()
			}
		})
	}
	for _, m := range ms {
		cfg := config(t, m, strings.Join(initial, ","))
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			t.Fatalf("etcd %s: %v", m.Name, err)
		}
		m.etcd = e
		t.Cleanup(m.Close)
		m.client.serve(e.Clients[0].Addr().String())
		m.peer.serve(e.Peers[0].Addr().String())
	}
	deadline := time.After(startTimeout)
	for _, m := range ms {
		select {
		case <-m.etcd.Server.ReadyNotify():
		case err := <-m.etcd.Err():
			t.Fatalf("etcd %s: %v", m.Name, err)
		case <-deadline:
			t.Fatalf("etcd %s: not ready in %s", m.Name, startTimeout)
		}
	}
	return ms
}

func config(t testing.TB, m *Member, initial string) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = t.TempDir()
	anyPort, _ := url.Parse("http://127.0.0.1:0")
	cu, _ := url.Parse(m.ClientURL)
	pu, _ := url.Parse("http://" + m.peer.addr())
	// The member listens on ports of its own; everyone else knows only its gates.
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*anyPort}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*anyPort}, []url.URL{*pu}
	cfg.InitialCluster = initial
	cfg.InitialClusterToken = "etcdtest"
	cfg.LogLevel = "error"
	// Members log to nowhere: a closing member reports "server closed" as errors, and the
	// test reads failures from StartEtcd and ReadyNotify instead.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Nothing written here must survive a crash of the test machine.
	cfg.UnsafeNoFsync = true
	return cfg
}

// gate relays TCP connections to a backend while open, and drops them all when cut.
type gate struct {
	ln      net.Listener
	mu      sync.Mutex
	backend string
	open    bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newGate() (*gate, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &gate{ln: ln, conns: map[net.Conn]struct{}{}}, nil
}

func (g *gate) addr() string { return g.ln.Addr().String() }

// serve starts relaying to backend.
func (g *gate) serve(backend string) {
	g.mu.Lock()
	g.backend, g.open = backend, true
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := g.ln.Accept()
			if err != nil {
				return
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				g.relay(c)
			}()
		}
	}()
}

func (g *gate) track(cs ...net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return false
	}
	for _, c := range cs {
		g.conns[c] = struct{}{}
	}
	return true
}

func (g *gate) relay(c net.Conn) {
	g.mu.Lock()
	open, backend := g.open, g.backend
	g.mu.Unlock()
	if !open {
		c.Close()
		return
	}
	b, err := net.DialTimeout("tcp", backend, 5*time.Second)
	if err != nil || !g.track(c, b) {
		c.Close()
		if b != nil {
			b.Close()
		}
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done // etcd speaks HTTP/2 and gRPC: no half-close to preserve, one end ends both
	c.Close()
	b.Close()
	<-done
	g.mu.Lock()
	delete(g.conns, c)
	delete(g.conns, b)
	g.mu.Unlock()
}

func (g *gate) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = false
	for c := range g.conns {
		c.Close()
	}
}

func (g *gate) heal() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

func (g *gate) close() {
	g.ln.Close()
	g.cut()
	g.wg.Wait()
}
