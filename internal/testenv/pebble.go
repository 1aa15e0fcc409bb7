package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// PebbleModule and PebbleVersion name the ACME test server StartPebble runs.
const (
	PebbleModule  = "github.com/letsencrypt/pebble/v2"
	PebbleVersion = "v2.10.1"
)

// PebbleOptions says where pebble validates challenges. Its validation authority looks
// names up through DNSServer (over TCP) and then connects to TLSPort (TLS-ALPN-01, the
// broker's listen.web) or HTTPPort (HTTP-01, the broker's listen.http) on the address it
// found. Pebble is started before the broker, so these are usually Forward ports.
type PebbleOptions struct {
	TLSPort   int
	HTTPPort  int
	DNSServer string // host:port, e.g. a dns.Server on 127.0.0.1
}

// Pebble is a running pebble on 127.0.0.1, stopped when the test ends.
type Pebble struct {
	// DirectoryURL is the ACME directory (tls.acme.directory_url).
	DirectoryURL string
	// CAFile is pebble's minica certificate, which signs the directory's HTTPS
	// certificate (tls.acme.ca_file).
	CAFile string
	// RootFile holds RootPEM (tls.acme.root_file: what the tool bundle ships).
	RootFile string
	// RootPEM is the root the issued chains end in; pebble makes a new one per start.
	RootPEM []byte
}

// StartPebble installs pebble (once per machine, in the user cache directory) and runs
// it on loopback ports with its random delays and nonce rejections off and without
// authorization reuse. The test is skipped, saying why, only when `go install` fails
// (no module proxy). Pebble's output is logged if the test fails.
func StartPebble(t testing.TB, opts PebbleOptions) *Pebble {
	t.Helper()
	bin, modDir := installPebble(t)
	dir := t.TempDir()
	p := &Pebble{CAFile: filepath.Join(modDir, "test", "certs", "pebble.minica.pem")}
	caPEM, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatalf("pebble: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: nil},
		Timeout:   5 * time.Second,
	}

	// Pebble binds the ports it is told and cannot report them: see StartExternal.
	cfgPath := filepath.Join(dir, "pebble-config.json")
	peb := StartExternal(t, "pebble", "127.0.0.1", 2, func(ports []int) *exec.Cmd {
		pebbleWriteConfig(t, cfgPath, modDir, ports[0], ports[1], opts)
		cmd := exec.Command(bin, "-config", cfgPath, "-dnsserver", opts.DNSServer)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
		return cmd
	})
	p.DirectoryURL = fmt.Sprintf("https://127.0.0.1:%d/dir", peb.Ports[0])
	rootURL := fmt.Sprintf("https://127.0.0.1:%d/roots/0", peb.Ports[1])
	if p.RootPEM, err = pebbleWait(client, p.DirectoryURL, rootURL, peb.Exited); err != nil {
		t.Fatalf("pebble did not start: %v\n%s", err, peb.Output())
	}
	p.RootFile = filepath.Join(dir, "pebble-root.pem")
	if err := os.WriteFile(p.RootFile, p.RootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pebbleWait polls until the directory answers and returns the root, or pebble exits,
// or 20 seconds pass.
func pebbleWait(c *http.Client, dirURL, rootURL string, exited <-chan struct{}) ([]byte, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		root, err := pebbleGet(c, rootURL)
		if err == nil {
			if _, err = pebbleGet(c, dirURL); err == nil {
				return root, nil
			}
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("pebble exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, err
		}
	}
}

func pebbleGet(c *http.Client, url string) ([]byte, error) {
	res, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return body, nil
}

func pebbleWriteConfig(t testing.TB, path, modDir string, listen, mgmt int, o PebbleOptions) {
	t.Helper()
	type profile struct {
		Description    string `json:"description"`
		ValidityPeriod int    `json:"validityPeriod"`
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(listen),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(mgmt),
		"certificate":                    filepath.Join(modDir, "test", "certs", "localhost", "cert.pem"),
		"privateKey":                     filepath.Join(modDir, "test", "certs", "localhost", "key.pem"),
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		// No Retry-After: the ACME client then polls every second instead of every 3-5.
		"retryAfter":   map[string]int{"authz": 0, "order": 0},
		"keyAlgorithm": "ecdsa",
		"profiles":     map[string]profile{"default": {"90 days, like Let's Encrypt", 90 * 24 * 3600}},
	}}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// installPebble returns the pebble binary and its module directory (for the test
// certificates), installing it on first use.
func installPebble(t testing.TB) (bin, modDir string) {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	binDir := filepath.Join(cache, "maintproxy-tools", "pebble-"+PebbleVersion)
	bin = filepath.Join(binDir, "pebble")
	// Outside any module, so that neither command touches this repository's go.mod.
	work := t.TempDir()
	goCmd := func(ctx context.Context, env []string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go %v: %v: %s", args, err, stderr.String())
		}
		return out, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := os.Stat(bin); err != nil {
		if err := os.MkdirAll(binDir, 0o755); err != nil {
			t.Fatal(err)
		}
		// Install beside the final path and rename, so concurrent test binaries never
		// run a half-written file.
		tmp, err := os.MkdirTemp(binDir, ".install-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		if _, err := goCmd(ctx, []string{"GOBIN=" + tmp, "GO111MODULE=on"}, "install", PebbleModule+"/cmd/pebble@"+PebbleVersion); err != nil {
			t.Skipf("pebble cannot be installed, skipping the ACME test: %v", err)
		}
		if err := os.Rename(filepath.Join(tmp, "pebble"), bin); err != nil {
			t.Fatal(err)
		}
	}
	out, err := goCmd(ctx, []string{"GO111MODULE=on", "GOFLAGS=-mod=mod"}, "mod", "download", "-json", PebbleModule+"@"+PebbleVersion)
	if err != nil {
		t.Fatalf("pebble module: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("pebble module: no directory in %s", out)
	}
	return bin, mod.Dir
}
