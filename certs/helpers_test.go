package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"net"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/echo"
	"maintproxy/internal/testkit"
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

// newLogged is New with opts, logging as text into the returned buffer.
func newLogged(t *testing.T, opts Options) (*Manager, *testkit.Buffer) {
	t.Helper()
	logs := &testkit.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, logs
}

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
	cs, err := handshake(addr, cfg)
	if err != nil {
		return nil, err
	}
	if p := cs.NegotiatedProtocol; p != "http/1.1" {
		return nil, &net.AddrError{Err: "negotiated " + p, Addr: addr}
	}
	return leaf, nil
}

// handshake connects to addr with cfg (within 30 seconds) and returns what the TLS
// handshake settled.
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
