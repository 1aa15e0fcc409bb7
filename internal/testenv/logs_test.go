package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckLogsFindsSecrets: a noted password, or the Basic value a client sends for it,
// in any process log is reported by file and line, and the report does not repeat it.
func TestCheckLogsFindsSecrets(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(LogDirEnv, dir)
	NoteCredentials("resa", "pass-a-long")
	NoteSecret("tiny") // too short to check
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("broker-1.log", `{"msg":"login refused","username":"resa"}`+"\n"+`{"msg":"tiny"}`+"\n")
	var out strings.Builder
	if n := checkLogs(dir, &out); n != 0 {
		t.Fatalf("clean logs: %d found:\n%s", n, out.String())
	}
	write("agent-2.log", "ok\n"+`{"msg":"header","auth":"Basic `+basicValue("resa", "pass-a-long")+`=="}`+"\n")
	write("maint-3.log", "password pass-a-long\n")
	out.Reset()
	if n := checkLogs(dir, &out); n != 2 {
		t.Fatalf("%d found, want 2:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "agent-2.log line 2") || !strings.Contains(out.String(), "maint-3.log line 1") ||
		strings.Contains(out.String(), "pass-a-long") {
		t.Errorf("report:\n%s", out.String())
	}
}
