package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/broker"
	"maintproxy/cluster/etcdtest"
	"maintproxy/config"
)

// clusterRig is two brokers on one embedded etcd member; the agent is held by the first,
// so local tunnels come in on the first and forwarded ones on the second.
type clusterRig struct {
	local, forwarded *rig
	brokers          []*broker.Broker
	secretHash       string
}

func startClusterRig(b *testing.B, systems int, hash string) *clusterRig {
	b.Helper()
	m := etcdtest.Start(b)
	dir := b.TempDir()
	secret := filepath.Join(dir, "cluster.secret")
	os.WriteFile(secret, []byte(strings.Repeat("bench-secret-", 4)), 0o600)
	pw, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if hash == "" {
		hash = string(pw)
	}
	sys := []config.System{{Name: "se1", Primary: true, AgentSecretHash: hash}}
	for i := 1; i < systems; i++ {
		sys = append(sys, config.System{Name: fmt.Sprintf("s%d", i), AgentSecretHash: hash})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var done []chan struct{}
	b.Cleanup(func() {
		cancel()
		for _, d := range done {
			<-d
		}
	})
	cr := &clusterRig{secretHash: hash}
	var rigs []*rig
	for i := range 2 {
		cfg, err := config.NewBroker(config.Broker{
			Domain: "example.test", DataDir: filepath.Join(dir, fmt.Sprint(i)),
			Listen:    config.Listen{Proxy: "127.0.0.1:0", Web: "127.0.0.1:0"},
			Accounts:  []config.Account{{Username: "u", PasswordHash: string(pw), Customers: []string{"12345"}}},
			Customers: []config.Customer{{ID: "12345", Systems: sys}},
			// Every agent and technician comes from 127.0.0.1 here: no per-address login rate.
			Limits: config.Limits{PerAccount: 1 << 20, PerSystem: 1 << 20, Auth: config.AuthLimits{PerMinute: 1 << 20, Burst: 1 << 16}},
			Cluster: config.Cluster{Node: fmt.Sprintf("b%d", i+1), Etcd: config.ClusterEtcd{Endpoints: []string{m.ClientURL}},
				Peer: config.ClusterPeer{Listen: "127.0.0.1:0"}, LeaseTTL: 2 * time.Second, SecretFile: secret},
		})
		if err != nil {
			b.Fatal(err)
		}
		brk, err := broker.New(broker.Options{Config: cfg})
		if err != nil {
			b.Fatal(err)
		}
		d := make(chan struct{})
		done = append(done, d)
		go func() { defer close(d); brk.Run(ctx) }()
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(brk.Certs().RootPEM())
		cr.brokers = append(cr.brokers, brk)
		rigs = append(rigs, &rig{proxyAddr: brk.ProxyAddr().String(),
			tlsConfig: &tls.Config{RootCAs: pool, ServerName: "maint.example.test", ClientSessionCache: tls.NewLRUClientSessionCache(0)},
			auth:      "dTpwdw=="}) // u:pw
	}
	cr.local, cr.forwarded = rigs[0], rigs[1]
	for _, brk := range cr.brokers {
		for len(brk.Store().Directory().Brokers()) < 2 || !brk.Ready() {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return cr
}

// startAgent runs an agent for system on the first broker, offering the sink (9) and an
// echo target (7).
func (cr *clusterRig) startAgent(b *testing.B, system, secret string) {
	b.Helper()
	ca := filepath.Join(b.TempDir(), "ca.pem")
	os.WriteFile(ca, cr.brokers[0].Certs().RootPEM(), 0o644)
	startAgent(b, cr.brokers[0].WebAddr().String(), ca, system, secret)
}

// waitHeld waits until the second broker sees n systems held by the first.
func (cr *clusterRig) waitHeld(b *testing.B, n int, timeout time.Duration) time.Duration {
	start := time.Now()
	for cr.brokers[1].Store().Presence().Counts()["b1"] < n {
		if time.Since(start) > timeout {
			b.Fatalf("%d agents not online within %v", n, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// setup times one CONNECT to the echo port from request to 200, on a TLS connection that
// is already up, then echoes a byte.
func (r *rig) setup(b *testing.B) time.Duration {
	c, err := tls.Dial("tcp", r.proxyAddr, r.tlsConfig)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "CONNECT 12345.maint.example.test:7 HTTP/1.1\r\nHost: 12345.maint.example.test:7\r\nProxy-Authorization: Basic %s\r\n\r\n", r.auth)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	d := time.Since(start)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("CONNECT: %v %v", resp, err)
	}
	c.Write([]byte{'E'})
	if _, err := io.ReadFull(br, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	return d
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkClusterSetup compares CONNECT setup (request to 200, TLS already up) on the
// broker holding the agent and on another broker, interleaved so both see the same load.
func BenchmarkClusterSetup(b *testing.B) {
	cr := startClusterRig(b, 1, "")
	cr.startAgent(b, "se1", "pw")
	cr.waitHeld(b, 1, 10*time.Second)
	const n = 2000
	for range 20 { // warm the credential cache, the peer link and the agent's stream path
		cr.local.setup(b)
		cr.forwarded.setup(b)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var local, fwd []time.Duration
		for range n {
			local = append(local, cr.local.setup(b))
			fwd = append(fwd, cr.forwarded.setup(b))
		}
		b.ReportMetric(float64(percentile(local, 0.5).Microseconds()), "local-p50-µs")
		b.ReportMetric(float64(percentile(local, 0.99).Microseconds()), "local-p99-µs")
		b.ReportMetric(float64(percentile(fwd, 0.5).Microseconds()), "fwd-p50-µs")
		b.ReportMetric(float64(percentile(fwd, 0.99).Microseconds()), "fwd-p99-µs")
	}
}

// BenchmarkClusterThroughput moves 64 MiB per transfer through one tunnel, alternating
// between the holder (local) and the other broker (forwarded, through the peer link), so
// that both see the same load on a shared machine. Each op is one such pair per direction;
// it reports the median MB/s of each and the median of the per-pair ratio, and CPU seconds
// of the whole process (brokers, agent and client) per GiB moved.
func BenchmarkClusterThroughput(b *testing.B) {
	const size = 64 << 20
	cr := startClusterRig(b, 1, "")
	cr.startAgent(b, "se1", "pw")
	cr.waitHeld(b, 1, 10*time.Second)
	buf := make([]byte, chunk)
	transfer := map[string]func(r *rig){
		"down": func(r *rig) { r.download(b, size, buf) },
		"up":   func(r *rig) { r.upload(b, size, buf) },
	}
	// measure returns MB/s and CPU s/GiB of one transfer.
	measure := func(f func(*rig), r *rig) (float64, float64) {
		cpu0, t0 := processCPU(), time.Now()
		f(r)
		el, cpu := time.Since(t0), processCPU()-cpu0
		return float64(size) / 1e6 / el.Seconds(), cpu.Seconds() / (float64(size) / (1 << 30))
	}
	for _, dir := range []string{"down", "up"} {
		b.Run(dir, func(b *testing.B) {
			f := transfer[dir]
			f(cr.local) // warm the peer link and the pools
			f(cr.forwarded)
			var local, fwd, ratio, lcpu, fcpu []float64
			b.SetBytes(2 * size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				order := []*rig{cr.local, cr.forwarded}
				if i%2 == 1 {
					order[0], order[1] = order[1], order[0]
				}
				var mbs, cpu [2]float64
				for _, r := range order {
					k := 0
					if r == cr.forwarded {
						k = 1
					}
					mbs[k], cpu[k] = measure(f, r)
				}
				local, fwd, ratio = append(local, mbs[0]), append(fwd, mbs[1]), append(ratio, mbs[1]/mbs[0])
				lcpu, fcpu = append(lcpu, cpu[0]), append(fcpu, cpu[1])
			}
			b.ReportMetric(median(local), "local-MB/s")
			b.ReportMetric(median(fwd), "fwd-MB/s")
			b.ReportMetric(median(ratio), "fwd/local")
			b.ReportMetric(median(lcpu), "local-cpu-s/GiB")
			b.ReportMetric(median(fcpu), "fwd-cpu-s/GiB")
		})
	}
}

// processCPU is the CPU time (user + system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkAgentLogins starts 50 agents at once against one broker of a cluster and
// reports agent logins per second until all are in presence, for an agent secret from
// `maintproxy agent-secret` (HMAC) and a legacy bcrypt one at the default cost.
func BenchmarkAgentLogins(b *testing.B) {
	const n = 50
	fastSecret, fast, err := config.NewAgentSecret()
	if err != nil {
		b.Fatal(err)
	}
	slow, _ := bcrypt.GenerateFromPassword([]byte("agent-secret"), bcrypt.DefaultCost)
	for _, c := range []struct{ name, secret, hash string }{{"hmac", fastSecret, fast}, {"bcrypt-default", "agent-secret", string(slow)}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				cr := startClusterRig(b, n, c.hash)
				for j := range n {
					name := "se1"
					if j > 0 {
						name = fmt.Sprintf("s%d", j)
					}
					cr.startAgent(b, name, c.secret)
				}
				took := cr.waitHeld(b, n, 5*time.Minute)
				b.ReportMetric(float64(n)/took.Seconds(), "logins/s")
			}
		})
	}
}
