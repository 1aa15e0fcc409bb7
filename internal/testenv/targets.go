package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"maintproxy/internal/conns"
	"maintproxy/internal/echo"
	"maintproxy/internal/testkit"
)

// StartEcho runs the echo target (package echo) on addr (e.g. "127.0.0.9:0") until the test
// ends and returns its address. It answers a client's half-close with its own.
func StartEcho(t testing.TB, addr string) string {
	t.Helper()
	s, err := echo.Start(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Addr()
}

// StartTCP runs handle for each connection on addr until the test ends; all handlers are
// done before cleanup returns.
func StartTCP(t testing.TB, addr string, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := conns.Serve(ln, 0, handle)
	t.Cleanup(func() { s.Close() })
	return s.Addr()
}

// StartSource runs a download target on addr until the test ends: it sends zeros on every
// connection until the client goes, at most 1 GiB and for 2 minutes.
func StartSource(t testing.TB, addr string) string {
	t.Helper()
	return StartTCP(t, addr, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		c.SetWriteDeadline(time.Now().Add(2 * time.Minute))
		for range (1 << 30) / len(buf) {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}

// StartHTTPS serves h over TLS with cert on addr until the test ends.
func StartHTTPS(t testing.TB, addr string, cert tls.Certificate, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// SSHD is a throwaway OpenSSH server on loopback.
type SSHD struct {
	Addr        string // 127.0.0.1:port
	KeyFile     string // the client's private key (authorized for User)
	HostPubFile string // the server's public host key
	User        string
}

// StartSSHD runs /usr/sbin/sshd on a loopback port (see StartExternal), accepting one
// generated client key.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	NeedCommands(t, "/usr/sbin/sshd", "ssh-keygen")
	dir := t.TempDir()
	s := &SSHD{KeyFile: filepath.Join(dir, "client_key"), HostPubFile: filepath.Join(dir, "host_key.pub"), User: "root"}
	for _, args := range [][]string{
		{"-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host_key")},
		{"-q", "-t", "ed25519", "-N", "", "-f", s.KeyFile},
	} {
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, _ := os.ReadFile(s.KeyFile + ".pub")
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	os.MkdirAll("/run/sshd", 0o755)
	cfgPath := filepath.Join(dir, "sshd_config")
	p := StartExternal(t, "sshd", "127.0.0.1", 1, func(ports []int) *exec.Cmd {
		conf := fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s/host_key
AuthorizedKeysFile %s/authorized_keys
PidFile %s/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel ERROR
`, ports[0], dir, dir, dir)
		os.WriteFile(cfgPath, []byte(conf), 0o600)
		return exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfgPath)
	})
	s.Addr = p.Addr("127.0.0.1")
	return s
}

// NeedCommands fails the test, naming the Debian package set up by scripts/test-deps.sh,
// when a command the test drives is missing.
func NeedCommands(t testing.TB, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			t.Fatalf("%s is not installed: run `make deps` (scripts/test-deps.sh) as root", c)
		}
	}
}

// Reply is the proxy's answer to a CONNECT.
type Reply struct {
	Status int
	Header http.Header
	Body   string   // the response body, for refusals
	Conn   net.Conn // the tunnel, on 200
}

// Connect opens a CONNECT tunnel through the broker's proxy like a client would: TLS to the
// proxy trusting only the broker's CA, Basic credentials (none when user is empty). On a
// 200 the tunnel is in Reply.Conn (closed when the test ends).
func (e *Env) Connect(t testing.TB, user, pass, authority string) Reply {
	t.Helper()
	return e.Request(t, user, pass, "CONNECT", authority)
}

// Request sends one proxy request with any method (CONNECT for tunnels).
func (e *Env) Request(t testing.TB, user, pass, method, target string) Reply {
	t.Helper()
	c, err := tls.Dial("tcp", e.ProxyAddr, &tls.Config{RootCAs: e.CAPool(t), ServerName: "maint." + e.Domain})
	if err != nil {
		t.Fatalf("dialing the proxy: %v", err)
	}
	if _, err := io.WriteString(c, testkit.ProxyRequest(method, target, user, pass)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		c.Close()
		t.Fatalf("reading the proxy's answer: %v", err)
	}
	r := Reply{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode != http.StatusOK || method != "CONNECT" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		c.Close()
		r.Body = string(b)
		return r
	}
	c.SetReadDeadline(time.Time{})
	if br.Buffered() > 0 {
		t.Fatalf("proxy sent %d bytes after its 200 before the target spoke", br.Buffered())
	}
	t.Cleanup(func() { c.Close() })
	r.Conn = c
	return r
}

// CAPool is a pool holding only the broker's identity CA.
func (e *Env) CAPool(t testing.TB) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(e.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}
