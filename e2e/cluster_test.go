package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"maintproxy/cluster/peer"
	"maintproxy/cluster/peer/peertest"
	"maintproxy/config"
	"maintproxy/internal/refusal"
	"maintproxy/internal/testenv"
	"maintproxy/tunnel"
)

// waitUntil polls cond every 20 ms until it holds, failing the test after timeout.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(testenv.Scale(timeout))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// waitHeld waits until the store shows customer/system held by exactly nodes.
func waitHeld(t *testing.T, c *testenv.Cluster, customer, system string, nodes ...string) {
	t.Helper()
	slices.Sort(nodes)
	waitUntil(t, fmt.Sprintf("%s/%s held by %v", customer, system, nodes), 20*time.Second, func() bool {
		got := c.Holders(t, customer, system)
		slices.Sort(got)
		return slices.Equal(got, nodes)
	})
}

// waitSeenOnline waits until every broker's own view shows customer/system online: the
// store may have the presence before a broker's watch has brought it into memory.
func waitSeenOnline(t *testing.T, c *testenv.Cluster, user, pass, customer, system string) {
	t.Helper()
	for i, b := range c.Brokers {
		waitUntil(t, fmt.Sprintf("b%d shows %s/%s online", i+1, customer, system), 20*time.Second, func() bool {
			req, _ := http.NewRequest(http.MethodGet, "https://"+b.WebAddr+"/com/remoteproxy/access/"+customer+"/"+system, nil)
			req.SetBasicAuth(user, pass)
			req.Header.Set("Accept", "application/json")
			resp, err := b.WebClient(t).Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var page struct {
				System struct {
					Online bool `json:"online"`
				} `json:"system"`
			}
			return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&page) == nil && page.System.Online
		})
	}
}

// clusterAgent starts an agent process of the cluster; addrs are its broker_addrs.
func clusterAgent(t *testing.T, c *testenv.Cluster, a testenv.Agent, addrs []string, connections int) *testenv.Proc {
	t.Helper()
	a.BrokerAddrs, a.Connections, a.NoWait, a.CAFile = addrs, connections, true, c.CAFile
	return c.Brokers[0].StartAgent(t, a)
}

// peerAddr is the peer listener a broker logged at start.
func peerAddr(t *testing.T, b *testenv.Env) string {
	t.Helper()
	return b.Proc().WaitLog(t, 5*time.Second, func(r testenv.Record) bool { return r.Msg() == "broker started" }).Str("peer")
}

