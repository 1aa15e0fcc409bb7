package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/echo"
)

const testDomain = "example.test"

// rawConfig is a broker configuration for mode with its own data directory, not yet made
// ready: tests edit it, then pass it to ready or expect config.NewBroker to refuse it.
func rawConfig(t *testing.T, mode string) *config.Broker {
	t.Helper()
	return &config.Broker{
		Domain:  testDomain,
		Listen:  config.Listen{Proxy: "127.0.0.1:0", Web: "127.0.0.1:0"},
		DataDir: t.TempDir(),
		TLS:     config.TLS{Mode: mode},
	}
}

// ready is config.NewBroker(*cfg), failing the test on an error.
func ready(t *testing.T, cfg *config.Broker) *config.Broker {
	t.Helper()
	b, err := config.NewBroker(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testConfig is a ready broker configuration for mode with its own data directory, after
// edits.
func testConfig(t *testing.T, mode string, edits ...func(*config.Broker)) *config.Broker {
	t.Helper()
	cfg := rawConfig(t, mode)
	for _, e := range edits {
		e(cfg)
	}
	return ready(t, cfg)
}

// logBuffer is a slog destination the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// serveTLS runs the echo target behind a TLS listener on loopback with cfg; the handshake
// happens on its first read.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := echo.Serve(context.Background(), ln)
	t.Cleanup(func() { s.Close() })
	return s.Addr()
}

// dialLeaf handshakes with addr sending serverName as SNI (none when empty) and returns
// the served leaf after verifying the chain for verifyName against rootPEM.
func dialLeaf(t *testing.T, addr, serverName, verifyName string, rootPEM []byte, now time.Time) *x509.Certificate {
	t.Helper()
	leaf, err := tryDialLeaf(addr, serverName, verifyName, rootPEM, now)
	if err != nil {
		t.Fatalf("dial %s (sni %q): %v", addr, serverName, err)
	}
	return leaf
}

func tryDialLeaf(addr, serverName, verifyName string, rootPEM []byte, now time.Time) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	var leaf *x509.Certificate
	cfg := &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // verified below, for verifyName at now, even without SNI
		NextProtos:         []string{"http/1.1"},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			var chain []*x509.Certificate
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			inter := x509.NewCertPool()
			for _, c := range chain[1:] {
				inter.AddCert(c)
			}
			_, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: verifyName, CurrentTime: now})
			leaf = chain[0]
			return err
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		return nil, &net.AddrError{Err: "negotiated " + p, Addr: addr}
	}
	return leaf, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
