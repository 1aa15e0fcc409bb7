package certs

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/testclock"
)

// exportPKCS12 signs a leaf for the broker's names with ca and packs it, its key and ca
// into a PKCS#12 file with the openssl CLI, as an operator exporting a bought certificate
// would. extra are openssl's encryption options (none: OpenSSL 3's AES-256 default).
func exportPKCS12(t *testing.T, ca *identityCA, out, passFile string, extra ...string) *x509.Certificate {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl CLI not installed (scripts/test-deps.sh installs it)")
	}
	dir := t.TempDir()
	certPath, keyPath, caPath := filepath.Join(dir, "leaf.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	leaf := writePair(t, ca, certPath, keyPath, "maint."+testDomain, "admin."+testDomain)
	// writePair's chain holds the CA too; openssl takes the leaf from -in, the rest from -certfile.
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	replaceFile(t, certPath, leafPEM)
	replaceFile(t, caPath, ca.pem)
	args := append([]string{"pkcs12", "-export", "-in", certPath, "-inkey", keyPath, "-certfile", caPath,
		"-name", "maint." + testDomain, "-passout", "file:" + passFile, "-out", out + ".tmp"}, extra...)
	if b, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestPKCS12 loads PKCS#12 files in the modern (AES-256, PBKDF2, SHA-256 MAC) and the
// legacy (3DES/RC2, SHA-1 MAC) encryption, serves them on both listeners, reloads a
// replaced file, and refuses a wrong password without ever showing it.
func TestPKCS12(t *testing.T) {
	for _, c := range []struct {
		name  string
		extra []string
	}{
		{"modern", nil},
		{"legacy-3des", []string{"-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"}},
		{"legacy-rc2", []string{"-legacy"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ca := testCA(t)
			dir := t.TempDir()
			p12, pw := filepath.Join(dir, "bought.p12"), filepath.Join(dir, "p12-password")
			const password = "s3cret p12 pass"
			replaceFile(t, pw, []byte(password+"\n"))
			first := exportPKCS12(t, ca, p12, pw, c.extra...)
			cfg := testConfig(t, config.ModeFiles, func(b *config.Broker) {
				b.TLS.Files = config.Files{PKCS12: p12, PKCS12PasswordFile: pw}
			})
			if err := Check(cfg); err != nil {
				t.Fatal(err)
			}
			clk := testclock.New(time.Now())
			m, logs := newLogged(t, Options{Config: cfg, Now: clk.Now})
			if string(m.RootPEM()) != string(ca.pem) {
				t.Error("RootPEM is not the CA inside the PKCS#12 file")
			}
			proxy, web := serveTLS(t, m.ProxyTLSConfig()), serveTLS(t, m.WebTLSConfig())
			if got := dialLeaf(t, proxy, "", "maint."+testDomain, ca.pem, clk.Now()); !got.Equal(first) {
				t.Fatalf("proxy serves serial %v, want %v", got.SerialNumber, first.SerialNumber)
			}
			if got := dialLeaf(t, web, "admin."+testDomain, "admin."+testDomain, ca.pem, clk.Now()); !got.Equal(first) {
				t.Fatalf("web serves serial %v, want %v", got.SerialNumber, first.SerialNumber)
			}

			// A replaced file is served after the next check.
			second := exportPKCS12(t, ca, p12, pw, c.extra...)
			m.check()
			if got := dialLeaf(t, proxy, "maint."+testDomain, "maint."+testDomain, ca.pem, clk.Now()); !got.Equal(second) {
				t.Fatalf("after reload the proxy serves serial %v, want %v", got.SerialNumber, second.SerialNumber)
			}

			// A changed password file that no longer opens it keeps the certificate in
			// service; the warning and the log name the field, never the password.
			replaceFile(t, pw, []byte("wrong password\n"))
			m.check()
			if w := m.Warning(); !strings.Contains(w, "tls.files.pkcs12_password_file") {
				t.Errorf("warning %q does not name tls.files.pkcs12_password_file", w)
			}
			if got := dialLeaf(t, proxy, "", "maint."+testDomain, ca.pem, clk.Now()); !got.Equal(second) {
				t.Fatal("a file that cannot be opened replaced the served certificate")
			}
			err := Check(cfg)
			if err == nil || !strings.HasPrefix(err.Error(), "tls.files.pkcs12_password_file: ") {
				t.Errorf("Check with a wrong password: %v", err)
			}
			for _, s := range []string{logs.String(), m.Warning(), err.Error()} {
				if strings.Contains(s, password) || strings.Contains(s, "wrong password") {
					t.Errorf("a password leaked: %s", s)
				}
			}
		})
	}
}

func TestPKCS12Errors(t *testing.T) {
	ca := testCA(t)
	dir := t.TempDir()
	p12, pw := filepath.Join(dir, "b.p12"), filepath.Join(dir, "pw")
	replaceFile(t, pw, []byte("pw"))
	exportPKCS12(t, ca, p12, pw)
	garbage := filepath.Join(dir, "garbage.p12")
	replaceFile(t, garbage, []byte("not a pkcs12 file"))
	for _, c := range []struct {
		files config.Files
		field string
	}{
		{config.Files{PKCS12: p12}, "tls.files.pkcs12_password_file: "},
		{config.Files{PKCS12: p12, PKCS12PasswordFile: filepath.Join(dir, "missing")}, "tls.files.pkcs12_password_file: "},
		{config.Files{PKCS12: filepath.Join(dir, "missing.p12"), PKCS12PasswordFile: pw}, "tls.files.pkcs12: "},
		{config.Files{PKCS12: garbage, PKCS12PasswordFile: pw}, "tls.files.pkcs12: "},
	} {
		cfg := testConfig(t, config.ModeFiles, func(b *config.Broker) { b.TLS.Files = c.files })
		if err := Check(cfg); err == nil || !strings.HasPrefix(err.Error(), c.field) {
			t.Errorf("%+v: got %v, want an error starting %q", c.files, err, c.field)
		}
	}
	// Named for another domain: the error names the PKCS#12 field, not tls.files.cert.
	cfg := testConfig(t, config.ModeFiles, func(b *config.Broker) {
		b.Domain = "other.test"
		b.TLS.Files = config.Files{PKCS12: p12, PKCS12PasswordFile: pw}
	})
	if err := Check(cfg); err == nil || !strings.HasPrefix(err.Error(), "tls.files.pkcs12: the certificate is not valid for maint.other.test") {
		t.Errorf("wrong names: %v", err)
	}
}

// TestOrderChain: the leaf is found by its key and the rest follow issuer by issuer,
// whatever order the file lists them in.
func TestOrderChain(t *testing.T) {
	root := testCA(t)
	interCA, err := createCA(t.TempDir(), "intermediate", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Re-sign the intermediate with the root so the chain has three links.
	inter, err := x509.ParseCertificate(mustSign(t, interCA, root))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := signLeaf(&identityCA{cert: inter, key: interCA.key}, time.Now(), []string{"maint." + testDomain}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := leaf.Leaf.PublicKey
	got := orderChain(pub, []*x509.Certificate{root.cert, leaf.Leaf, inter})
	if len(got) != 3 || got[0] != leaf.Leaf || got[1] != inter || got[2] != root.cert {
		t.Fatalf("chain order %v", subjects(got))
	}
	if orderChain(root.cert.PublicKey, []*x509.Certificate{leaf.Leaf}) != nil {
		t.Error("a chain without the key's certificate")
	}
}

// mustSign re-issues ca's certificate signed by parent.
func mustSign(t *testing.T, ca, parent *identityCA) []byte {
	t.Helper()
	tmpl := *ca.cert
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, parent.cert, ca.key.Public(), parent.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func subjects(cs []*x509.Certificate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Subject.CommonName)
	}
	return out
}