// TestClusterForwarding: three brokers on a three-member etcd serve one identity CA; a
// CONNECT on b3 reaches an agent held by b1 (16 MiB each way with half-close, checked by
// SHA-256), every row of the failure table looks the same through the hop, a lockout on b1
// holds on b2, and a stranger gets no link on the peer port.
func TestClusterForwarding(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Brokers: 3})
	c.WaitReady(t, 20*time.Second)
	b1, b2, b3 := c.Brokers[0], c.Brokers[1], c.Brokers[2]
	ca, _ := os.ReadFile(c.CAFile)
	for i, b := range c.Brokers {
		if !bytes.Equal(testenv.ServedCA(t, b.WebAddr), ca) {
			t.Errorf("b%d serves another identity CA than b1", i+1)
		}
	}

	const size = 16 << 20
	type sums struct{ got, sent [32]byte }
	results := make(chan sums, 1)
	sink := testenv.StartTCP(t, "127.0.0.1:0", func(conn net.Conn) {
		var s sums
		h := sha256.New()
		io.Copy(h, conn) // to the client's half-close
		copy(s.got[:], h.Sum(nil))
		s.sent = sendRandom(conn, size, 2)
		conn.(*net.TCPConn).CloseWrite()
		results <- s
	})
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	colo := testenv.StartEcho(t, "127.0.0.9:0")
	_, cp, _ := net.SplitHostPort(colo)
	var coloPort int
	fmt.Sscan(cp, &coloPort)
	closed := testenv.RefusedAddr(t, "127.0.0.1")
	only1 := []string{b1.WebAddr}
	clusterAgent(t, c, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true,
		Services: map[int]string{7: echo, 23: closed, 5001: sink}}, only1, 1)
	clusterAgent(t, c, testenv.Agent{Customer: "12345", System: "SE2", RemoteAccess: true, Colocated: true,
		Services: map[int]string{7: echo}, Tunnels: []config.Tunnel{{Application: "TELNET", IP: "127.0.0.9", Port: coloPort}}}, only1, 1)
	clusterAgent(t, c, testenv.Agent{Customer: "55555", System: "SE1"}, only1, 1)
	for _, s := range [][2]string{{"12345", "se1"}, {"12345", "se2"}, {"55555", "se1"}} {
		waitHeld(t, c, s[0], s[1], "b1")
	}
	for _, s := range []string{"se1", "se2"} {
		waitSeenOnline(t, c, "resa", "pass-a", "12345", s)
	}
	waitSeenOnline(t, c, "resb", "pass-b", "55555", "se1")

	t.Run("16 MiB each way with half-close", func(t *testing.T) {
		mark := b3.Proc().Mark()
		r := b3.Connect(t, "resa", "pass-a", "12345.maint."+b3.Domain+":5001")
		if r.Status != http.StatusOK {
			t.Fatalf("CONNECT on b3: %d %s", r.Status, r.Body)
		}
		sent := sendRandom(r.Conn, size, 1)
		r.Conn.(*tls.Conn).CloseWrite()
		h := sha256.New()
		r.Conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		if n, err := io.Copy(h, r.Conn); err != nil || n != size {
			t.Fatalf("received %d of %d bytes after half-close: %v", n, size, err)
		}
		var got [32]byte
		copy(got[:], h.Sum(nil))
		s := <-results
		if s.got != sent || got != s.sent {
			t.Errorf("corrupted through the hop: up %x/%x, down %x/%x", s.got, sent, got, s.sent)
		}
		rec := b3.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool {
			return r.Msg() == "tunnel" && r.Str("result") == "ok"
		})
		if rec.Str("via") != "b1" || rec.Num("bytes_up") != size || rec.Num("bytes_down") != size {
			t.Errorf("b3's audit record: %v", rec)
		}
	})

	t.Run("failure table through the hop", func(t *testing.T) {
		var dialled atomic.Int32
		trap := testenv.StartTCP(t, "127.0.0.1:0", func(net.Conn) { dialled.Add(1) })
		rows, reasons := failureRows(b3.Domain, trap, coloPort)
		rows = append(rows, failureRow{"target timed out", "resa", "pass-a", "CONNECT", "67890.maint." + b3.Domain + ":443", 504, "did not answer in time"})
		reasons["target timed out"] = refusal.TargetTimeout
		for _, row := range rows {
			if row.name == "target timed out" { // after "system never connected" has run
				clusterAgent(t, c, testenv.Agent{Customer: "67890", System: "SE1", RemoteAccess: true,
					Services: map[int]string{443: testenv.UnansweredAddr(t)}}, only1, 1)
				waitHeld(t, c, "67890", "se1", "b1")
				waitSeenOnline(t, c, "resa", "pass-a", "67890", "se1")
			}
			r := b3.Request(t, row.user, row.pass, row.method, row.target)
			if r.Status != row.status || !strings.Contains(r.Body, row.body) || r.Header.Get(refusal.Header) != string(reasons[row.name]) {
				t.Errorf("%s: got %d %q %q; want %d containing %q, %q", row.name, r.Status, r.Header.Get(refusal.Header), r.Body,
					row.status, row.body, reasons[row.name])
			}
		}
		if dialled.Load() != 0 {
			t.Error("a broker dialled a raw address")
		}
	})

	t.Run("lockout on b1 holds on b2", func(t *testing.T) {
		target := "12345.maint." + b1.Domain + ":7"
		for i := range 3 { // limits.lockout.failures: distinct wrong passwords lock the pair
			b1.Connect(t, "resb", fmt.Sprintf("wrong-%d", i), target)
		}
		if r := b1.Connect(t, "resb", "pass-b", target); r.Header.Get(refusal.Header) != string(refusal.Locked) {
			t.Fatalf("b1 after 3 wrong passwords: %d %q", r.Status, r.Body)
		}
		took := waitUntil(t, "lock honoured on b2", 5*time.Second, func() bool {
			return b2.Connect(t, "resb", "pass-b", target).Header.Get(refusal.Header) == string(refusal.Locked)
		})
		t.Logf("lock in force on b2 %v after b1 reported it", took.Round(time.Millisecond))
	})

	t.Run("stranger on the peer port", func(t *testing.T) {
		id, err := peer.NewIdentity("stranger")
		if err != nil {
			t.Fatal(err)
		}
		mark := b2.Proc().Mark()
		if peertest.LinkError(peerAddr(t, b2), id.Certificate()) == nil {
			t.Fatal("a stranger's certificate got a peer link")
		}
		b2.Proc().WaitLogAfter(t, mark, 5*time.Second, func(r testenv.Record) bool { return r.Msg() == "peer link refused" })
	})
}

