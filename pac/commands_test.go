package pac

import (
	"os/exec"
	"strings"
	"testing"
)

// shellArgs runs cmd in /bin/sh with its program replaced by printf and returns the argv
// the program would get.
func shellArgs(t *testing.T, cmd, program, home string) []string {
	t.Helper()
	rest, ok := strings.CutPrefix(cmd, program+" ")
	if !ok {
		t.Fatalf("%q does not start with %s", cmd, program)
	}
	c := exec.Command("/bin/sh", "-c", `printf '%s\n' `+rest)
	c.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
	out, err := c.Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", cmd, err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
}

// TestSSHCommandSurvivesTwoShells: the Linux command goes through the user's shell and
// then ssh's ProxyCommand shell; proxytunnel must still get the exact password.
func TestSSHCommandSurvivesTwoShells(t *testing.T) {
	if _, err := exec.LookPath("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	const pw = "p'a\"s$s\\`w rd%"
	params := defaultParams()
	params.SSHUser = "tech.admin"
	cc := cmdContext{proxy: "maint.example.test:6443", user: "resa", secret: pw, rootFile: "maintproxy-ca.pem", params: params}
	ssh := text(cc.sshCommands("x", "12345-se1.maint.example.test", 22), "ssh_linux")
	outer := shellArgs(t, ssh, "ssh", "/home/tech")
	want := []string{"tech.admin@12345-se1.maint.example.test", "-p", "22"}
	if len(outer) != 4 || strings.Join(outer[:3], " ") != strings.Join(want, " ") {
		t.Fatalf("ssh argv = %q", outer)
	}
	proxyCmd, ok := strings.CutPrefix(outer[3], "-oProxyCommand=")
	if !ok {
		t.Fatalf("ssh argv[3] = %q", outer[3])
	}
	inner := shellArgs(t, proxyCmd, "proxytunnel", "/home/tech")
	got := strings.Join(inner, "\x00")
	wantInner := strings.Join([]string{"-E", "--proxy=maint.example.test:6443", "--dest=12345-se1.maint.example.test:22",
		"-P", "resa:" + pw, "-C", "/home/tech/maintproxy-tools/maintproxy-ca.pem"}, "\x00")
	if got != wantInner {
		t.Errorf("proxytunnel argv = %q", inner)
	}
	// The standalone (RDP) command runs in one shell.
	rdp := text(cc.forwardCommands("x", "12345-se1-10.0.0.9.maint.example.test", 3389, 14000, true), "rdp_standalone_linux")
	args := shellArgs(t, rdp, "proxytunnel", "/home/tech")
	if strings.Join(args, "\x00") != strings.Join([]string{"--standalone=14000", "-E", "--proxy=maint.example.test:6443",
		"--dest=12345-se1-10.0.0.9.maint.example.test:3389", "-P", "resa:" + pw, "-C", "/home/tech/maintproxy-tools/maintproxy-ca.pem"}, "\x00") {
		t.Errorf("standalone argv = %q", args)
	}
}

func TestPuTTYEscapes(t *testing.T) {
	cc := cmdContext{proxy: "maint.example.test:6443", user: "u", secret: `a%b\c`, rootFile: "isrgrootx1.pem", params: defaultParams()}
	got := text(cc.sshCommands("x", "12345.maint.example.test", 22), "putty_proxy_command")
	want := `C:/maintproxy-tools/proxytunnel.exe -E --proxy=maint.example.test:6443 --dest=12345.maint.example.test:22 -P 'u:a\%b\\c' -C C:/maintproxy-tools/isrgrootx1.pem`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
