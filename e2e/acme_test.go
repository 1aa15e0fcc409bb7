package e2e

import (
	"archive/zip"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/internal/testenv"
)

// TestACMEWithPebble: the real broker obtains maint.<domain> and admin.<domain> from
// Let's Encrypt's test server, with its own DNS server as pebble's resolver; then curl and
// proxytunnel reach a customer system through the proxy trusting only the root shipped in
// the broker's tool bundle.
func TestACMEWithPebble(t *testing.T) {
	testenv.NeedCommands(t, "curl", "proxytunnel", "ssh", "unshare")
	// Pebble must know where to validate before the broker starts (the broker needs pebble's
	// root), so it validates through forwards, which are pointed at the broker's ports once
	// the broker has bound them.
	webFwd, plain, dnsTCP := testenv.StartForward(t), testenv.StartForward(t), testenv.StartForward(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{TLSPort: webFwd.Port(), HTTPPort: plain.Port(), DNSServer: dnsTCP.Addr()})
	env := testenv.Start(t, testenv.Options{Extra: map[string]any{
		"listen": map[string]any{"http": "127.0.0.1:0", "dns": "127.0.0.1:0"},
		"tls": map[string]any{"mode": "acme", "acme": map[string]any{
			"email": "ops@example.test", "directory_url": peb.DirectoryURL, "ca_file": peb.CAFile, "root_file": peb.RootFile,
		}},
		"dns": map[string]any{"enabled": true, "addresses": []string{"127.0.0.1"}},
	}})
	webFwd.To(env.WebAddr)
	plain.To(env.HTTPAddr)
	dnsTCP.To(env.DNSAddr)
	env.Proc().WaitLog(t, 60*time.Second, func(r testenv.Record) bool { return r.Msg() == "ACME certificates ready" })

	// The technician downloads the tool bundle from admin.<domain> (served with the ACME
	// certificate) and keeps its root.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(peb.RootPEM)
	web := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "admin." + env.Domain},
	}}
	resp, err := web.Get("https://" + env.WebAddr + "/com/remoteproxy/tools.zip")
	if err != nil {
		t.Fatalf("downloading the tool bundle over the ACME certificate: %v", err)
	}
	bundle, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The bundle names the root after tls.acme.root_file (isrgrootx1.pem by default).
	root := zipEntry(t, bundle, filepath.Base(peb.RootFile))
	if !bytes.Equal(bytes.TrimSpace(root), bytes.TrimSpace(peb.RootPEM)) {
		t.Fatalf("the bundle's root is not pebble's root")
	}
	rootFile := filepath.Join(t.TempDir(), "isrgrootx1.pem")
	os.WriteFile(rootFile, root, 0o644)

	sshd := testenv.StartSSHD(t)
	page := testenv.StartTCP(t, "127.0.0.1:0", func(c net.Conn) {
		c.Read(make([]byte, 4096))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 19\r\nConnection: close\r\n\r\nbehind the agent ok")
	})
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, CAFile: rootFile,
		Services: map[int]string{22: sshd.Addr, 8080: page}})

	proxyHost := "maint." + env.Domain
	proxyPort := portOf(t, env.ProxyAddr)
	out, err := exec.Command("curl", "-sS", "--max-time", "20", "--resolve", fmt.Sprintf("%s:%d:127.0.0.1", proxyHost, proxyPort),
		"--proxy", fmt.Sprintf("https://%s:%d", proxyHost, proxyPort), "--proxy-user", "resa:pass-a", "--proxy-cacert", rootFile,
		"--proxytunnel", "http://12345-se1.maint."+env.Domain+":8080/").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "behind the agent ok") {
		t.Fatalf("curl through the ACME-certified proxy: %v\n%s", err, out)
	}

	// proxytunnel names the proxy in TLS (SNI and verification), so maint.<domain> must
	// resolve: a private mount namespace sees its own /etc/hosts; the machine's is untouched.
	hosts := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 localhost "+proxyHost+"\n"), 0o644)
	pc := fmt.Sprintf("unshare -m sh -c 'mount --bind %s /etc/hosts && exec proxytunnel -q -E -p %s:%d -d %%h:%%p -P resa:pass-a -C %s'",
		hosts, proxyHost, proxyPort, rootFile)
	out, err = exec.Command("ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "-i", sshd.KeyFile, "-o", "ProxyCommand="+pc,
		"root@12345-se1.maint."+env.Domain, "echo acme-$((40+2))").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "acme-42") {
		t.Fatalf("ssh via proxytunnel -C <bundle root>: %v\n%s", err, out)
	}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

// zipEntry returns the content of the entry whose base name is name.
func zipEntry(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("tool bundle: %v", err)
	}
	for _, f := range zr.File {
		if filepath.Base(f.Name) == name {
			rc, _ := f.Open()
			defer rc.Close()
			b, _ := io.ReadAll(rc)
			return b
		}
	}
	t.Fatalf("tool bundle has no %s", name)
	return nil
}
