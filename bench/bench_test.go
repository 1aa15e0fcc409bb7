// Package bench measures the tunnel path: technician → TLS proxy → yamux over websocket →
// agent → TCP target, all real parts on loopback in one process. Run with `make bench`.
package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/broker"
	"maintproxy/config"
	"maintproxy/internal/conns"
	"maintproxy/internal/echo"
	"maintproxy/tunnel"
)

// rig is a running broker with one agent in front of a sink.
type rig struct {
	proxyAddr string
	tlsConfig *tls.Config
	auth      string
}

const chunk = 64 << 10

func startRig(b *testing.B) *rig {
	b.Helper()
	dir := b.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	cfg, err := config.NewBroker(config.Broker{
		Domain: "example.test", DataDir: dir,
		Listen:    config.Listen{Proxy: "127.0.0.1:0", Web: "127.0.0.1:0"},
		Accounts:  []config.Account{{Username: "u", PasswordHash: string(hash), Customers: []string{"12345"}}},
		Customers: []config.Customer{{ID: "12345", Systems: []config.System{{Name: "se1", Primary: true, AgentSecretHash: string(hash)}}}},
		Limits:    config.Limits{PerAccount: 1 << 20, PerSystem: 1 << 20},
	})
	if err != nil {
		b.Fatal(err)
	}
	brk, err := broker.New(broker.Options{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	brokerDone := make(chan struct{})
	go func() { defer close(brokerDone); brk.Run(ctx) }()

	b.Cleanup(func() { cancel(); <-brokerDone })
	caFile := filepath.Join(dir, "ca.pem")
	startAgent(b, brk.WebAddr().String(), caFile, "se1", "pw")
	deadline := time.Now().Add(10 * time.Second)
	for brk.Registry().Len() == 0 {
		if time.Now().After(deadline) {
			b.Fatal("agent did not connect")
		}
		time.Sleep(5 * time.Millisecond)
	}
	pem, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &rig{
		proxyAddr: brk.ProxyAddr().String(),
		tlsConfig: &tls.Config{RootCAs: pool, ServerName: "maint.example.test", ClientSessionCache: tls.NewLRUClientSessionCache(0)},
		auth:      base64.StdEncoding.EncodeToString([]byte("u:pw")),
	}
}

// startAgent runs an in-process agent for 12345/system against the broker whose web
// listener is webAddr (trusting caFile), offering the sink (9) and an echo target (7),
// until the benchmark ends.
func startAgent(b *testing.B, webAddr, caFile, system, secret string) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	target, err := echo.Start(ctx, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	acfg, err := config.NewAgent(config.Agent{
		Broker: "https://" + webAddr, CAFile: caFile, ServerName: "admin.example.test",
		Customer: "12345", System: system, Secret: secret,
		RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"9": startSink(b), "7": target.Addr()}},
	})
	if err != nil {
		b.Fatal(err)
	}
	agent, err := tunnel.NewAgent(acfg, slog.New(slog.DiscardHandler), "bench")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); agent.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done; target.Close() })
}

// startSink answers by the first byte: 'U' read n bytes then ack, 'D' send n bytes.
func startSink(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := conns.Serve(ln, 0, func(c net.Conn) {
		var hdr [9]byte
		if _, err := io.ReadFull(c, hdr[:1]); err != nil {
			return
		}
		switch hdr[0] {
		case 'U', 'D':
			if _, err := io.ReadFull(c, hdr[1:]); err != nil {
				return
			}
			n := int64(0)
			for _, x := range hdr[1:] {
				n = n<<8 | int64(x)
			}
			if hdr[0] == 'U' {
				io.CopyN(io.Discard, c, n)
				c.Write([]byte{1})
			} else {
				io.CopyN(c, zeros{}, n)
			}
		}
	})
	b.Cleanup(func() { s.Close() })
	return s.Addr()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// connect opens one tunnel to port 9 (the sink) or 7 (the echo target).
func (r *rig) connect(b *testing.B, port int) net.Conn {
	c, err := tls.Dial("tcp", r.proxyAddr, r.tlsConfig)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT 12345.maint.example.test:%d HTTP/1.1\r\nHost: 12345.maint.example.test:%d\r\nProxy-Authorization: Basic %s\r\n\r\n", port, port, r.auth)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("CONNECT: %v %v", resp, err)
	}
	return c
}

func header(op byte, n int64) []byte {
	h := []byte{op, 0, 0, 0, 0, 0, 0, 0, 0}
	for i := 8; i >= 1; i-- {
		h[i] = byte(n)
		n >>= 8
	}
	return h
}

// upload sends size bytes (a multiple of len(buf)) to the sink through a tunnel of its own
// and waits for the sink's receipt.
func (r *rig) upload(b *testing.B, size int64, buf []byte) {
	c := r.connect(b, 9)
	defer c.Close()
	c.Write(header('U', size))
	for left := size; left > 0; left -= int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		b.Fatal(err)
	}
}

// download has the sink send size bytes through a tunnel of its own and reads them all.
func (r *rig) download(b *testing.B, size int64, buf []byte) {
	c := r.connect(b, 9)
	defer c.Close()
	c.Write(header('D', size))
	if n, err := io.CopyBuffer(io.Discard, io.LimitReader(c, size), buf); err != nil || n != size {
		b.Fatalf("%d %v", n, err)
	}
}

// BenchmarkThroughput moves 64 MiB per op through one tunnel (single stream).
func BenchmarkThroughput(b *testing.B) {
	const size = 64 << 20
	r := startRig(b)
	buf := make([]byte, chunk)
	b.Run("up", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			r.upload(b, size, buf)
		}
	})
	b.Run("down", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			r.download(b, size, buf)
		}
	})
}

// BenchmarkConnectSetup is one technician connection: TLS handshake (session resumed after
// the first), CONNECT with cached credentials, agent stream open, target dial, one byte
// echoed, close.
func BenchmarkConnectSetup(b *testing.B) {
	r := startRig(b)
	one := make([]byte, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := r.connect(b, 7)
		c.Write([]byte{'E'})
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
