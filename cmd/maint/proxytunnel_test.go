package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsProxytunnel(t *testing.T) {
	for arg0, want := range map[string]bool{
		"proxytunnel": true, "/usr/local/bin/proxytunnel": true, `C:\maintproxy-tools\proxytunnel.exe`: true,
		"C:/maintproxy-tools/PROXYTUNNEL.EXE": true, "maint": false, "maint.exe": false, "proxytunnel-old": false,
		`C:\proxytunnel\maint.exe`: false,
	} {
		if got := isProxytunnel(arg0); got != want {
			t.Errorf("isProxytunnel(%q) = %v", arg0, got)
		}
	}
}

// TestSplitCygwin: the command lines PuTTY and Windows' ssh hand to proxytunnel.exe, as
// the access page and the manual write them.
func TestSplitCygwin(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{`C:/maintproxy-tools/proxytunnel.exe -E --proxy=maint.example.com:6443 --dest=12345-SE1.maint.example.com:22 -P 'resa:s3cr et"x' -C C:/maintproxy-tools/isrgrootx1.pem`,
			[]string{"C:/maintproxy-tools/proxytunnel.exe", "-E", "--proxy=maint.example.com:6443", "--dest=12345-SE1.maint.example.com:22",
				"-P", `resa:s3cr et"x`, "-C", "C:/maintproxy-tools/isrgrootx1.pem"}},
		// The manual's form: the CA path quoted too.
		{`proxytunnel -E --proxy=maint.example.com:6443 --dest=12345.maint.example.com:22 -P '<proxy-user>:<proxy-password>' -C 'C:\Tools\isrgrootx1.pem'`,
			[]string{"proxytunnel", "-E", "--proxy=maint.example.com:6443", "--dest=12345.maint.example.com:22", "-P", "<proxy-user>:<proxy-password>", "-C", `C:\Tools\isrgrootx1.pem`}},
		// Windows paths keep their backslashes; Windows-style double quotes work too.
		{`"C:\Program Files\maint\proxytunnel.exe" --standalone=13389 -P "resa:a\"b" -C C:\t\ca.pem`,
			[]string{`C:\Program Files\maint\proxytunnel.exe`, "--standalone=13389", "-P", `resa:a"b`, "-C", `C:\t\ca.pem`}},
		// A single quote in the password, written as the access page's shQuote does.
		{`p -P 'resa:it'\''s' -q`, []string{"p", "-P", "resa:it's", "-q"}},
		{`p  --dest='a b'c  ''  "x""y"`, []string{"p", "--dest=a bc", "", `x"y`}},
		{`p -P 'unterminated`, []string{"p", "-P", "unterminated"}},
		{"", nil},
	} {
		got := splitCygwin(tc.line)
		if strings.Join(got, "\x00") != strings.Join(tc.want, "\x00") || len(got) != len(tc.want) {
			t.Errorf("splitCygwin(%s)\n got %q\nwant %q", tc.line, got, tc.want)
		}
	}
}

func TestProxytunnelCommandLine(t *testing.T) {
	t.Setenv("MAINT_CONFIG", filepath.Join(t.TempDir(), "none.json"))
	for _, env := range []string{"MAINT_PROXY", "MAINT_PROXY_USER", "MAINT_PROXY_PASSWORD", "MAINT_CACERT"} {
		t.Setenv(env, "")
	}
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-V"}, exitOK, ""},
		{nil, exitUsage, "no proxy or destination given"},
		{[]string{"-p", "maint.example.test:6443"}, exitUsage, "no proxy or destination given"},
		{[]string{"-d", "h:22", "x:1"}, exitUsage, "destination given twice"},
		{[]string{"-E", "-e", "-p", "p:1", "-d", "h:22"}, exitUsage, "-e/--encrypt is not supported"},
		{[]string{"-z", "-p", "p:1", "-d", "h:22"}, exitUsage, "maint always verifies the proxy; give -C"},
		{[]string{"-N", "-p", "p:1", "-d", "h:22"}, exitUsage, "-N/--ntlm is not supported"},
		{[]string{"-r", "other:8080", "-p", "p:1", "-d", "h:22"}, exitUsage, "--remproxy is not supported"},
		{[]string{"--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"connect", "h:22", "-p", "p:1"}, exitUsage, "accepts at most 1 arg"}, // no maint subcommands
		{[]string{"-F", "/nonexistent/passfile", "-p", "p:1", "-d", "h:22"}, exitError, "--passfile"},
	} {
		var out, errOut bytes.Buffer
		code := runProxytunnel(c.args, strings.NewReader(""), &out, &errOut, noEnv)
		if code != c.code || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("proxytunnel %q: exit %d, stderr %q; want %d with %q", c.args, code, errOut.String(), c.code, c.want)
		}
		if code != exitOK && !strings.HasPrefix(errOut.String(), "proxytunnel: ") {
			t.Errorf("proxytunnel %q: stderr %q does not name proxytunnel", c.args, errOut.String())
		}
	}
	var out bytes.Buffer
	runProxytunnel([]string{"-V"}, nil, &out, &out, noEnv)
	if !strings.Contains(out.String(), "maint") {
		t.Errorf("-V: %q", out.String())
	}
}

func TestProxytunnelAuth(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "passfile")
	os.WriteFile(pf, []byte("# wgetrc\nproxy_user = fileuser\nproxy_passwd = file pass\n"), 0o600)
	env := map[string]string{"PROXYUSER": "envuser", "PROXYPASS": "envpass"}
	getenv := func(k string) string { return env[k] }
	for _, c := range []struct {
		auth, user, pass, passfile string
		want                       string
	}{
		{"resa:pw", "", "", "", "resa:pw"},
		{"resa:p:w", "", "", "", "resa:p:w"},
		{"resa", "", "", "", "resa:envpass"}, // the password from PROXYPASS
		{"", "", "", "", "envuser:envpass"},
		{"", "olduser", "oldpass", "", "olduser:oldpass"},
		{"", "", "", pf, "fileuser:file pass"},
		{"resa", "", "", pf, "resa:file pass"},
	} {
		got, err := proxytunnelAuth(c.auth, c.user, c.pass, c.passfile, getenv)
		if err != nil || got != c.want {
			t.Errorf("%+v: %q %v, want %q", c, got, err, c.want)
		}
	}
	got, _ := proxytunnelAuth("resa", "", "", "", func(string) string { return "" })
	if got != "resa" {
		t.Errorf("no password anywhere: %q (maint asks on the terminal)", got)
	}
	os.WriteFile(pf, []byte("proxy_user = x\n"), 0o600)
	if _, err := proxytunnelAuth("", "", "", pf, getenv); err == nil || !strings.Contains(err.Error(), "proxy_passwd") {
		t.Errorf("incomplete passfile: %v", err)
	}
}