// connectLoop opens a CONNECT to authority through b every few milliseconds until stop,
// with an echo round trip on each, and records the longest time without a working
// CONNECT and how many failed.
type connectLoop struct {
	mu       sync.Mutex
	lastOK   time.Time
	firstBad time.Time
	maxGap   time.Duration
	failed   int    // refused or not answered
	broken   int    // answered 200, then the tunnel broke (its holder died)
	why      string // the first failure's answer or error
	ok       int
	slowest  time.Duration // of the CONNECTs that worked
	done     chan struct{}
}

func startConnectLoop(t *testing.T, b *testenv.Env, authority string, stop <-chan struct{}) *connectLoop {
	l := &connectLoop{lastOK: time.Now(), done: make(chan struct{})}
	pool := b.CAPool(t)
	go func() {
		defer close(l.done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			began := time.Now()
			ok, answered, why := tryConnect(b.ProxyAddr, pool, authority)
			now := time.Now()
			l.mu.Lock()
			if ok {
				l.slowest = max(l.slowest, now.Sub(began))
				if !l.firstBad.IsZero() {
					l.maxGap = max(l.maxGap, now.Sub(l.firstBad))
					l.firstBad = time.Time{}
				}
				l.ok++
				l.lastOK = now
			} else if answered {
				// Set up before its holder died, then cut with it: not a gap for new
				// CONNECTs (that the cut is prompt is checked on its own).
				l.broken++
			} else {
				if l.firstBad.IsZero() {
					l.firstBad = now
				}
				l.failed++
				l.why = cmp.Or(l.why, why)
			}
			l.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return l
}

func (l *connectLoop) result() (gap time.Duration, ok, failed int) {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.firstBad.IsZero() {
		l.maxGap = max(l.maxGap, time.Since(l.firstBad))
	}
	return l.maxGap, l.ok, l.failed
}

// tryConnect opens one tunnel and echoes a line through it; answered tells whether the
// CONNECT got its 200, why what went wrong.
func tryConnect(proxy string, pool *x509.CertPool, authority string) (ok, answered bool, why string) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", proxy,
		&tls.Config{RootCAs: pool, ServerName: "maint." + testenv.Domain})
	if err != nil {
		return false, false, err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic cmVzYTpwYXNzLWE=\r\n\r\n", authority, authority)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false, false, err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return false, false, resp.Status + ": " + strings.TrimSpace(string(body))
	}
	io.WriteString(c, "ping\n")
	got := make([]byte, 5)
	if _, err = io.ReadFull(resp.Body, got); err != nil || string(got) != "ping\n" {
		return false, true, fmt.Sprintf("echo after 200: %q %v", got, err)
	}
	return true, true, ""
}

