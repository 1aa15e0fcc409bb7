package capool

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// issue makes a certificate: a CA when parent is nil (self-signed) or isCA, else a leaf
// for name.
func issue(t *testing.T, parent *testCert, name string, isCA bool) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: n.Add(n, big.NewInt(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	} else {
		tmpl.DNSNames, tmpl.ExtKeyUsage = []string{name}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCert{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func TestTrustUpdate(t *testing.T) {
	const name = "admin.example.test"
	old, next, other := issue(t, nil, "old", true), issue(t, nil, "next", true), issue(t, nil, "other", true)
	oldLeaf, nextLeaf := issue(t, old, name, false), issue(t, next, name, false)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, old.pem, 0o644)
	tr, err := LoadTrust(caFile)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	served := []*x509.Certificate{oldLeaf.cert}
	if err := tr.verify([]*x509.Certificate{nextLeaf.cert}, name, now); err == nil {
		t.Fatal("a leaf of the next CA verified before the update")
	}

	for _, c := range []struct {
		bundle []byte
		want   string
	}{
		{nil, "no certificate"},
		{oldLeaf.pem, "CA certificates"},
		{other.pem, "do not include the root"},
		{bytes.Repeat(old.pem, MaxBundle/len(old.pem)+1), "more than"},
	} {
		if _, err := tr.Update(c.bundle, served, name, now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("update with a bad bundle: %v, want %q", err, c.want)
		}
	}
	if _, err := os.Stat(NextPath(caFile)); err == nil {
		t.Fatal("a refused bundle was written")
	}

	bundle := append(bytes.Clone(old.pem), next.pem...)
	if changed, err := tr.Update(bundle, served, name, now); !changed || err != nil {
		t.Fatalf("update: %v %v", changed, err)
	}
	if err := tr.verify([]*x509.Certificate{nextLeaf.cert}, name, now); err != nil {
		t.Fatalf("the next CA is not trusted after the update: %v", err)
	}
	if changed, _ := tr.Update(bundle, served, name, now); changed {
		t.Error("the same bundle counted as a change")
	}
	// A second agent sharing ca_file, started before the file existed, takes it too.
	os.Remove(NextPath(caFile))
	tr2, _ := LoadTrust(caFile)
	os.WriteFile(NextPath(caFile), bundle, 0o644)
	if changed, err := tr2.Update(bundle, served, name, now); !changed || err != nil {
		t.Fatalf("second agent: %v %v", changed, err)
	}
	if err := tr2.verify([]*x509.Certificate{nextLeaf.cert}, name, now); err != nil {
		t.Fatal("the second agent does not trust the next CA")
	}
	// A restart reads ca_file and the kept bundle.
	tr3, err := LoadTrust(caFile)
	if err != nil || tr3.verify([]*x509.Certificate{nextLeaf.cert}, name, now) != nil {
		t.Fatalf("after a restart: %v", err)
	}
	if err := tr3.verify([]*x509.Certificate{nextLeaf.cert}, "other.example.test", now); err == nil {
		t.Error("a chain verified for the wrong name")
	}
}
