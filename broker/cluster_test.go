package broker_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/broker"
	"maintproxy/certs"
	"maintproxy/cluster"
	"maintproxy/cluster/etcdtest"
	"maintproxy/cluster/peer/peertest"
	"maintproxy/config"
	"maintproxy/internal/refusal"
	"maintproxy/internal/testenv"
	"maintproxy/internal/testkit"
)

// member is one broker of an in-process cluster.
type member struct {
	*rig
	node string
	log  *testkit.Buffer
}

// clusterOpts shape startCluster.
type clusterOpts struct {
	brokers int
	systems []system
	// store makes the brokers take accounts, customers and limits from the store.
	store bool
	edit  func(i int, m map[string]any)
}

// startCluster runs an embedded etcd member and o.brokers brokers (b1, b2, …) on it, each
// with a cluster section on 127.0.0.1:0 and a 2 s lease; they run until the test ends.
func startCluster(t *testing.T, o clusterOpts) ([]*member, *etcdtest.Member) {
	t.Helper()
	m := etcdtest.Start(t)
	secret := filepath.Join(t.TempDir(), "cluster.secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s3cr3t-", 8)), 0o600); err != nil {
		t.Fatal(err)
	}
	h := hashes{}
	var out []*member
	for i := range o.brokers {
		node := fmt.Sprintf("b%d", i+1)
		r := &rig{dataDir: filepath.Join(t.TempDir(), "data"), hashes: h}
		conf := r.conf(t, o.systems...)
		conf["cluster"] = map[string]any{
			"node": node, "etcd": map[string]any{"endpoints": []string{m.ClientURL}},
			"peer": map[string]any{"listen": "127.0.0.1:0"}, "lease_ttl": "2s",
			"secret_file": secret, "drain_timeout": "8s",
		}
		if o.store {
			conf["cluster"].(map[string]any)["config"] = "store"
		}
		if o.edit != nil {
			o.edit(i, conf)
		}
		buf := &testkit.Buffer{}
		logger := slog.New(slog.NewTextHandler(io.MultiWriter(buf, testOutput(t, node)), &slog.HandlerOptions{Level: slog.LevelDebug}))
		b, err := broker.New(broker.Options{Config: parse(t, conf), Logger: logger, CertCheckInterval: 200 * time.Millisecond,
			PasswordCost: bcrypt.MinCost})
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		r.Broker = b
		r.ca = filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(r.ca, b.Certs().RootPEM(), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel, r.run = cancel, make(chan error, 1)
		go func() { r.run <- r.Run(ctx) }()
		t.Cleanup(func() { r.stop(t) })
		out = append(out, &member{rig: r, node: node, log: buf})
	}
	// Every broker registered and known to every other.
	for _, b := range out {
		waitFor(t, b.node+" sees every broker", func() bool {
			return len(b.Store().Directory().Brokers()) == len(out) && (o.store || b.Ready())
		})
	}
	return out, m
}

// webAddrs are the brokers' web addresses, an agent's broker_addrs.
func webAddrs(ms ...*member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.WebAddr().String())
	}
	return out
}

// clusterAgent runs an in-process agent for s dialling addrs (broker_addrs) with the given
// number of connections; services maps ports to targets (nil: remote access off).
func clusterAgent(t *testing.T, ca string, s system, addrs []string, connections int, services map[string]string) *agent {
	t.Helper()
	ra := map[string]any{"enabled": services != nil}
	if services != nil {
		ra["services"] = services
	}
	cfg, err := config.NewAgent(config.Agent{
		Broker: "https://admin." + domain, BrokerAddrs: addrs, Connections: connections, CAFile: ca,
		Customer: s.customer, System: s.name, Secret: secret(s.customer, s.name),
		RemoteAccess: config.RemoteAccess{Enabled: services != nil, Services: services},
		MaxBackoff:   time.Second, DialTimeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return runAgent(t, s, cfg)
}

// holders waits until the cluster's presence, as m sees it, shows s held by exactly nodes.
func (m *member) waitHolders(t *testing.T, s system, nodes ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s held by %v as %s sees it", s.id(), nodes, m.node), func() bool {
		got := map[string]bool{}
		for _, h := range m.Store().Presence().Holders(s.customer, s.name) {
			got[h.Node] = true
		}
		if len(got) != len(nodes) {
			return false
		}
		for _, n := range nodes {
			if !got[n] {
				return false
			}
		}
		return true
	})
}

