package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maintproxy/certs"
)

// runCmd runs the maintproxy command line args and returns stdout.
func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := rootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestCertsShowAndRegenerate: show before any CA, regenerate makes the first, again a next
// CA (both listed), again refuses without --now, and --now switches; --json parses.
func TestCertsShowAndRegenerate(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "maintproxy.yaml")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(cfgPath, []byte("domain: example.test\ndata_dir: "+data+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, "certs", "show", "--config", cfgPath)
	if err != nil || !strings.Contains(out, "no identity CA in data_dir yet") {
		t.Fatalf("show without a CA: %v\n%s", err, out)
	}
	if _, err := os.Stat(data); err == nil {
		t.Fatal("show created data_dir")
	}
	if out, err = runCmd(t, "certs", "regenerate", "--config", cfgPath); err != nil || !strings.Contains(out, "Made the identity CA") {
		t.Fatalf("first regenerate: %v\n%s", err, out)
	}
	out, err = runCmd(t, "certs", "regenerate", "--config", cfgPath)
	if err != nil || !strings.Contains(out, "Made the next identity CA") || !strings.Contains(out, "identity CA, next") {
		t.Fatalf("regenerate: %v\n%s", err, out)
	}
	if _, err = runCmd(t, "certs", "regenerate", "--config", cfgPath); err == nil || !strings.Contains(err.Error(), "--now") {
		t.Fatalf("regenerate with a next CA published: %v", err)
	}
	out, err = runCmd(t, "certs", "show", "--config", cfgPath, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var d certs.Description
	if err := json.Unmarshal([]byte(out), &d); err != nil || len(d.Roots) != 2 || d.Rollover.SwitchAt.IsZero() {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	next := d.Roots[1].SHA256
	if out, err = runCmd(t, "certs", "regenerate", "--config", cfgPath, "--now"); err != nil || !strings.Contains(out, "Switched") {
		t.Fatalf("regenerate --now: %v\n%s", err, out)
	}
	out, err = runCmd(t, "certs", "show", "--config", cfgPath)
	if err != nil || !strings.Contains(out, "identity CA, current: signs the leaves\n") ||
		!strings.Contains(out, "previous CA published until") {
		t.Fatalf("show after --now: %v\n%s", err, out)
	}
	if i := strings.Index(out, "identity CA, current"); !strings.Contains(out[i:], "SHA-256   "+next) {
		t.Errorf("after --now the current CA is not the former next CA %s:\n%s", next, out)
	}
	if _, err := runCmd(t, "certs", "show", "--config", filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("show with a missing config succeeded")
	}
}
