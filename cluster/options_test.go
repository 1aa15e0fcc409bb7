package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
)

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func TestFromConfig(t *testing.T) {
	cert, key := selfSigned(t)
	c := config.Cluster{
		Node: "b1",
		Etcd: config.ClusterEtcd{Endpoints: []string{"https://127.0.0.1:2379"}, TLS: config.ClusterTLS{
			CAFile: writeFile(t, "ca.pem", cert), CertFile: writeFile(t, "c.pem", cert), KeyFile: writeFile(t, "k.pem", key)}},
		SecretFile: writeFile(t, "secret", []byte("  "+string(testSecret)+"\n")),
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	o, err := FromConfig(&c)
	if err != nil {
		t.Fatal(err)
	}
	if o.Node != "b1" || o.Prefix != config.DefaultClusterPrefix || o.LeaseTTL != config.DefaultLeaseTTL ||
		!bytes.Equal(o.Secret, testSecret) || o.TLS == nil || o.TLS.RootCAs == nil || len(o.TLS.Certificates) != 1 {
		t.Errorf("options %+v", o)
	}

	for _, tc := range []struct {
		name   string
		change func(*config.Cluster)
		want   string
	}{
		{"short secret", func(c *config.Cluster) { c.SecretFile = writeFile(t, "s", []byte("short\n")) }, "cluster.secret_file:"},
		{"missing secret", func(c *config.Cluster) { c.SecretFile = "/nonexistent/secret" }, "cluster.secret_file:"},
		{"bad ca", func(c *config.Cluster) { c.Etcd.TLS.CAFile = writeFile(t, "ca", []byte("no pem")) }, "cluster.etcd.tls.ca_file:"},
		{"bad key", func(c *config.Cluster) { c.Etcd.TLS.KeyFile = c.Etcd.TLS.CAFile }, "cluster.etcd.tls.cert_file:"},
	} {
		bad := c
		tc.change(&bad)
		if _, err := FromConfig(&bad); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want prefix %q", tc.name, err, tc.want)
		}
	}
}

func TestAdvertiseAddr(t *testing.T) {
	for _, tc := range []struct{ listen, adv, want string }{
		{":6444", "b1.example.com:6444", "b1.example.com:6444"},
		{"10.1.2.3:6444", "", "10.1.2.3:6444"},
	} {
		if got, err := AdvertiseAddr(tc.listen, tc.adv); err != nil || got != tc.want {
			t.Errorf("AdvertiseAddr(%q, %q) = %q, %v", tc.listen, tc.adv, got, err)
		}
	}
	// A wildcard listener advertises a routable address of this host, if it has one.
	got, err := AdvertiseAddr(":6444", "")
	if err != nil {
		t.Skipf("no routable address here: %v", err)
	}
	host, port, _ := net.SplitHostPort(got)
	if ip := net.ParseIP(host); ip == nil || !ip.IsGlobalUnicast() || port != "6444" {
		t.Errorf("wildcard advertises %q", got)
	}
}

func TestSealBindsKeyAndSecret(t *testing.T) {
	s, err := seal(testSecret, "p", "/k1", []byte("plain"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.open(testSecret, "p", "/k1"); err != nil || string(got) != "plain" {
		t.Fatalf("open: %q %v", got, err)
	}
	for _, tc := range []struct {
		secret       []byte
		purpose, key string
	}{
		{testSecret, "p", "/k2"},
		{testSecret, "q", "/k1"},
		{bytes.Repeat([]byte("x"), MinSecretLength), "p", "/k1"},
	} {
		if _, err := s.open(tc.secret, tc.purpose, tc.key); err != ErrBadSecret {
			t.Errorf("open(%q, %q): %v, want ErrBadSecret", tc.purpose, tc.key, err)
		}
	}
	if _, err := seal([]byte("short"), "p", "/k", nil); err != ErrNoSecret {
		t.Errorf("short secret: %v", err)
	}
}