// TestClusterFailover kills the broker holding agents (kill -9) while technicians'
// CONNECTs run on another broker, for an agent with two connections and one with one, and
// measures the longest time without a working CONNECT. A tunnel through the dead broker
// ends at once.
func TestClusterFailover(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Brokers: 3})
	c.WaitReady(t, 20*time.Second)
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	all := c.WebAddrs()
	clusterAgent(t, c, testenv.Agent{Customer: "12345", System: "SE2", RemoteAccess: true, Services: map[int]string{7: echo}}, all, 2)
	clusterAgent(t, c, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{7: echo}}, all, 1)
	waitUntil(t, "12345/se2 held twice", 20*time.Second, func() bool { return len(c.Holders(t, "12345", "se2")) == 2 })
	waitUntil(t, "12345/se1 held", 20*time.Second, func() bool { return len(c.Holders(t, "12345", "se1")) == 1 })

	// connections: 2 — kill the holder that carries the tunnels (the older session).
	holders := c.Holders(t, "12345", "se2")
	victim := preferredHolder(t, c, "12345", "se2")
	observer := otherThan(c, holders...)
	if observer == nil {
		observer = c.Broker(otherNode(holders, victim))
	}
	stop := make(chan struct{})
	loop := startConnectLoop(t, observer, "12345-se2.maint."+testenv.Domain+":7", stop)
	waitUntil(t, "CONNECTs flowing", 10*time.Second, func() bool { loop.mu.Lock(); defer loop.mu.Unlock(); return loop.ok > 5 })
	c.Broker(victim).Proc().Kill()
	// Measure until the dead broker's lease has expired and its presence is gone.
	waitUntil(t, victim+"'s presence gone", 15*time.Second, func() bool { return !slices.Contains(c.Holders(t, "12345", "se2"), victim) })
	close(stop)
	gap, ok, failed := loop.result()
	t.Logf("connections: 2, killed %s: %d CONNECTs ok, %d failed, %d cut after their 200 (their holder died), longest gap %v; first failure: %s", victim, ok, failed, loop.broken, gap.Round(time.Millisecond), cmp.Or(loop.why, "none"))
	if gap > 2*time.Second {
		t.Errorf("connections: 2: a gap of %v without a working CONNECT", gap)
	}
	if failed > 0 {
		logRefusals(t, observer)
	}

	// connections: 1 — kill se1's holder (if the first kill took it, it is back elsewhere).
	waitUntil(t, "12345/se1 held by a live broker", 20*time.Second, func() bool {
		h := c.Holders(t, "12345", "se1")
		return len(h) == 1 && h[0] != victim
	})
	victim2 := c.Holders(t, "12345", "se1")[0]
	observer2 := c.Broker(otherNode([]string{victim, victim2}, ""))
	open := observer2.Connect(t, "resa", "pass-a", "12345-se1.maint."+testenv.Domain+":7")
	if open.Status != http.StatusOK {
		t.Fatalf("tunnel through %s: %d %s", victim2, open.Status, open.Body)
	}
	assertEcho(t, open.Conn, []byte("before the kill"))
	stop2 := make(chan struct{})
	loop2 := startConnectLoop(t, observer2, "12345-se1.maint."+testenv.Domain+":7", stop2)
	waitUntil(t, "CONNECTs flowing", 10*time.Second, func() bool { loop2.mu.Lock(); defer loop2.mu.Unlock(); return loop2.ok > 5 })
	killed := time.Now()
	c.Broker(victim2).Proc().Kill()
	open.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, open.Conn)
	if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
		t.Error("a tunnel through the killed broker hung")
	}
	t.Logf("tunnel through the killed broker ended %v after the kill", time.Since(killed).Round(time.Millisecond))
	waitUntil(t, "12345/se1 back", 15*time.Second, func() bool {
		h := c.Holders(t, "12345", "se1")
		return slices.Contains(h, observer2Node(c, observer2))
	})
	waitUntil(t, "CONNECTs flowing again", 10*time.Second, func() bool {
		loop2.mu.Lock()
		defer loop2.mu.Unlock()
		return loop2.lastOK.After(killed) && loop2.firstBad.IsZero()
	})
	close(stop2)
	gap2, ok2, failed2 := loop2.result()
	t.Logf("connections: 1, killed %s: %d CONNECTs ok, %d failed, %d cut after their 200 (their holder died), longest gap %v; first failure: %s", victim2, ok2, failed2, loop2.broken, gap2.Round(time.Millisecond), cmp.Or(loop2.why, "none"))
	if gap2 > 10*time.Second {
		t.Errorf("connections: 1: a gap of %v without a working CONNECT", gap2)
	}
}

