package pac

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
)

// readZip returns the entries of a zip body by name, checking the fixed mtimes.
func readZip(t *testing.T, body []byte) (map[string][]byte, map[string]*zip.File) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	data, files := map[string][]byte{}, map[string]*zip.File{}
	for _, f := range zr.File {
		if !f.Modified.Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: mtime %v", f.Name, f.Modified)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		data[f.Name], files[f.Name] = b, f
	}
	return data, files
}

func TestPACHandler(t *testing.T) {
	e := newTestEnv(t, "")
	w := e.get(t, "/com/remoteproxy/proxy.pac", "", "")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-ns-proxy-autoconfig" {
		t.Fatalf("status %d, type %q", w.Code, w.Header().Get("Content-Type"))
	}
	if w.Body.String() != PAC("example.test", "maint.example.test:16443") {
		t.Errorf("body:\n%s", w.Body)
	}
	// A hot reload changes the next answer.
	next := testConfig(t)
	next.Listen.Proxy = ":6443"
	e.cfg = next
	mustContain(t, e.get(t, "/com/remoteproxy/proxy.pac", "", "").Body.String(), `"HTTPS maint.example.test:6443"`)
}

func TestExtensionZip(t *testing.T) {
	e := newTestEnv(t, "")
	w := e.get(t, "/com/remoteproxy/chrome-extension.zip", "", "")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/zip" {
		t.Fatalf("status %d, type %q", w.Code, w.Header().Get("Content-Type"))
	}
	data, _ := readZip(t, w.Body.Bytes())
	var manifest struct {
		Version     int      `json:"manifest_version"`
		Permissions []string `json:"permissions"`
		Hosts       []string `json:"host_permissions"`
		Background  struct {
			Worker string `json:"service_worker"`
		} `json:"background"`
	}
	if err := json.Unmarshal(data["maintproxy-extension/manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	if manifest.Version != 3 || strings.Join(manifest.Permissions, " ") != "proxy alarms" || strings.Join(manifest.Hosts, " ") != "<all_urls>" ||
		manifest.Background.Worker != "background.js" {
		t.Errorf("manifest %+v", manifest)
	}
	if string(data["maintproxy-extension/proxy.pac"]) != PAC("example.test", "maint.example.test:16443") {
		t.Error("proxy.pac in the extension differs from the served one")
	}
	mustContain(t, string(data["maintproxy-extension/README.txt"]), "keeps the\nproxy settings the browser had before",
		"cannot be read by any extension", "previous proxy settings are back")
}

func TestZipsDeterministicAndCached(t *testing.T) {
	e := newTestEnv(t, "")
	for _, path := range []string{"/com/remoteproxy/chrome-extension.zip", "/com/remoteproxy/tools.zip"} {
		a := e.get(t, path, "", "")
		b := newTestEnv(t, "").get(t, path, "", "") // a fresh handler: no shared cache
		if !bytes.Equal(a.Body.Bytes(), b.Body.Bytes()) || a.Header().Get("ETag") == "" || a.Header().Get("ETag") != b.Header().Get("ETag") {
			t.Errorf("%s differs between builds", path)
		}
		// Conditional requests work.
		c := e.get(t, path, "", "", "If-None-Match", a.Header().Get("ETag"))
		if c.Code != http.StatusNotModified {
			t.Errorf("%s If-None-Match: %d", path, c.Code)
		}
	}
	before := e.get(t, "/com/remoteproxy/tools.zip", "", "").Header().Get("ETag")
	e.root = []byte("-----BEGIN CERTIFICATE-----\nNEWROOT\n-----END CERTIFICATE-----\n")
	after := e.get(t, "/com/remoteproxy/tools.zip", "", "")
	if after.Header().Get("ETag") == before {
		t.Error("tools.zip not rebuilt after the root changed")
	}
	data, _ := readZip(t, after.Body.Bytes())
	mustContain(t, string(data["maintproxy-tools/maintproxy-ca.pem"]), "NEWROOT")
}

func TestToolsZip(t *testing.T) {
	dist := t.TempDir()
	for _, n := range append(ExpectedClients(), "notes.txt") {
		os.WriteFile(filepath.Join(dist, n), []byte("binary "+n), 0o755)
	}
	e := newTestEnv(t, dist)
	if strings.Contains(e.logs.String(), "clients missing") {
		t.Errorf("a complete tools dir logged missing clients:\n%s", e.logs)
	}
	data, files := readZip(t, e.get(t, "/com/remoteproxy/tools.zip", "", "").Body.Bytes())
	if string(data["maintproxy-tools/maintproxy-ca.pem"]) != testRoot {
		t.Errorf("root: %q", data["maintproxy-tools/maintproxy-ca.pem"])
	}
	for _, n := range ExpectedClients() {
		f := files["maintproxy-tools/"+n]
		if f == nil || f.Mode().Perm() != 0o755 || string(data["maintproxy-tools/"+n]) != "binary "+n {
			t.Errorf("%s missing or wrong", n)
		}
	}
	if data["maintproxy-tools/notes.txt"] != nil {
		t.Error("unrelated file from the tools dir bundled")
	}
	if len(data) != len(ExpectedClients())+2 {
		t.Errorf("%d entries", len(data))
	}
	readme := string(data["maintproxy-tools/README.txt"])
	mustContain(t, readme,
		"maint.example.test:16443",
		`-P '<proxy-user>:<proxy-password>' -C ~/maintproxy-tools/maintproxy-ca.pem`,
		"C:/maintproxy-tools/proxytunnel.exe --standalone=13389 -E --proxy=maint.example.test:16443",
		"Host Name <customer-id>-<system-name>.maint.example.test, Port 22",
		`ssh -p 22 -o ProxyCommand="maint connect %h:%p" <user-name>@<customer-id>-<system-name>.maint.example.test`,
		"maint forward --listen 127.0.0.1:13389",
		"https://admin.example.test:8443/com/remoteproxy/proxy.pac",
		"  maint-windows-arm64.exe    maint for Windows ARM64\n",
		"  maint-darwin-amd64         maint for macOS x86-64\n",
		"  proxytunnel.exe            maint for Windows x86-64 under proxytunnel's name",
		"proxytunnel.exe is maint: it takes proxytunnel's command line",
		"(proxytunnel.exe of this bundle in C:/maintproxy-tools)",
	)
	mustNotContain(t, readme, "notes.txt", "started without the client programs")
	// The README lists exactly the zip's files.
	listed := 0
	for name := range data {
		if strings.Contains(readme, "\n  "+strings.TrimPrefix(name, "maintproxy-tools/")+" ") {
			listed++
		}
	}
	if listed != len(data) {
		t.Errorf("README lists %d of the %d files", listed, len(data))
	}
	// The overview names the same files.
	page := e.get(t, "/com/remoteproxy/access", "resa", "pass-a'$x").Body.String()
	mustContain(t, page, "<code>maintproxy-ca.pem</code>, <code>maint-darwin-amd64</code>", "<code>proxytunnel.exe</code>, <code>README.txt</code>")

	// Without a tools dir: the root and README, a README that says so, and a warning.
	e = newTestEnv(t, filepath.Join(dist, "missing"))
	data, _ = readZip(t, e.get(t, "/com/remoteproxy/tools.zip", "", "").Body.Bytes())
	readme = string(data["maintproxy-tools/README.txt"])
	if len(data) != 2 || !strings.Contains(readme, "started without the client programs") || strings.Contains(readme, "proxytunnel.exe is maint") {
		t.Errorf("entries without tools: %d\n%s", len(data), readme)
	}
	mustContain(t, e.logs.String(), "tool bundle: clients missing", "missing=\"maint-darwin-amd64 maint-darwin-arm64")
	mustNotContain(t, e.get(t, "/com/remoteproxy/access", "resa", "pass-a'$x").Body.String(), "proxytunnel.exe", "maint-linux")
}

func TestMissingClients(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "maint-linux-amd64"), nil, 0o755)
	os.WriteFile(filepath.Join(dir, "proxytunnel.exe"), nil, 0o755)
	os.Mkdir(filepath.Join(dir, "maint-darwin-arm64"), 0o755) // a directory is not a client
	got := strings.Join(MissingClients(dir), " ")
	if got != "maint-darwin-amd64 maint-darwin-arm64 maint-linux-arm64 maint-windows-amd64.exe maint-windows-arm64.exe" {
		t.Errorf("missing %q", got)
	}
	if len(MissingClients("")) != len(ExpectedClients()) {
		t.Error("no dir: not all missing")
	}
}

