package e2e

import (
	"bufio"
	"fmt"
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

// TestDemo runs `maintproxy demo` (what `make run` starts), pastes its curl command, and
// stops it with Ctrl-C.
func TestDemo(t *testing.T) {
	testenv.NeedCommands(t, "curl")
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
	for sc.Scan() && len(curl) < 2 {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "curl --proxy") {
			curl = append(curl, l)
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if len(curl) < 2 {
		t.Fatal("demo printed no curl commands")
	}
	want := []*regexp.Regexp{regexp.MustCompile(`web control panel of customer 12345`), regexp.MustCompile(`co-located server 127\.0\.0\.5`)}
	for i, c := range curl {
		// The agents connect right after the banner; retry briefly while they come up.
		deadline := time.Now().Add(testenv.Scale(15 * time.Second))
		for {
			out, err := exec.Command("sh", "-c", fmt.Sprintf("%s -sS --max-time %d", c, int(testenv.Scale(10*time.Second).Seconds()))).CombinedOutput()
			if err == nil && want[i].Match(out) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s\n%v: %s", c, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
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
