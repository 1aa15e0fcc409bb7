package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/testenv"
)

// clientsEnv is a broker with 12345/SE1 serving a real sshd and a co-located echo.
type clientsEnv struct {
	env      *testenv.Env
	sshd     *testenv.SSHD
	maint    string
	coloAddr string // 127.0.0.9:port, behind a tunnel entry
	cfgPath  string // maint's stored settings
	environ  []string
}

func startClientsEnv(t *testing.T, extraTunnels ...config.Tunnel) *clientsEnv {
	t.Helper()
	testenv.NeedCommands(t, "ssh", "scp", "sftp", "proxytunnel")
	c := &clientsEnv{env: testenv.Start(t, testenv.Options{}), sshd: testenv.StartSSHD(t), maint: testenv.BinPath(t, "maint")}
	c.coloAddr = testenv.StartEcho(t, "127.0.0.9:0")
	tunnels := append([]config.Tunnel{{Application: "RDP", IP: "127.0.0.9", Port: portOf(t, c.coloAddr)}}, extraTunnels...)
	c.env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Colocated: true,
		Services: map[int]string{22: c.sshd.Addr}, Tunnels: tunnels})
	c.cfgPath = filepath.Join(t.TempDir(), "maint", "config.json")
	c.environ = append(os.Environ(), "MAINT_CONFIG="+c.cfgPath)
	return c
}