func TestRootFileName(t *testing.T) {
	for _, tc := range []struct {
		mode, acmeRoot, filesRoot, want string
	}{
		{config.ModeSelfSigned, "", "", "maintproxy-ca.pem"},
		{config.ModeACME, "", "", "isrgrootx1.pem"},
		{config.ModeACME, "/etc/pebble/root.pem", "", "root.pem"},
		{config.ModeFiles, "", "/etc/ssl/corp root.pem", "maintproxy-root.pem"},
		{config.ModeFiles, "", "/etc/ssl/corp-root.pem", "corp-root.pem"},
		{config.ModeFiles, "", "", "maintproxy-root.pem"},
	} {
		cfg := &config.Broker{TLS: config.TLS{Mode: tc.mode, ACME: config.ACME{RootFile: tc.acmeRoot}, Files: config.Files{Root: tc.filesRoot}}}
		if got := rootFileName(cfg); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc, got, tc.want)
		}
	}
}

func TestNoRootMeansNoCAOption(t *testing.T) {
	e := newTestEnv(t, "")
	e.root = nil
	data, _ := readZip(t, e.get(t, "/com/remoteproxy/tools.zip", "", "").Body.Bytes())
	if len(data) != 1 || strings.Contains(string(data["maintproxy-tools/README.txt"]), " -C ") {
		t.Errorf("without a root: %d entries, README:\n%s", len(data), data["maintproxy-tools/README.txt"])
	}
}
