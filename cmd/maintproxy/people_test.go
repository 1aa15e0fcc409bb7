package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/cluster/etcdtest"
)

// runIn is runCmd with stdin.
func runIn(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := rootCmd()
	var out bytes.Buffer
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestPeopleCommandsOnEtcd: in cluster mode the people, grants, backup and restore
// commands work on etcd directly; a second configuration file of another broker sees the
// same records; a bad backup is refused without a change.
func TestPeopleCommandsOnEtcd(t *testing.T) {
	m := etcdtest.Start(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "cluster.secret")
	os.WriteFile(secret, []byte(strings.Repeat("s3cr3t-", 8)), 0o600)
	hash, _ := bcrypt.GenerateFromPassword([]byte("account-pass"), bcrypt.MinCost)
	conf := func(node string) string {
		p := filepath.Join(dir, node+".yaml")
		y := "domain: example.test\ndata_dir: " + filepath.Join(dir, node) + "\n" +
			"cluster:\n  node: " + node + "\n  secret_file: " + secret + "\n  etcd:\n    endpoints: [" + m.ClientURL + "]\n" +
			"accounts:\n  - username: resa\n    password_hash: \"" + string(hash) + "\"\n    customers: [\"12345\"]\n" +
			"customers:\n  - id: \"12345\"\n    systems:\n      - name: se1\n        primary: true\n        agent_secret_hash: \"" + string(hash) + "\"\n"
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c1, c2 := conf("b1"), conf("b2")
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, err := runIn(t, stdin, args...)
		if err != nil {
			t.Fatalf("maintproxy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	must("Alice-pass-1\n", "people", "add", "alice", "--org", "resa", "--config", c1)
	must("Alice-pass-1\n", "people", "add", "cadmin", "--customer", "12345", "--config", c1)
	must("", "people", "role", "alice", "supervisor", "--config", c2)
	must("", "grants", "mode", "12345", "se1", "approval", "--config", c2)
	must("", "grants", "add", "12345", "se1", "alice", "--for", "2h", "--config", c1)
	list := must("", "people", "list", "--config", c1)
	if !strings.Contains(list, "alice     resa          supervisor") || !strings.Contains(list, "cadmin    12345         customer-admin") {
		t.Fatalf("people list:\n%s", list)
	}
	if g := must("", "grants", "list", "--config", c2); !strings.Contains(g, "approval") || !strings.Contains(g, "grant") {
		t.Errorf("grants list:\n%s", g)
	}
	backup := filepath.Join(dir, "backup.json")
	must("", "backup", "--out", backup, "--config", c1)
	if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	must("", "people", "delete", "cadmin", "--config", c2)
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte("not json"), 0o600)
	if out, err := runIn(t, "", "restore", "--in", filepath.Join(dir, "bad.json"), "--config", c1); err == nil {
		t.Errorf("a bad backup was restored: %s", out)
	}
	must("", "restore", "--in", backup, "--config", c2)
	if got := must("", "people", "list", "--config", c2); got != list {
		t.Errorf("after restore:\n%s\nwant:\n%s", got, list)
	}
	if _, err := runIn(t, "", "people", "disable", "nobody", "--config", c1); err == nil {
		t.Error("disabling an unknown person succeeded")
	}
}

// TestAccountCommands: with a single broker stopped, `account passwd` stores a proxy
// account's password in data_dir's store; `account list` and `check` say it applies
// instead of the file's; after the file's password_hash changed they say the file wins;
// `account clear` removes it.
func TestAccountCommands(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "maintproxy.yaml")
	write := func(accountPass string) {
		hash, _ := bcrypt.GenerateFromPassword([]byte(accountPass), bcrypt.MinCost)
		y := "domain: example.test\ndata_dir: " + filepath.Join(dir, "data") + "\n" +
			"accounts:\n  - username: resa\n    password_hash: \"" + string(hash) + "\"\n    customers: [\"12345\"]\n" +
			"customers:\n  - id: \"12345\"\n    systems:\n      - name: se1\n        primary: true\n        agent_secret_hash: \"" + string(hash) + "\"\n"
		if err := os.WriteFile(conf, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, err := runIn(t, stdin, append(args, "--config", conf)...)
		if err != nil {
			t.Fatalf("maintproxy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	write("account-pass")
	if out := must("", "check"); strings.Contains(out, "accounts resa") {
		t.Errorf("check before any change:\n%s", out)
	}
	if out, err := runIn(t, "short\n", "account", "passwd", "resa", "--config", conf); err == nil || !strings.Contains(err.Error(), "9 to 31") {
		t.Errorf("a short password: %v\n%s", err, out)
	}
	must("Proxy-pass-2\n", "account", "passwd", "resa")
	if out := must("", "account", "list"); !strings.Contains(out, "resa     store") {
		t.Errorf("account list:\n%s", out)
	}
	if out := must("", "check"); !strings.Contains(out, "accounts resa: the password set at runtime by operator applies") {
		t.Errorf("check:\n%s", out)
	}
	write("file-pass-3")
	if out := must("", "check"); !strings.Contains(out, "accounts resa: password_hash of the file applies; it changed after operator set a password at runtime") {
		t.Errorf("check after the file changed:\n%s", out)
	}
	if out := must("", "account", "list"); !strings.Contains(out, "superseded") {
		t.Errorf("account list after the file changed:\n%s", out)
	}
	if out := must("", "account", "clear", "resa"); !strings.Contains(out, "applies again") {
		t.Errorf("account clear: %s", out)
	}
	if out := must("", "check"); strings.Contains(out, "accounts resa") {
		t.Errorf("check after clear:\n%s", out)
	}
}