// logRefusals logs what b tried for each tunnel no broker could carry.
func logRefusals(t *testing.T, b *testenv.Env) {
	for _, r := range b.Proc().Records() {
		if m := r.Msg(); m == "no broker could carry the tunnel" || m == "holder could not carry the tunnel; trying another" {
			t.Logf("%s: %s %s holders=%q reread=%q unreachable=%q node=%q err=%q", r.Str("time"), m, r.Str("system"),
				r.Str("holders"), r.Str("holders_reread"), r.Str("unreachable"), r.Str("node"), r.Str("err"))
		}
	}
}

// TestClusterHolderHangs stops the holder that carries a system's tunnels (SIGSTOP: its
// sockets stay open and nothing answers, like a hung broker or a host gone without a reset)
// while technicians' CONNECTs run on another broker: with connections: 2 none fails. The
// first waits for the peer link's answer bound (3 s), the others go to the other holder at
// once, until the stopped broker's lease expires.
func TestClusterHolderHangs(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Brokers: 3, LeaseTTL: 8 * time.Second})
	c.WaitReady(t, 20*time.Second)
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	clusterAgent(t, c, testenv.Agent{Customer: "12345", System: "SE2", RemoteAccess: true, Services: map[int]string{7: echo}}, c.WebAddrs(), 2)
	waitUntil(t, "12345/se2 held twice", 20*time.Second, func() bool { return len(c.Holders(t, "12345", "se2")) == 2 })
	holders := c.Holders(t, "12345", "se2")
	victim := preferredHolder(t, c, "12345", "se2")
	observer := otherThan(c, holders...)
	stop := make(chan struct{})
	loop := startConnectLoop(t, observer, "12345-se2.maint."+testenv.Domain+":7", stop)
	waitUntil(t, "CONNECTs flowing", 10*time.Second, func() bool { loop.mu.Lock(); defer loop.mu.Unlock(); return loop.ok > 5 })
	stopped := c.Broker(victim).Proc()
	if err := stopped.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopped.Kill)
	waitUntil(t, victim+"'s presence gone", 30*time.Second, func() bool { return !slices.Contains(c.Holders(t, "12345", "se2"), victim) })
	close(stop)
	gap, ok, failed := loop.result()
	t.Logf("stopped %s: %d CONNECTs ok, %d failed, slowest %v, longest gap %v; first failure: %s", victim, ok, failed,
		loop.slowest.Round(time.Millisecond), gap.Round(time.Millisecond), cmp.Or(loop.why, "none"))
	if failed > 0 {
		logRefusals(t, observer)
		t.Errorf("%d CONNECTs failed while a holder hung and the other was fine", failed)
	}
	if loop.slowest > 4500*time.Millisecond {
		t.Errorf("a CONNECT took %v while a holder hung (the bound is 3 s)", loop.slowest)
	}
}

