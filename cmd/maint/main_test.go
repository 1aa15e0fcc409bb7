package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitCodes: command lines that cannot run exit 2, whatever part of cobra refused
// them; a command that runs and fails exits 1.
func TestExitCodes(t *testing.T) {
	t.Setenv("MAINT_CONFIG", filepath.Join(t.TempDir(), "none.json"))
	for _, env := range []string{"MAINT_PROXY", "MAINT_PROXY_USER", "MAINT_PROXY_PASSWORD", "MAINT_CACERT"} {
		t.Setenv(env, "")
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "give a command"},
		{[]string{"--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"-Z"}, exitUsage, "unknown shorthand flag"},
		{[]string{"bogus"}, exitUsage, `unknown command "bogus"`},
		{[]string{"connect"}, exitUsage, "accepts 1 arg"},
		{[]string{"connect", "a:1", "b:2"}, exitUsage, "accepts 1 arg"},
		{[]string{"status", "extra"}, exitUsage, "unknown command"},
		{[]string{"forward", "--listen"}, exitUsage, "flag needs an argument"},
		{[]string{"-a", "notaport", "-d", "h:1"}, exitUsage, "invalid argument"},
		{[]string{"connect", "h:1"}, exitError, "no proxy"},
		{[]string{"--version"}, exitOK, ""},
	} {
		var out, errOut bytes.Buffer
		code := run(c.args, strings.NewReader(""), &out, &errOut)
		if code != c.code || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("maint %q: exit %d, stderr %q; want %d with %q", c.args, code, errOut.String(), c.code, c.want)
		}
	}
}
