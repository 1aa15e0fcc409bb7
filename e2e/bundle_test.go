package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/testenv"
	"maintproxy/pac"
)

// TestMakeBuildBundle: `make build` builds the broker and every client of the tool bundle
// next to it; the broker started from there ships them all (and says nothing is missing),
// the README and the access page name exactly what is inside, and the bundled Linux maint,
// saved under the name proxytunnel, runs the manual's own command lines (ssh with a
// ProxyCommand, and --standalone for RDP) against the broker.
func TestMakeBuildBundle(t *testing.T) {
	testenv.NeedCommands(t, "make", "ssh", "unshare")
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "bin")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "make", "-C", root, "build", "BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	t.Logf("make build took %v", time.Since(start).Round(time.Second))
	for _, name := range []string{"maintproxy", "maintagent", "maint"} {
		if st, err := os.Stat(filepath.Join(bin, name)); err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("make build made no %s: %v", name, err)
		}
	}

	env := testenv.Start(t, testenv.Options{Broker: filepath.Join(bin, "maintproxy")})
	for _, r := range env.Proc().Records() {
		if strings.Contains(r.Msg(), "clients missing") {
			t.Errorf("the broker of make build misses clients: %v", r)
		}
	}
	files := bundleFiles(t, env)
	want := append([]string{"maintproxy-ca.pem", "README.txt"}, pac.ExpectedClients()...)
	slices.Sort(want)
	var names []string
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("tools.zip holds %v, want %v", names, want)
	}
	readme := string(files["README.txt"])
	for _, name := range want {
		if !strings.Contains(readme, "\n  "+name+" ") {
			t.Errorf("README does not list %s", name)
		}
	}
	if !bytes.Equal(files["proxytunnel.exe"], files["maint-windows-amd64.exe"]) || !bytes.HasPrefix(files["proxytunnel.exe"], []byte("MZ")) {
		t.Error("proxytunnel.exe is not maint for Windows")
	}
	// The access page claims exactly the bundle's files.
	var overview struct{ Tools []string }
	getJSON(t, env, "/com/remoteproxy/access", &overview)
	slices.Sort(overview.Tools)
	if !slices.Equal(overview.Tools, want) {
		t.Errorf("access page lists %v", overview.Tools)
	}

	// The bundle unzipped as the README says, with maint for this machine as proxytunnel.
	tools := filepath.Join(t.TempDir(), "maintproxy-tools")
	os.MkdirAll(tools, 0o755)
	for name, data := range files {
		os.WriteFile(filepath.Join(tools, name), data, 0o755)
	}
	maint := fmt.Sprintf("maint-%s-%s", runtime.GOOS, runtime.GOARCH)
	if files[maint] == nil {
		t.Fatalf("no %s in the bundle", maint)
	}
	os.WriteFile(filepath.Join(tools, "proxytunnel"), files[maint], 0o755)
	sshd := testenv.StartSSHD(t)
	echo := testenv.StartEcho(t, "127.0.0.9:0")
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{22: sshd.Addr},
		Colocated: true, Tunnels: []config.Tunnel{{Application: "RDP", IP: "127.0.0.9", Port: portOf(t, echo)}}})
	hosts := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 localhost maint."+env.Domain+"\n"), 0o644)
	proxy := fmt.Sprintf("maint.%s:%d", env.Domain, portOf(t, env.ProxyAddr))

	// The manual's SSH line, word for word but for the placeholders (and the test's ssh
	// options in front): ssh <user>@<server> -p 22 -oProxyCommand="<path>/proxytunnel -E
	// --proxy=maint.<domain>:6443 --dest=<…>:22 -P '<proxy-user>:<proxy-password>' -C '<path>/<root>'".
	manual := fmt.Sprintf(`ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i %s `+
		`%s@12345-SE1.maint.%s -p 22 -oProxyCommand="%s/proxytunnel -E --proxy=%s --dest=12345-SE1.maint.%s:22 -P 'resa:pass-a' -C '%s/maintproxy-ca.pem'" 'echo bundle-$((40+2))'`,
		sshd.KeyFile, sshd.User, env.Domain, tools, proxy, env.Domain, tools)
	out, err := exec.Command("unshare", "-m", "sh", "-c", `mount --bind "$1" /etc/hosts && exec sh -c "$2"`, "sh", hosts, manual).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "bundle-42") {
		t.Fatalf("the manual's ssh line through the bundled proxytunnel: %v\n%s", err, out)
	}

	// The manual's RDP line: a local port bound through the proxy, then a client on it
	// (the echo stands for the RDP server).
	fwd := testenv.StartExternal(t, "proxytunnel --standalone", "127.0.0.1", 1, func(ports []int) *exec.Cmd {
		line := fmt.Sprintf(`%s/proxytunnel --standalone=%d -E --proxy=%s --dest=12345-SE1-127.0.0.9.maint.%s:%d -P 'resa:pass-a' -C '%s/maintproxy-ca.pem'`,
			tools, ports[0], proxy, env.Domain, portOf(t, echo), tools)
		return exec.Command("unshare", "-m", "sh", "-c", `mount --bind "$1" /etc/hosts && exec sh -c "$2"`, "sh", hosts, line)
	})
	c, err := net.DialTimeout("tcp", fwd.Addr("127.0.0.1"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	msg := []byte("rdp through the bundled proxytunnel\n")
	c.Write(msg)
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("echo through --standalone: %v %q\n%s", err, back, fwd.Output())
	}
}

// bundleFiles downloads tools.zip and returns its files by base name.
func bundleFiles(t *testing.T, env *testenv.Env) map[string][]byte {
	t.Helper()
	resp, err := webClient(t, env).Get("https://" + env.WebAddr + "/com/remoteproxy/tools.zip")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("tools.zip (%s): %v", resp.Status, err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		files[strings.TrimPrefix(f.Name, "maintproxy-tools/")] = data
	}
	return files
}

func webClient(t *testing.T, env *testenv.Env) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: env.CAPool(t), ServerName: "admin." + env.Domain}}}
}

// getJSON fetches an access page's JSON as resa.
func getJSON(t *testing.T, env *testenv.Env, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+env.WebAddr+path, nil)
	req.SetBasicAuth("resa", "pass-a")
	req.Header.Set("Accept", "application/json")
	resp, err := webClient(t, env).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %v", path, resp.Status, err)
	}
}
