package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/testenv"
)

// TestCheckCommand: `maintproxy check` accepts a good file and names the bad field.
func TestCheckCommand(t *testing.T) {
	bin := filepath.Join(testenv.Bin(t), "maintproxy")
	env := testenv.Start(t, testenv.Options{})
	out, err := exec.Command(bin, "check", "--config", env.ConfigPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("check of a good config: %v\n%s", err, out)
	}
	good, _ := os.ReadFile(env.ConfigPath)
	for _, c := range []struct{ from, to, field string }{
		{`"domain": "example.test"`, `"domain": ""`, "domain:"},
		{`"level": "debug"`, `"level": "loud"`, "log.level:"},
		{`"data_dir":`, `"tls": {"mode": "acme"}, "data_dir":`, "tls.acme.email:"},
		{`"data_dir":`, `"tls": {"mode": "files", "files": {"cert": "/nonexistent.pem", "key": "/nonexistent.key"}}, "data_dir":`, "tls.files"},
	} {
		bad := strings.Replace(string(good), c.from, c.to, 1)
		if bad == string(good) {
			t.Fatalf("replacement %q not applied", c.from)
		}
		p := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(p, []byte(bad), 0o600)
		out, err := exec.Command(bin, "check", "--config", p).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.field) {
			t.Errorf("check with %s: %v\n%s", c.to, err, out)
		}
	}
}

// TestPasswdCommand: `maintproxy passwd` hashes stdin for the config.
func TestPasswdCommand(t *testing.T) {
	cmd := exec.Command(filepath.Join(testenv.Bin(t), "maintproxy"), "passwd")
	cmd.Stdin = strings.NewReader("correct horse\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	h := strings.TrimSpace(string(out))
	if !config.VerifySecret(h, "correct horse") || strings.Contains(h, "correct") {
		t.Fatalf("passwd printed %q", h)
	}
}

// TestDemo runs `maintproxy demo` (what `make run` starts), opens the web addresses it
// prints with its credentials, pastes its curl commands and its SSH line (OpenSSH through
// proxytunnel to the demo's own SSH server), and stops it with Ctrl-C.
func TestDemo(t *testing.T) {
	testenv.NeedCommands(t, "curl", "ssh", "proxytunnel")
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(testenv.Bin(t), "maintproxy"), "demo", "--data-dir", filepath.Join(dir, "data"),
		"--proxy", "127.0.0.1:0", "--web", "127.0.0.1:0")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	var curl []string
	var sshLine, caFile string
	web := map[string]string{}
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch f := strings.Fields(l); {
		case strings.HasPrefix(l, "curl --proxy"):
			curl = append(curl, l)
		case strings.HasPrefix(l, "ssh -i ") && sshLine == "":
			sshLine = l
		case strings.HasPrefix(l, "identity CA "):
			caFile = strings.TrimPrefix(l, "identity CA ")
		case len(f) == 3 && (f[0] == "access" || f[0] == "PAC" || f[0] == "tool") && strings.HasPrefix(f[2], "https://"):
			web[f[0]] = f[2]
		}
		if strings.HasPrefix(l, "curl -v --proxy") {
			break // the banner's last command
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if len(curl) < 2 || sshLine == "" || caFile == "" || len(web) != 3 {
		t.Fatalf("demo printed curl %q, ssh %q, CA %q, web %v", curl, sshLine, caFile, web)
	}
	want := []*regexp.Regexp{regexp.MustCompile(`web control panel of customer 12345`), regexp.MustCompile(`co-located server 127\.0\.0\.5`)}
	for i, c := range curl {
		// The agents connect right after the banner; retry briefly while they come up.
		retry(t, c, func() ([]byte, error) {
			return exec.Command("sh", "-c", fmt.Sprintf("%s -sS --max-time %d", c, int(testenv.Scale(10*time.Second).Seconds()))).CombinedOutput()
		}, want[i])
	}

	// The web addresses, with the printed credentials, trusting the printed CA.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for name, check := range map[string]func([]byte) bool{
		"access": func(b []byte) bool { return bytes.Contains(b, []byte(`"id": "12345"`)) },
		"PAC":    func(b []byte) bool { return bytes.Contains(b, []byte("function FindProxyForURL")) },
		"tool":   func(b []byte) bool { return bytes.HasPrefix(b, []byte("PK\x03\x04")) },
	} {
		req, _ := http.NewRequest(http.MethodGet, web[name], nil)
		req.SetBasicAuth("demo", "demo-password")
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", name, web[name], err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !check(body) {
			t.Errorf("%s %s: %s %.200q", name, web[name], resp.Status, body)
		}
	}

	// The SSH line reaches the demo's SSH server through the proxy: a command, then a
	// shell fed on stdin.
	retry(t, sshLine, func() ([]byte, error) {
		return exec.Command("sh", "-c", sshLine+" -o BatchMode=yes -o ConnectTimeout=10 hostname").CombinedOutput()
	}, regexp.MustCompile(`12345-se1 \(maintproxy demo server\)`))
	shell := exec.Command("sh", "-c", sshLine+" -o BatchMode=yes")
	shell.Stdin = strings.NewReader("whoami\necho demo-$((6*7))\nrm -rf /\nexit\n")
	out, err := shell.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tech\ndemo-$((6*7))\ndemo: rm: not available") {
		t.Errorf("ssh shell: %v\n%s", err, out)
	}

	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo did not exit cleanly on Ctrl-C: %v", err)
		}
	case <-time.After(testenv.Scale(15 * time.Second)):
		t.Fatal("demo did not stop on Ctrl-C")
	}
}

// retry runs a printed command until its output matches want, for up to 15 s (the demo's
// agents connect right after it prints).
func retry(t *testing.T, what string, run func() ([]byte, error), want *regexp.Regexp) {
	t.Helper()
	deadline := time.Now().Add(testenv.Scale(15 * time.Second))
	for {
		out, err := run()
		if err == nil && want.Match(out) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s\n%v: %s", what, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentStopsOnSIGTERM: the agent exits cleanly and the broker sees it leave.
func TestAgentStopsOnSIGTERM(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	agent := env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true})
	mark := env.Proc().Mark()
	agent.Stop(t)
	env.Proc().WaitLogAfter(t, mark, 10*time.Second, func(r testenv.Record) bool {
		return r.Msg() == "agent disconnected" && r.Str("identity") == "12345/se1"
	})
}
