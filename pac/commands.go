package pac

import (
	"encoding/json"
	"fmt"
	"strings"
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

// cmdContext is what every command of one broker, account and page shares.
type cmdContext struct {
	proxy    string // maint.<domain>:<port>
	user     string
	secret   string // the password, or passwordMask
	rootFile string // file name of the root certificate in the bundle; "" if none
	params   cmdParams
}

func (c cmdContext) credentials() string { return c.user + ":" + c.secret }

// proxytunnel returns a proxytunnel invocation; exe and dir are platform paths. The
// parameters' characters need no quoting (parseParams), the credentials always get it.
func (c cmdContext) proxytunnel(exe, dir, extra, dest string) string {
	s := exe + extra + " -E --proxy=" + c.proxy + " --dest=" + dest + " -P " + shQuote(c.credentials())
	if c.rootFile != "" {
		s += " -C " + dir + "/" + c.rootFile
	}
	return s
}

func (c cmdContext) windowsExe() string { return c.params.WindowsTools + "/proxytunnel.exe" }

// sshCommands are the ways to reach an SSH server at host:port through the proxy.
func (c cmdContext) sshCommands(idPrefix, host string, port int) commandSet {
	dest := fmt.Sprintf("%s:%d", host, port)
	linux := c.proxytunnel("proxytunnel", c.params.LinuxTools, "", dest)
	win := c.proxytunnel(c.windowsExe(), c.params.WindowsTools, "", dest)
	user := c.params.sshUser()
	cs := commandSet{
		{Key: "ssh_linux", Label: "SSH (Linux/macOS, proxytunnel)",
			Text: fmt.Sprintf(`ssh %s@%s -p %d -oProxyCommand="%s"`, user, host, port, dqEscape(linux))},
		{Key: "ssh_windows", Label: "SSH (Windows, proxytunnel.exe from the bundle)",
			Text: fmt.Sprintf(`ssh %s@%s -p %d -oProxyCommand="%s"`, user, host, port, strings.ReplaceAll(win, `"`, `\"`))},
		{Key: "putty_host", Label: "PuTTY host name", Text: host},
		{Key: "putty_port", Label: "PuTTY port", Text: fmt.Sprint(port)},
		{Key: "putty_proxy_command", Label: "PuTTY local proxy command (Connection > Proxy, type Local)", Text: puttyEscape(win)},
		{Key: "maint_ssh", Label: "SSH with maint (after maint login)",
			Text: fmt.Sprintf(`ssh -p %d -o ProxyCommand="maint connect %%h:%%p" %s@%s`, port, user, host)},
	}
	return cs.withIDs(idPrefix)
}

// forwardCommands bind local port local to host:port (RDP and other TCP services).
func (c cmdContext) forwardCommands(idPrefix, host string, port, local int, rdp bool) commandSet {
	dest := fmt.Sprintf("%s:%d", host, port)
	standalone := fmt.Sprintf(" --standalone=%d", local)
	cs := commandSet{
		{Key: "rdp_standalone", Label: "Local port (Windows, proxytunnel.exe from the bundle)",
			Text: c.proxytunnel(c.windowsExe(), c.params.WindowsTools, standalone, dest)},
		{Key: "rdp_standalone_linux", Label: "Local port (Linux/macOS, proxytunnel)",
			Text: c.proxytunnel("proxytunnel", c.params.LinuxTools, standalone, dest)},
		{Key: "maint_forward", Label: "Local port with maint (after maint login)",
			Text: fmt.Sprintf("maint forward --listen 127.0.0.1:%d %s", local, dest)},
	}
	if rdp {
		cs = append(cs,
			command{Key: "rdp_client", Label: "Then connect the RDP client (Windows)", Text: fmt.Sprintf("mstsc /v:127.0.0.1:%d", local)},
			command{Key: "rdp_client_linux", Label: "Then connect the RDP client (Linux)", Text: fmt.Sprintf("xfreerdp /v:127.0.0.1:%d", local)})
	} else {
		cs = append(cs, command{Key: "local_address", Label: "Then connect to", Text: fmt.Sprintf("127.0.0.1:%d", local)})
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