// preferredHolder is the holder whose session is oldest, the one every broker routes to.
func preferredHolder(t *testing.T, c *testenv.Cluster, customer, system string) string {
	t.Helper()
	best, bestAt := "", time.Time{}
	for _, node := range c.Holders(t, customer, system) {
		b := c.Broker(node)
		r, ok := b.Proc().FindAfter(0, 0, func(r testenv.Record) bool {
			return r.Msg() == "agent connected" && r.Str("identity") == customer+"/"+system
		})
		if !ok {
			continue
		}
		at, _ := time.Parse(time.RFC3339Nano, r.Str("time"))
		if best == "" || at.Before(bestAt) {
			best, bestAt = node, at
		}
	}
	return best
}

// otherThan returns a broker of c that is none of nodes.
func otherThan(c *testenv.Cluster, nodes ...string) *testenv.Env {
	for i, n := range c.Nodes {
		if !slices.Contains(nodes, n) {
			return c.Brokers[i]
		}
	}
	return nil
}

func otherNode(nodes []string, not string) string {
	for _, n := range []string{"b1", "b2", "b3"} {
		if !slices.Contains(nodes, n) && n != not {
			return n
		}
	}
	for _, n := range nodes {
		if n != not {
			return n
		}
	}
	return ""
}

func observer2Node(c *testenv.Cluster, b *testenv.Env) string {
	for i, e := range c.Brokers {
		if e == b {
			return c.Nodes[i]
		}
	}
	return ""
}