// TestClusterForwardsTunnels: a CONNECT on a broker without the agent is carried to the
// broker that holds it, with half-close, and every refusal through the hop is the one the
// holder gives its own technicians: status, reason header and text.
func TestClusterForwardsTunnels(t *testing.T) {
	target := startEcho(t)
	refused := testenv.RefusedAddr(t, "127.0.0.1")
	ms, _ := startCluster(t, clusterOpts{brokers: 3, systems: []system{se1, se2, other, third}, edit: func(i int, m map[string]any) {
		m["limits"] = map[string]any{"per_system": 2}
	}})
	b1, b3 := ms[0], ms[2]
	clusterAgent(t, b1.caFile(), se1, webAddrs(b1), 1, map[string]string{"7": target.Addr(), "23": refused})
	clusterAgent(t, b1.caFile(), third, webAddrs(b1), 1, nil)
	b3.waitHolders(t, se1, "b1")
	b3.waitHolders(t, third, "b1")

	c := b3.mustConnect(t, "12345-SE1.maint."+domain+":7")
	roundTrip(t, c, "through the peer link")
	// Half-close across the hop: the echo target answers our FIN with its own after the
	// bytes, so everything comes back and then EOF.
	msg := strings.Repeat("half-close ", 50000)
	go func() {
		io.WriteString(c, msg)
		c.(*tls.Conn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != msg {
		t.Fatalf("after half-close: %d of %d bytes, %v", len(got), len(msg), err)
	}
	waitFor(t, "audit record with via=b1", func() bool { return b3.log.Contains("via=b1") })

	for _, row := range []struct{ name, target string }{
		{"port not offered", "12345-SE1.maint." + domain + ":3389"},
		{"target refused", "12345-SE1.maint." + domain + ":23"},
		{"remote access off", "55555.maint." + domain + ":22"},
		{"co-located off", "12345-se1-127.0.0.9.maint." + domain + ":7"},
		{"unknown system", "12345-se9.maint." + domain + ":7"},
		{"never connected", "67890.maint." + domain + ":7"},
	} {
		local, hop := b1.request(t, user, password, row.target), b3.request(t, user, password, row.target)
		if local.status == http.StatusOK || local.status != hop.status || local.body != hop.body ||
			local.header.Get(refusal.Header) != hop.header.Get(refusal.Header) {
			t.Errorf("%s: on the holder %d %s %q; through the hop %d %s %q", row.name,
				local.status, local.header.Get(refusal.Header), local.body, hop.status, hop.header.Get(refusal.Header), hop.body)
		}
	}
	// The per-system limit (2) is counted by the holder, wherever the tunnels come in.
	b3.mustConnect(t, "12345-SE1.maint."+domain+":7")
	ms[1].mustConnect(t, "12345-SE1.maint."+domain+":7")
	if r := b1.request(t, user, password, "12345-SE1.maint."+domain+":7"); r.status != http.StatusTooManyRequests {
		t.Errorf("third tunnel to a system with per_system 2, on the holder: %d %q", r.status, r.body)
	}
	if r := b3.request(t, user, password, "12345-SE1.maint."+domain+":7"); r.status != http.StatusTooManyRequests {
		t.Errorf("third tunnel to a system with per_system 2, through the hop: %d %q", r.status, r.body)
	}

	// The cluster's view: b3 holds no agent, yet counts se1 online.
	m := b3.metrics(t)
	if m["maintproxy_agents_online"] != 2 || m["maintproxy_agents_local"] != 0 || m["maintproxy_cluster_brokers"] != 3 || m["maintproxy_ready"] != 1 {
		t.Errorf("b3 metrics: online %v local %v brokers %v ready %v; want 2 0 3 1", m["maintproxy_agents_online"],
			m["maintproxy_agents_local"], m["maintproxy_cluster_brokers"], m["maintproxy_ready"])
	}
	// The access JSON on b3 shows se1 online with the switches its agent reported to b1.
	req, _ := http.NewRequest(http.MethodGet, "https://"+b3.WebAddr().String()+"/com/remoteproxy/access?format=json", nil)
	req.SetBasicAuth(user, password)
	resp, err := b3.webClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		Customers []struct {
			ID      string `json:"id"`
			Systems []struct {
				Name         string `json:"name"`
				Online       bool   `json:"online"`
				RemoteAccess bool   `json:"remote_access"`
			} `json:"systems"`
		} `json:"customers"`
	}
	json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	seen := map[string]bool{}
	for _, c := range view.Customers {
		for _, s := range c.Systems {
			seen[c.ID+"/"+s.Name] = true
			online := c.ID+"/"+s.Name == "12345/se1" || c.ID+"/"+s.Name == "55555/se1"
			if s.Online != online || (c.ID+"/"+s.Name == "12345/se1" && !s.RemoteAccess) {
				t.Errorf("b3's access JSON: %s/%s online %v remote access %v", c.ID, s.Name, s.Online, s.RemoteAccess)
			}
		}
	}
	if !seen["12345/se1"] {
		t.Errorf("b3's access JSON lists no 12345/se1: %+v", view)
	}
	if code, _, body := b3.get(t, b3.webClient(t), "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz on b3: %d %q", code, body)
	}
}