// run runs a command with maint's settings file in the environment.
func (c *clientsEnv) run(t *testing.T, stdin io.Reader, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = c.environ
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// login stores the proxy settings the way a technician does once.
func (c *clientsEnv) login(t *testing.T) {
	t.Helper()
	out, err := c.run(t, strings.NewReader("pass-a\n"), c.maint, "login", "--proxy", c.env.ProxyAddr, "-P", "resa", "-C", c.env.CAFile)
	if err != nil || !strings.Contains(out, "accepts resa") {
		t.Fatalf("maint login: %v\n%s", err, out)
	}
}

func (c *clientsEnv) sshArgs(proxyCommand string) []string {
	return []string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=20", "-i", c.sshd.KeyFile, "-o", "ProxyCommand=" + proxyCommand}
}

// TestSSHAndSFTPThroughStockClients: OpenSSH through `maint connect` (credentials from
// `maint login`), through maint with proxytunnel's own flags, and through proxytunnel:
// a command, then 50 MiB up with scp and back with sftp, checksums equal.
func TestSSHAndSFTPThroughStockClients(t *testing.T) {
	c := startClientsEnv(t)
	c.login(t)
	host := "12345-SE1.maint." + c.env.Domain
	data := make([]byte, 50<<20)
	sendRandom(bytes.NewBuffer(data[:0]), int64(len(data)), 7)
	local := filepath.Join(t.TempDir(), "payload.bin")
	os.WriteFile(local, data, 0o600)
	want := sha256.Sum256(data)

	for _, pc := range []struct{ name, cmd string }{
		{"maint connect", c.maint + " connect %h:%p"},
		{"maint with proxytunnel flags", fmt.Sprintf("%s -E --proxy=%s --dest=%%h:%%p -P 'resa:pass-a' -C %s", c.maint, c.env.ProxyAddr, c.env.CAFile)},
		{"proxytunnel", fmt.Sprintf("proxytunnel -q -E --proxy=%s --dest=%%h:%%p -P 'resa:pass-a' -C %s", c.env.ProxyAddr, c.env.CAFile)},
	} {
		t.Run(pc.name, func(t *testing.T) {
			args := c.sshArgs(pc.cmd)
			out, err := c.run(t, nil, "ssh", append(args, "root@"+host, "echo ssh-$((40+2))")...)
			if err != nil || !strings.Contains(out, "ssh-42") {
				t.Fatalf("ssh: %v\n%s", err, out)
			}
			remote := filepath.Join(t.TempDir(), "remote.bin")
			start := time.Now()
			if out, err := c.run(t, nil, "scp", append(args, local, "root@"+host+":"+remote)...); err != nil {
				t.Fatalf("scp: %v\n%s", err, out)
			}
			t.Logf("scp of 50 MiB up took %v", time.Since(start).Round(time.Millisecond))
			back := filepath.Join(t.TempDir(), "back.bin")
			batch := strings.NewReader("get " + remote + " " + back + "\n")
			if out, err := c.run(t, batch, "sftp", append(append([]string{"-b", "-"}, args...), "root@"+host)...); err != nil {
				t.Fatalf("sftp: %v\n%s", err, out)
			}
			up, _ := os.ReadFile(remote)
			down, _ := os.ReadFile(back)
			if sha256.Sum256(up) != want || sha256.Sum256(down) != want {
				t.Fatalf("checksums differ: up %x down %x want %x", sha256.Sum256(up), sha256.Sum256(down), want)
			}
		})
	}
}

// TestPlinkThroughMaintAndProxytunnel: PuTTY's plink with a local proxy command.
func TestPlinkThroughMaintAndProxytunnel(t *testing.T) {
	testenv.NeedCommands(t, "plink", "puttygen", "ssh-keygen")
	c := startClientsEnv(t)
	c.login(t)
	ppk := filepath.Join(t.TempDir(), "key.ppk")
	if out, err := exec.Command("puttygen", c.sshd.KeyFile, "-O", "private", "-o", ppk).CombinedOutput(); err != nil {
		t.Fatalf("puttygen: %v\n%s", err, out)
	}
	fp, err := exec.Command("ssh-keygen", "-lf", c.sshd.HostPubFile, "-E", "sha256").Output()
	if err != nil {
		t.Fatal(err)
	}
	hostkey := strings.Fields(string(fp))[1]
	// plink keeps the host's case; the broker matches names case-insensitively.
	host := "12345-SE1.maint." + c.env.Domain
	for _, pc := range []struct{ name, cmd string }{
		{"maint connect", c.maint + " connect %host:%port"},
		{"proxytunnel", fmt.Sprintf("proxytunnel -q -E -p %s -d %%host:%%port -P resa:pass-a -C %s", c.env.ProxyAddr, c.env.CAFile)},
	} {
		t.Run(pc.name, func(t *testing.T) {
			out, err := c.run(t, nil, "plink", "-batch", "-ssh", "-P", "22", "-i", ppk, "-hostkey", hostkey,
				"-proxycmd", pc.cmd, "root@"+host, "echo plink-$((40+2))")
			if err != nil || !strings.Contains(out, "plink-42") {
				t.Fatalf("plink: %v\n%s", err, out)
			}
		})
	}
}

// TestMaintConnectHalfClose: EOF on stdin half-closes the tunnel and the reply still
// arrives (proxytunnel tears down instead).
func TestMaintConnectHalfClose(t *testing.T) {
	c := startClientsEnv(t)
	c.login(t)
	msg := strings.Repeat("half-close keeps the reply flowing\n", 20000)
	out, err := c.run(t, strings.NewReader(msg), c.maint, "connect", fmt.Sprintf("12345-se1-127.0.0.9.maint.%s:%d", c.env.Domain, portOf(t, c.coloAddr)))
	if err != nil || out != msg {
		t.Fatalf("echo through maint connect: %v; got %d of %d bytes", err, len(out), len(msg))
	}
}

// TestMaintErrors: each proxy refusal is one clear line and exit status 1.
func TestMaintErrors(t *testing.T) {
	c := startClientsEnv(t)
	c.login(t)
	d := c.env.Domain
	off := c.env.StartAgent(t, testenv.Agent{Customer: "67890", System: "SE1", RemoteAccess: true})
	mark := c.env.Proc().Mark()
	off.Kill()
	c.env.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool { return r.Msg() == "agent disconnected" })
	for _, row := range []struct {
		name   string
		env    []string
		target string
		want   string
	}{
		{"wrong password", []string{"MAINT_PROXY_PASSWORD=nope"}, "12345.maint." + d + ":22", "maint: wrong proxy username or password"},
		{"forbidden", nil, "55555.maint." + d + ":22", "maint: customer not found for this proxy account"},
		{"policy", nil, "12345-se1-127.0.0.10.maint." + d + ":3389", "maint: refused by the customer's settings: no TCP tunnel entry for 127.0.0.10 port 3389"},
		{"offline", nil, "67890.maint." + d + ":22", "maint: system offline: system 67890-se1 offline since"},
		{"not a maintenance host", nil, "127.0.0.1:22", "maint: this proxy only reaches customer systems"},
	} {
		t.Run(row.name, func(t *testing.T) {
			cmd := exec.Command(c.maint, "connect", row.target)
			cmd.Env = append(append([]string{}, c.environ...), row.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errorsAs(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v", err)
			}
			line := stderr.String()
			if !strings.HasPrefix(line, row.want) || strings.Count(line, "\n") != 1 {
				t.Fatalf("stderr %q, want one line starting %q", line, row.want)
			}
		})
	}
}

func errorsAs(err error, target **exec.ExitError) bool {
	ee, ok := err.(*exec.ExitError)
	*target = ee
	return ok
}

// TestMaintStatus shows the settings without the password and checks them.
func TestMaintStatus(t *testing.T) {
	c := startClientsEnv(t)
	c.login(t)
	out, err := c.run(t, nil, c.maint, "status")
	if err != nil || !strings.Contains(out, "accepts these credentials") || !strings.Contains(out, "resa") ||
		strings.Contains(out, "pass-a") || !strings.Contains(out, "stored by maint login") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	st, _ := os.Stat(c.cfgPath)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("settings file mode %v", st.Mode())
	}
	c.environ = append(c.environ, "MAINT_PROXY_PASSWORD=wrong")
	out, err = c.run(t, nil, c.maint, "status")
	if err == nil || !strings.Contains(out, "REFUSED: wrong proxy username or password") || !strings.Contains(out, "MAINT_PROXY_PASSWORD") {
		t.Fatalf("status with a wrong password: %v\n%s", err, out)
	}
}

