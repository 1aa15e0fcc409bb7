package testenv

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// LogDirEnv names the directory where every process StartProc runs keeps its log, and
// where the secrets the tests handed out are noted; Main sets it for the whole run and
// checks, once every test has finished, that no log holds any of those secrets.
const LogDirEnv = "MAINTPROXY_TEST_LOGDIR"

const secretsFile = "secrets.txt"

// NoteSecret records secrets the tests give to processes (passwords, agent secrets), so
// that Main can check that no process logged them; nothing happens outside Main's run.
// Secrets shorter than 6 bytes are too likely to occur by chance and are not checked.
func NoteSecret(secrets ...string) {
	dir := os.Getenv(LogDirEnv)
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, secretsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	var b strings.Builder
	for _, s := range secrets {
		if len(s) >= 6 && !strings.ContainsAny(s, "\n") {
			b.WriteString(s + "\n")
		}
	}
	io.WriteString(f, b.String()) // one write: lines of concurrent tests do not mix
}

// NoteCredentials records a Basic credential: the password, and the header value a
// client sends for it.
func NoteCredentials(user, password string) {
	NoteSecret(password, basicValue(user, password))
}

func basicValue(user, password string) string {
	return strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(user+":"+password)), "=")
}

// processLog opens the file a process's log lines are copied to, or nil outside Main.
func processLog(name string, pid int) *os.File {
	dir := os.Getenv(LogDirEnv)
	if dir == "" {
		return nil
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.log", strings.ReplaceAll(name, "/", "_"), pid)))
	if err != nil {
		return nil
	}
	return f
}

// checkLogs reports every log line under dir that holds a noted secret (naming the file
// and line, never printing the secret itself) and returns how many it found.
func checkLogs(dir string, w io.Writer) int {
	data, err := os.ReadFile(filepath.Join(dir, secretsFile))
	if err != nil {
		return 0 // nothing noted
	}
	secrets := map[string]bool{}
	for _, s := range strings.Split(string(data), "\n") {
		if s != "" {
			secrets[s] = true
		}
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	found := 0
	for _, path := range logs {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			for s := range secrets {
				if strings.Contains(line, s) {
					found++
					fmt.Fprintf(w, "testenv: %s line %d holds a secret the tests handed out (%d bytes, starting %q)\n",
						filepath.Base(path), n, len(s), s[:2])
				}
			}
		}
		f.Close()
	}
	fmt.Fprintf(w, "testenv: %d process logs checked for %d secrets: %d found\n", len(logs), len(secrets), found)
	return found
}