// TestClusterSharedLockout: a client address locked out of an account on one broker is
// locked out on the others too, and another address is not.
func TestClusterSharedLockout(t *testing.T) {
	ms, _ := startCluster(t, clusterOpts{brokers: 2, systems: []system{se1}})
	b1, b2 := ms[0], ms[1]
	target := "12345.maint." + domain + ":7"
	for i := range 3 { // limits.lockout.failures: distinct wrong passwords lock the pair
		b1.request(t, user, fmt.Sprintf("wrong-%d", i), target)
	}
	if r := b1.request(t, user, password, target); r.header.Get(refusal.Header) != string(refusal.Locked) {
		t.Fatalf("b1 after 3 wrong passwords: %d %q %q", r.status, r.header.Get(refusal.Header), r.body)
	}
	start := time.Now()
	waitFor(t, "lock honoured on b2", func() bool {
		r := b2.request(t, user, password, target)
		return r.status == http.StatusProxyAuthRequired && r.header.Get(refusal.Header) == string(refusal.Locked)
	})
	t.Logf("lock in force on b2 %v after b1 locked", time.Since(start).Round(time.Millisecond))
	// Another client address is not locked out, on either broker.
	d := &tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}},
		Config: &tls.Config{RootCAs: b2.caPool(t), ServerName: "maint." + domain}}
	c, err := d.Dial("tcp", b2.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cred := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", target, target, cred)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.Header.Get(refusal.Header) == string(refusal.Locked) {
		t.Errorf("from 127.0.0.2 on b2: %v %v; the lock covers another address", resp, err)
	}
}