// TestRDPPathForwards: `maint forward` and `proxytunnel --standalone` each forward a local
// port to a co-located target; several connections at once, each checked end to end.
func TestRDPPathForwards(t *testing.T) {
	c := startClientsEnv(t)
	c.login(t)
	target := fmt.Sprintf("12345-SE1-127.0.0.9.maint.%s:%d", c.env.Domain, portOf(t, c.coloAddr))

	t.Run("maint forward", func(t *testing.T) {
		addr := startForward(t, c, c.maint, "forward", target)
		checkConcurrentEcho(t, addr, 8, 4<<20)
	})
	t.Run("proxytunnel standalone", func(t *testing.T) {
		pt := testenv.StartExternal(t, "proxytunnel", "127.0.0.1", 1, func(ports []int) *exec.Cmd {
			return exec.Command("proxytunnel", "-q", "-E", "-p", c.env.ProxyAddr, "-d", target, "-P", "resa:pass-a",
				"-C", c.env.CAFile, fmt.Sprintf("--standalone=%d", ports[0]))
		})
		checkConcurrentEcho(t, pt.Addr("127.0.0.1"), 8, 4<<20)
	})
}

// startForward runs `maint forward` and returns the address it prints.
func startForward(t *testing.T, c *clientsEnv, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = c.environ
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("maint forward did not stop cleanly on Ctrl-C: %v\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("maint forward did not stop on Ctrl-C")
		}
	})
	line := make([]byte, 256)
	n, _ := io.ReadAtLeast(stdout, line, len("Forwarding 127.0.0.1:1 "))
	go func() { io.Copy(io.Discard, stdout); done <- cmd.Wait() }()
	f := strings.Fields(string(line[:n]))
	if len(f) < 2 || f[0] != "Forwarding" {
		t.Fatalf("maint forward printed %q; stderr %s", line[:n], stderr.String())
	}
	return f[1]
}

// checkConcurrentEcho opens n connections to an echo behind addr and checks size bytes
// round-trip on each, all at once.
func checkConcurrentEcho(t *testing.T, addr string, n, size int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(60 * time.Second))
			sent := make(chan [32]byte, 1)
			go func() { sent <- sendRandom(conn, int64(size), uint64(i)) }()
			h := sha256.New()
			if _, err := io.CopyN(h, conn, int64(size)); err != nil {
				t.Errorf("connection %d: %v", i, err)
				return
			}
			if s := <-sent; hex.EncodeToString(h.Sum(nil)) != hex.EncodeToString(s[:]) {
				t.Errorf("connection %d: echo differs", i)
			}
		}()
	}
	wg.Wait()
}

