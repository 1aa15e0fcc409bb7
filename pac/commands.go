package pac

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Where the README tells technicians to unzip the tool bundle.
const (
	linuxToolsDir   = "~/maintproxy-tools"
	windowsToolsDir = "C:/maintproxy-tools" // forward slashes: PuTTY treats '\' as an escape
	rdpLocalPort    = 13389
	passwordMask    = "*****"
)

// command is one ready-made command (or value) shown with a copy button.
type command struct {
	Key   string // stable JSON key, e.g. ssh_linux
	Label string
	Text  string
	ID    string // what the copy button asks the server for
}

// commandSet is an ordered list of commands that marshals as a JSON object.
type commandSet []command

// MarshalJSON renders the set as {"key": "text", ...}.
func (cs commandSet) MarshalJSON() ([]byte, error) {
	m := make(map[string]string, len(cs))
	for _, c := range cs {
		m[c.Key] = c.Text
	}
	return json.Marshal(m)
}

// cmdContext is what every command of one broker and account shares.
type cmdContext struct {
	proxy    string // maint.<domain>:<port>
	user     string
	secret   string // the password, or passwordMask
	rootFile string // file name of the root certificate in the bundle; "" if none
}

func (c cmdContext) credentials() string { return c.user + ":" + c.secret }

// proxytunnel returns a proxytunnel invocation; exe and dir are platform paths.
func (c cmdContext) proxytunnel(exe, dir, extra, dest string) string {
	s := exe + extra + " -E --proxy=" + c.proxy + " --dest=" + dest + " -P " + shQuote(c.credentials())
	if c.rootFile != "" {
		s += " -C " + dir + "/" + c.rootFile
	}
	return s
}

// sshCommands are the ways to reach an SSH server at host:port through the proxy.
func (c cmdContext) sshCommands(idPrefix, host string, port int) commandSet {
	dest := fmt.Sprintf("%s:%d", host, port)
	linux := c.proxytunnel("proxytunnel", linuxToolsDir, "", dest)
	win := c.proxytunnel(windowsToolsDir+"/proxytunnel.exe", windowsToolsDir, "", dest)
	cs := commandSet{
		{Key: "ssh_linux", Label: "SSH (Linux, proxytunnel)",
			Text: fmt.Sprintf(`ssh root@%s -p %d -oProxyCommand="%s"`, host, port, dqEscape(linux))},
		{Key: "ssh_windows", Label: "SSH (Windows, proxytunnel)",
			Text: fmt.Sprintf(`ssh root@%s -p %d -oProxyCommand="%s"`, host, port, strings.ReplaceAll(win, `"`, `\"`))},
		{Key: "putty_host", Label: "PuTTY host name", Text: host},
		{Key: "putty_port", Label: "PuTTY port", Text: fmt.Sprint(port)},
		{Key: "putty_proxy_command", Label: "PuTTY local proxy command (Connection > Proxy, type Local)", Text: puttyEscape(win)},
		{Key: "maint_ssh", Label: "SSH with maint (after maint login)",
			Text: fmt.Sprintf(`ssh -p %d -o ProxyCommand="maint connect %%h:%%p" root@%s`, port, host)},
	}
	return cs.withIDs(idPrefix)
}

// forwardCommands bind a local port to host:port (RDP and other TCP services).
func (c cmdContext) forwardCommands(idPrefix, host string, port int, rdp bool) commandSet {
	dest := fmt.Sprintf("%s:%d", host, port)
	standalone := fmt.Sprintf(" --standalone=%d", rdpLocalPort)
	cs := commandSet{
		{Key: "rdp_standalone", Label: "Local port (Windows, proxytunnel)",
			Text: c.proxytunnel(windowsToolsDir+"/proxytunnel.exe", windowsToolsDir, standalone, dest)},
		{Key: "rdp_standalone_linux", Label: "Local port (Linux, proxytunnel)",
			Text: c.proxytunnel("proxytunnel", linuxToolsDir, standalone, dest)},
		{Key: "maint_forward", Label: "Local port with maint (after maint login)",
			Text: fmt.Sprintf("maint forward --listen 127.0.0.1:%d %s", rdpLocalPort, dest)},
	}
	if rdp {
		cs = append(cs, command{Key: "rdp_client", Label: "Then connect the RDP client",
			Text: fmt.Sprintf("mstsc /v:localhost:%d", rdpLocalPort)})
	} else {
		cs = append(cs, command{Key: "local_address", Label: "Then connect to",
			Text: fmt.Sprintf("localhost:%d", rdpLocalPort)})
	}
	return cs.withIDs(idPrefix)
}

func (cs commandSet) withIDs(prefix string) commandSet {
	for i := range cs {
		cs[i].ID = prefix + "/" + cs[i].Key
	}
	return cs
}

// shQuote quotes s for a POSIX shell (and proxytunnel's Cygwin argument parser).
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// dqEscape escapes s for use inside a double-quoted POSIX shell word.
func dqEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`")
	return r.Replace(s)
}

// puttyEscape protects PuTTY's local-proxy-command escapes (\ and %) in s.
func puttyEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "%", `\%`).Replace(s)
}
