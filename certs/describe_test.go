package certs

import (
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
)

// TestDescribeSelfSigned: the running Manager describes the leaf it really serves, Inspect
// (no broker) the CAs in data_dir; fingerprints agree with openssl's.
func TestDescribeSelfSigned(t *testing.T) {
	cfg := testConfig(t, config.ModeSelfSigned)
	now := time.Now()
	if d, err := Inspect(cfg, now); err != nil || len(d.Roots) != 0 || !strings.Contains(d.Served[0].Note, "first start") {
		t.Fatalf("Inspect before the first start: %+v, %v", d, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, CACertFile)); err == nil {
		t.Fatal("Inspect created a CA")
	}
	m, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	served := dialLeaf(t, serveTLS(t, m.ProxyTLSConfig()), "", "maint."+testDomain, m.RootPEM(), now)
	d := m.Describe()
	if len(d.Served) != 2 || d.Served[0].Listener != "proxy" || d.Served[1].Name != "admin."+testDomain {
		t.Fatalf("served: %+v", d.Served)
	}
	leaf := d.Served[0].Chain[0]
	if strings.ToLower(strings.ReplaceAll(leaf.SHA256, ":", "")) != sha256Hex(served.Raw) {
		t.Errorf("leaf fingerprint %s is not the served leaf's", leaf.SHA256)
	}
	if leaf.DaysLeft < 88 || leaf.DaysLeft > 90 || !strings.Contains(strings.Join(leaf.SANs, ","), "admin."+testDomain) {
		t.Errorf("leaf: %+v", leaf)
	}
	if len(d.Roots) != 1 || d.Roots[0].Subject != d.Served[0].Chain[0].Issuer {
		t.Errorf("roots: %+v", d.Roots)
	}

	off, err := Inspect(cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	if off.Roots[0].SHA256 != d.Roots[0].SHA256 || !strings.Contains(off.Served[0].Note, "in memory") || off.Rollover == nil {
		t.Errorf("Inspect: %+v", off)
	}
	if openssl, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command(openssl, "x509", "-noout", "-fingerprint", "-sha256", "-in", filepath.Join(cfg.DataDir, CACertFile)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "="+off.Roots[0].SHA256) {
			t.Errorf("openssl says %s, we say %s", out, off.Roots[0].SHA256)
		}
	}

	var text strings.Builder
	if err := d.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"proxy listener 127.0.0.1:0 serves maint." + testDomain, "SHA-256   " + leaf.SHA256,
		"subject   CN=maint." + testDomain, "days left", "roots clients trust", "next CA made and published"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	js, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"sha256":"` + leaf.SHA256, `"days_left":`, `"not_after":`, `"next_at":`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s: %s", want, js)
		}
	}
}

func TestDescribeFilesAndACME(t *testing.T) {
	cfg, ca := filesConfig(t)
	d, err := Inspect(cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Served[1].Chain) != 2 || d.Served[1].Chain[1].Role != "root" || len(d.Roots) != 1 ||
		d.Roots[0].SHA256 != fingerprint(ca.cert) || !strings.HasPrefix(d.Source, "tls.files.cert") {
		t.Errorf("files: %+v", d)
	}

	// acme: what the cache holds, without contacting anyone.
	acfg := testConfig(t, config.ModeACME, func(b *config.Broker) { b.TLS.ACME.Email = "ops@" + testDomain })
	dir := acmeCacheDir(acfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	leaf := writePair(t, ca, filepath.Join(tmp, "c.pem"), filepath.Join(tmp, "k.pem"), "maint."+testDomain)
	key, _ := os.ReadFile(filepath.Join(tmp, "k.pem"))
	chain, _ := os.ReadFile(filepath.Join(tmp, "c.pem"))
	if err := os.WriteFile(filepath.Join(dir, "maint."+testDomain), append(key, chain...), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err = Inspect(acfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Served[0].Chain) != 2 || d.Served[0].Chain[0].SHA256 != fingerprint(leaf) {
		t.Errorf("acme proxy: %+v", d.Served[0])
	}
	if !strings.Contains(d.Served[1].Note, "no certificate cached yet") {
		t.Errorf("acme web without a cached certificate: %+v", d.Served[1])
	}
	isrg, _ := pem.Decode(ISRGRootX1PEM())
	if len(d.Roots) != 1 || !strings.Contains(d.Roots[0].Subject, "ISRG Root X1") || isrg == nil {
		t.Errorf("acme roots: %+v", d.Roots)
	}
}