// TestClusterConfigFromStore: with config: store a broker is not ready until a config is
// pushed, then applies every push; an invalid document is refused by every broker.
func TestClusterConfigFromStore(t *testing.T) {
	target := startEcho(t)
	ms, em := startCluster(t, clusterOpts{brokers: 2, systems: []system{se1}, store: true})
	b1, b2 := ms[0], ms[1]
	for _, m := range ms {
		if code, _, body := m.get(t, m.webClient(t), "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "config push") {
			t.Errorf("%s before any push: /readyz %d %q", m.node, code, body)
		}
	}
	cli, err := cluster.Dial(cluster.Options{Endpoints: []string{em.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	push := func(doc []byte) int64 {
		t.Helper()
		rev, err := cli.PushConfig(context.Background(), doc)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	file := b1.conf(t, se1)
	data := mustJSON(t, file)
	doc, err := config.SharedYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	rev := push(doc)
	for _, m := range ms {
		// Ready comes as soon as the config is in force; the directory entry follows.
		waitFor(t, m.node+" ready, publishing the pushed config's revision", func() bool {
			return m.Ready() && m.Store().Self().ConfigRevision == rev
		})
	}
	clusterAgent(t, b1.caFile(), se1, webAddrs(b1), 1, map[string]string{"7": target.Addr()})
	b2.waitHolders(t, se1, "b1")
	roundTrip(t, b2.mustConnect(t, "12345.maint."+domain+":7"), "with the pushed accounts")

	bad := []byte(strings.Replace(string(doc), "12345", "99999", 1)) // an account names an unknown customer
	badRev := push(bad)
	for _, m := range ms {
		waitFor(t, m.node+" refuses the bad config", func() bool { return m.log.Contains(fmt.Sprintf("revision=%d", badRev)) })
		if got := m.Store().Self().ConfigRevision; got != rev {
			t.Errorf("%s runs revision %d after a refused push, want %d", m.node, got, rev)
		}
	}
	roundTrip(t, b2.mustConnect(t, "12345.maint."+domain+":7"), "after a refused push")
	st, err := cli.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Brokers {
		if !b.Stale {
			t.Errorf("%s not reported stale while running revision %d of %d", b.Node, b.ConfigRevision, st.ConfigRevision)
		}
	}
}

// TestClusterStoreOutage: with etcd cut off the brokers report not ready but keep routing
// from the presence they last knew; when it is back they are ready again.
func TestClusterStoreOutage(t *testing.T) {
	target := startEcho(t)
	ms, em := startCluster(t, clusterOpts{brokers: 2, systems: []system{se1}})
	b1, b2 := ms[0], ms[1]
	clusterAgent(t, b1.caFile(), se1, webAddrs(b1), 1, map[string]string{"7": target.Addr()})
	b2.waitHolders(t, se1, "b1")
	em.Partition()
	for _, m := range ms {
		waitFor(t, m.node+" not ready without the store", func() bool { return !m.Ready() })
	}
	roundTrip(t, b2.mustConnect(t, "12345.maint."+domain+":7"), "while the store is gone")
	em.Heal()
	for _, m := range ms {
		waitFor(t, m.node+" ready again", func() bool { return m.Ready() })
	}
	// Leases that expired meanwhile took b1's presence with them until b1 writes it again.
	waitFor(t, "tunnel through b1 after the store came back", func() bool {
		r := b2.request(t, user, password, "12345.maint."+domain+":7")
		if r.status == http.StatusOK {
			roundTrip(t, r.conn, "after the store came back")
		}
		return r.status == http.StatusOK
	})
}

// TestClusterDrainAndFailover: a broker told to stop hands its idle agents to the others,
// keeps the one whose tunnel is open until the tunnel ends, is not ready meanwhile and
// refuses new agents; agents with two connections lose no CONNECT meanwhile.
func TestClusterDrainAndFailover(t *testing.T) {
	target := startEcho(t)
	var movers []system
	for i := range 8 {
		movers = append(movers, system{"77777", fmt.Sprintf("m%d", i+1)})
	}
	ms, _ := startCluster(t, clusterOpts{brokers: 3, systems: append([]system{se1, se2, other}, movers...)})
	b1, b2, b3 := ms[0], ms[1], ms[2]
	all := webAddrs(b1, b2, b3)
	svc := map[string]string{"7": target.Addr()}
	clusterAgent(t, b1.caFile(), se1, webAddrs(b1), 1, svc)
	clusterAgent(t, b1.caFile(), se2, webAddrs(b1), 1, svc)
	clusterAgent(t, b1.caFile(), other, all, 2, svc)
	for _, s := range movers {
		clusterAgent(t, b1.caFile(), s, all, 1, svc)
	}
	b3.waitHolders(t, se1, "b1")
	b3.waitHolders(t, se2, "b1")
	waitFor(t, "67890/se1 held twice", func() bool { return len(b3.Store().Presence().Holders(other.customer, other.name)) == 2 })
	var onB1 []system
	for _, s := range movers {
		waitFor(t, s.id().String()+" online", func() bool { return b3.Store().Presence().Online(s.customer, s.name) })
		if b1.Registry().Get(s.id()) != nil {
			onB1 = append(onB1, s)
		}
	}
	t.Logf("%d of %d movers on b1 before the drain", len(onB1), len(movers))

	open := b3.mustConnect(t, "12345-SE1.maint."+domain+":7")
	roundTrip(t, open, "before the drain")
	b1.cancel() // what SIGTERM does
	waitFor(t, "b1 not ready", func() bool { return !b1.Ready() })
	waitFor(t, "b1 published as draining", func() bool {
		bi, ok := b3.Store().Directory().Lookup("b1")
		return ok && bi.Draining
	})
	roundTrip(t, open, "during the drain")
	for i := 0; i < 20; i++ {
		r := b3.request(t, user, password, "67890.maint."+domain+":7")
		if r.status != http.StatusOK {
			t.Fatalf("CONNECT %d to a system with two connections during the drain: %d %q", i, r.status, r.body)
		}
		roundTrip(t, r.conn, "two connections")
		r.conn.Close()
	}
	for _, s := range onB1 {
		waitFor(t, s.id().String()+" moved off b1", func() bool {
			hs := b3.Store().Presence().Holders(s.customer, s.name)
			return len(hs) == 1 && hs[0].Node != "b1"
		})
	}
	// se2's agent knows only b1: it is refused while b1 drains.
	ag := b3.Store().Presence()
	waitFor(t, "12345/se2 refused by the draining broker", func() bool { return !ag.Online(se2.customer, se2.name) })
	select {
	case err := <-b1.run:
		t.Fatalf("b1 stopped with a tunnel open: %v", err)
	default:
	}
	open.Close()
	select {
	case err := <-b1.run:
		b1.run <- err
	case <-time.After(10 * time.Second):
		t.Fatal("b1 did not stop once its last tunnel ended")
	}
	b2.waitHolders(t, se1) // its only broker is gone: offline at once, not after the lease
	if !b1.log.Contains("drained") {
		t.Error("b1 did not log its drain")
	}
}

// TestClusterStrangerOnPeerPort: a TLS client whose certificate is not published gets no
// link.
func TestClusterStrangerOnPeerPort(t *testing.T) {
	ms, _ := startCluster(t, clusterOpts{brokers: 1, systems: []system{se1}})
	addr := ms[0].Store().Self().PeerAddr
	if peertest.LinkError(addr) == nil {
		t.Fatal("a stranger without a client certificate got a peer link")
	}
	waitFor(t, "refusal logged", func() bool { return ms[0].log.Contains("peer link refused") })
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClusterRegenerateCA: `certs regenerate` on the store reaches every broker: the next
// identity CA is published by all (agents fetch it from any), and with --now every broker
// serves leaves from it while the old one stays published.
func TestClusterRegenerateCA(t *testing.T) {
	ms, etcd := startCluster(t, clusterOpts{brokers: 2})
	roots := func(m *member) int { return strings.Count(string(m.Certs().RootPEM()), "BEGIN CERTIFICATE") }
	if roots(ms[0]) != 1 || string(ms[0].Certs().RootPEM()) != string(ms[1].Certs().RootPEM()) {
		t.Fatal("the brokers do not serve one identity CA")
	}
	opts, err := cluster.FromConfig(&ms[0].Config().Cluster)
	if err != nil {
		t.Fatal(err)
	}
	opts.Endpoints = []string{etcd.ClientURL}
	cli, err := cluster.Dial(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := certs.RegenerateIn(ms[0].Config(), broker.SharedCAs(cli), time.Now(), false); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		waitFor(t, m.node+" publishes the next CA", func() bool { return roots(m) == 2 })
	}
	if string(ms[0].Certs().RootPEM()) != string(ms[1].Certs().RootPEM()) {
		t.Fatal("the brokers publish different CAs")
	}
	old := ms[0].Certs().Describe().Roots[0].SHA256

	if _, err := certs.RegenerateIn(ms[0].Config(), broker.SharedCAs(cli), time.Now(), true); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		waitFor(t, m.node+" serves leaves from the new CA", func() bool {
			d := m.Certs().Describe()
			return len(d.Served) > 0 && len(d.Served[0].Chain) == 2 && d.Served[0].Chain[1].SHA256 != old && roots(m) == 2
		})
	}
}