// TestRDPHandshakeThroughForward: a real RDP server with NLA (FreeRDP's shadow server on a
// co-located 127.0.0.x address) and xfreerdp +auth-only through `maint forward`: the right
// password authenticates, a wrong one does not.
func TestRDPHandshakeThroughForward(t *testing.T) {
	testenv.NeedCommands(t, "Xvfb", "freerdp-shadow-cli", "xfreerdp", "winpr-hash")
	dir := t.TempDir()
	display := fmt.Sprintf(":%d", 50+os.Getpid()%40)
	xvfb := exec.Command("Xvfb", display, "-screen", "0", "800x600x24", "-nolisten", "tcp")
	startBackground(t, xvfb)
	sam, err := exec.Command("winpr-hash", "-u", "rdpuser", "-p", "S3cret!", "-f", "sam").Output()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "sam"), sam, 0o600)
	os.MkdirAll(filepath.Join(dir, "shome"), 0o700)
	shadow := testenv.StartExternal(t, "freerdp-shadow-cli", "127.0.0.11", 1, func(ports []int) *exec.Cmd {
		cmd := exec.Command("freerdp-shadow-cli", fmt.Sprintf("/port:%d", ports[0]), "/bind-address:127.0.0.11", "/sec:nla",
			"/sam-file:"+filepath.Join(dir, "sam"))
		cmd.Env = append(os.Environ(), "HOME="+filepath.Join(dir, "shome"), "DISPLAY="+display)
		return cmd
	})
	rdpPort := shadow.Ports[0]
	c := startClientsEnv(t, config.Tunnel{Application: "RDP", IP: "127.0.0.11", Port: rdpPort})
	c.login(t)

	addr := startForward(t, c, c.maint, "forward", fmt.Sprintf("12345-SE1-127.0.0.11.maint.%s:%d", c.env.Domain, rdpPort))
	xfreerdp := func(password string) error {
		cmd := exec.Command("xfreerdp", "+auth-only", "/sec:nla", "/v:"+addr, "/u:rdpuser", "/p:"+password, "/cert:ignore")
		cmd.Env = append(os.Environ(), "HOME="+filepath.Join(dir, "chome"), "DISPLAY="+display)
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			return err
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return err
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			return fmt.Errorf("xfreerdp hung")
		}
	}
	if err := xfreerdp("S3cret!"); err != nil {
		t.Fatalf("RDP NLA with the right password through maint forward: %v", err)
	}
	if err := xfreerdp("wrong"); err == nil {
		t.Fatal("RDP NLA accepted a wrong password: the handshake did not reach the server")
	}
}

// startBackground starts cmd in its own process group, killed when the test ends.
func startBackground(t *testing.T, cmd *exec.Cmd) <-chan struct{} {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-exited })
	return exited
}

// TestToolBundleShipsMaint: built client binaries are in the bundle and run.
func TestToolBundleShipsMaint(t *testing.T) {
	tools := t.TempDir()
	src, _ := os.ReadFile(testenv.BinPath(t, "maint"))
	os.WriteFile(filepath.Join(tools, "maint-linux-amd64"), src, 0o755)
	t.Setenv("MAINTPROXY_TOOLS_DIR", tools)
	env := testenv.Start(t, testenv.Options{})
	out, err := exec.Command("curl", "-sS", "--fail", "--cacert", env.CAFile, "--resolve", "admin."+env.Domain+":"+fmt.Sprint(portOf(t, env.WebAddr))+":127.0.0.1",
		"https://admin."+env.Domain+":"+fmt.Sprint(portOf(t, env.WebAddr))+"/com/remoteproxy/tools.zip").Output()
	if err != nil {
		t.Fatalf("downloading tools.zip: %v", err)
	}
	bin := zipEntry(t, out, "maint-linux-amd64")
	path := filepath.Join(t.TempDir(), "maint")
	os.WriteFile(path, bin, 0o755)
	if v, err := exec.Command(path, "--version").CombinedOutput(); err != nil || !strings.Contains(string(v), "maint version") {
		t.Fatalf("bundled maint: %v %s", err, v)
	}
	if ca := zipEntry(t, out, "maintproxy-ca.pem"); !bytes.Contains(ca, []byte("BEGIN CERTIFICATE")) {
		t.Fatal("bundle has no CA certificate")
	}
}