// TestClusterConfigPushAndDrain: with config: store the brokers are not ready until
// `maintproxy config push`, which reaches every broker; an invalid file is refused by the
// command, and a push without quorum too; `cluster status` lists the brokers and fails
// while one runs a stale config. SIGTERM drains a broker: not ready, its open tunnel keeps
// working until closed, then it exits.
func TestClusterConfigPushAndDrain(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Brokers: 3, Store: true})
	bin := testenv.BinPath(t, "maintproxy")
	b1, b2 := c.Brokers[0], c.Brokers[1]
	resp, err := b1.WebClient(t).Get("https://" + b1.WebAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz before any push: %d", resp.StatusCode)
	}

	// b1's own file holds the accounts and customers testenv wrote: that is what is pushed.
	marks := make([]int, len(c.Brokers))
	for i, b := range c.Brokers {
		marks[i] = b.Proc().Mark()
	}
	began := time.Now()
	out, err := exec.Command(bin, "config", "push", "--config", b1.ConfigPath).CombinedOutput()
	if err != nil {
		t.Fatalf("config push: %v\n%s", err, out)
	}
	var slowest time.Duration
	for i, b := range c.Brokers {
		r := b.Proc().WaitLogAfter(t, marks[i], 10*time.Second, func(r testenv.Record) bool {
			return r.Msg() == "configuration from the store in force"
		})
		at, _ := time.Parse(time.RFC3339Nano, r.Str("time"))
		slowest = max(slowest, at.Sub(began))
	}
	t.Logf("config push in force on all 3 brokers %v after the command started (%s)", slowest.Round(time.Millisecond), strings.TrimSpace(string(out)))
	c.WaitReady(t, 10*time.Second)
	out, err = exec.Command(bin, "cluster", "status", "--config", b1.ConfigPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "b1") || !strings.Contains(string(out), "b3") {
		t.Errorf("cluster status: %v\n%s", err, out)
	}
	t.Logf("cluster status:\n%s", out)

	// `certs regenerate` on one broker's config makes the next identity CA in the store:
	// every broker publishes it (an agent may fetch it from any), and `certs show` on another
	// broker's config lists it.
	for i, b := range c.Brokers {
		marks[i] = b.Proc().Mark()
	}
	if out, err := exec.Command(bin, "certs", "regenerate", "--config", b1.ConfigPath).CombinedOutput(); err != nil {
		t.Fatalf("certs regenerate: %v\n%s", err, out)
	}
	for i, b := range c.Brokers {
		b.Proc().WaitLogAfter(t, marks[i], 20*time.Second, func(r testenv.Record) bool {
			return r.Msg() == "reloaded the identity CAs" && r.Str("next") != ""
		})
		resp, err := b.WebClient(t).Get("https://" + b.WebAddr + "/agent/v1/ca")
		if err != nil {
			t.Fatal(err)
		}
		roots, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if n := bytes.Count(roots, []byte("BEGIN CERTIFICATE")); n != 2 {
			t.Errorf("broker %d publishes %d identity CAs after regenerate, want 2", i+1, n)
		}
	}
	out, err = exec.Command(bin, "certs", "show", "--config", b2.ConfigPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cluster store") || !strings.Contains(string(out), "next") {
		t.Errorf("certs show on the cluster: %v\n%s", err, out)
	}

	// An invalid file is refused by the command, naming the field; nothing is written.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	raw, _ := os.ReadFile(b1.ConfigPath)
	os.WriteFile(bad, bytes.Replace(raw, []byte(`"12345"`), []byte(`"99999"`), 1), 0o600)
	out, err = exec.Command(bin, "config", "push", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "accounts[0].customers[0]") {
		t.Errorf("push of an invalid file: %v\n%s", err, out)
	}

	// A document the brokers refuse (written behind the command's back) leaves them on the
	// old revision: status says they are stale and exits non-zero.
	cli := c.Etcd.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = cli.Put(ctx, "/maintproxy/config", "accounts: [{username: x}]\n")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	b2.Proc().WaitLog(t, 10*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "configuration in the store refused; keeping the previous one"
	})
	out, err = exec.Command(bin, "cluster", "status", "--config", b1.ConfigPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "STALE") {
		t.Errorf("cluster status with stale brokers: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "config", "push", "--config", b1.ConfigPath).CombinedOutput(); err != nil {
		t.Fatalf("push again: %v\n%s", err, out)
	}

	// Without quorum nothing is pushed.
	c.Etcd.Members[1].Signal(syscall.SIGSTOP)
	c.Etcd.Members[2].Signal(syscall.SIGSTOP)
	start := time.Now()
	out, err = exec.Command(bin, "config", "push", "--config", b1.ConfigPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "quorum") {
		t.Errorf("push without quorum: %v\n%s", err, out)
	}
	t.Logf("push without quorum refused after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	c.Etcd.Members[1].Signal(syscall.SIGCONT)
	c.Etcd.Members[2].Signal(syscall.SIGCONT)
	c.WaitReady(t, 30*time.Second)

	// Drain: b1 holds the agent; a technician's tunnel runs through b2 and b1.
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	clusterAgent(t, c, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{7: echo}}, []string{b1.WebAddr}, 1)
	waitHeld(t, c, "12345", "se1", "b1")
	waitSeenOnline(t, c, "resa", "pass-a", "12345", "se1")
	r := b2.Connect(t, "resa", "pass-a", "12345.maint."+testenv.Domain+":7")
	if r.Status != http.StatusOK {
		t.Fatalf("CONNECT through b2 to b1: %d %s", r.Status, r.Body)
	}
	assertEcho(t, r.Conn, []byte("before SIGTERM"))
	// After the mark: the quorum loss above logged "ready false" too.
	mark := b1.Proc().Mark()
	b1.Proc().Signal(syscall.SIGTERM)
	b1.Proc().WaitLogAfter(t, mark, 5*time.Second, func(r testenv.Record) bool { return r.Msg() == "readiness changed" && r.Str("ready") == "false" })
	hc := b1.WebClient(t)
	if resp, err := hc.Get("https://" + b1.WebAddr + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %v %v", resp, err)
	}
	if resp, err := hc.Get("https://" + b1.WebAddr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz while draining: %v %v", resp, err)
	}
	assertEcho(t, r.Conn, []byte("during the drain"))
	select {
	case <-b1.Proc().Done():
		t.Fatal("b1 exited with a tunnel open")
	case <-time.After(500 * time.Millisecond):
	}
	r.Conn.Close()
	select {
	case <-b1.Proc().Done():
		if err := b1.Proc().Err(); err != nil {
			t.Errorf("b1 exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("b1 did not exit after its last tunnel ended")
	}
	waitHeld(t, c, "12345", "se1") // presence left with the lease, at once
}

// gate is a TCP relay to a broker that, until opened, accepts and at once closes every
// connection: an address an agent knows whose broker turns up later.
type gate struct {
	addr string
	to   atomic.Pointer[string]
}

func startGate(t *testing.T) *gate {
	g := &gate{}
	g.addr = testenv.StartTCP(t, "127.0.0.1:0", func(c net.Conn) {
		to := g.to.Load()
		if to == nil {
			return
		}
		u, err := net.Dial("tcp", *to)
		if err != nil {
			return
		}
		defer u.Close()
		done := make(chan struct{})
		go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite(); close(done) }()
		io.Copy(c, u)
		c.(*net.TCPConn).CloseWrite()
		<-done
	})
	return g
}

func (g *gate) open(to string) { g.to.Store(&to) }

// TestClusterAgentsFailOver: 200 agents (in this process) held by b1 and knowing b2 fail
// over to b2 when b1 is killed; the time until all are back is reported.
func TestClusterAgentsFailOver(t *testing.T) {
	const n = 200
	cust := testenv.Customer{ID: "90000"}
	for i := range n {
		cust.Systems = append(cust.Systems, fmt.Sprintf("a%d", i+1))
	}
	accounts := []testenv.Account{{Username: "resa", Password: "pass-a", Customers: []string{"90000"}}}
	// All agents come from 127.0.0.1 here: lift the per-address login rate meant for
	// strangers on the Internet.
	limits := map[string]any{"auth": map[string]any{"per_minute": 100000, "burst": 1000}}
	// Machine-made secrets with their fast (HMAC) hashes, as `maintproxy agent-secret` makes.
	secrets := map[string]string{}
	var systems []map[string]any
	for i, sys := range cust.Systems {
		secret, hash, err := config.NewAgentSecret()
		if err != nil {
			t.Fatal(err)
		}
		secrets[sys] = secret
		systems = append(systems, map[string]any{"name": sys, "primary": i == 0, "agent_secret_hash": hash})
	}
	customers := []map[string]any{{"id": cust.ID, "systems": systems}}
	c := testenv.StartCluster(t, testenv.ClusterOptions{Brokers: 2, Options: testenv.Options{Accounts: accounts,
		Customers: []testenv.Customer{cust}, Extra: map[string]any{"limits": limits, "customers": customers}}})
	c.WaitReady(t, 20*time.Second)
	b1, b2 := c.Brokers[0], c.Brokers[1]
	g := startGate(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, sys := range cust.Systems {
		cfg, err := config.NewAgent(config.Agent{Broker: "https://admin." + testenv.Domain, BrokerAddrs: []string{b1.WebAddr, g.addr},
			CAFile: c.CAFile, Customer: cust.ID, System: sys, Secret: secrets[sys],
			RemoteAccess: config.RemoteAccess{Enabled: true}, MaxBackoff: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ag, err := tunnel.NewAgent(cfg, slog.New(slog.DiscardHandler), "test")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); ag.Run(ctx) }()
	}
	up := waitUntil(t, "200 agents on b1", 60*time.Second, func() bool { return c.HeldBy(t, "b1") == n })
	t.Logf("%d agents logged in to b1 in %v", n, up.Round(time.Millisecond))
	g.open(b2.WebAddr)
	b1.Proc().Kill()
	back := waitUntil(t, "200 agents on b2", 30*time.Second, func() bool { return c.HeldBy(t, "b2") == n })
	t.Logf("%d agents back through b2 %v after b1 was killed", n, back.Round(time.Millisecond))
}
