package pac

import (
	"net/url"
	"strconv"
	"strings"
)

// Defaults of the values a technician can change on the access pages.
const (
	defaultLinuxTools   = "~/maintproxy-tools"
	defaultWindowsTools = "C:/maintproxy-tools" // forward slashes: PuTTY treats '\' as an escape
	defaultLocalPort    = 13389
	sshUserPlaceholder  = "<user-name>" // the manual's placeholder
	passwordMask        = "*****"
)

// cmdParams are the technician's choices that the generated commands carry: the SSH user
// on the customer's server, where the tool bundle is unzipped, and the first local port of
// the forwards (RDP). They come from the query (ssh_user, tools_linux, tools_windows,
// port), so the page, its JSON, the copy buttons and the downloads agree.
type cmdParams struct {
	SSHUser      string `json:"ssh_user"` // "" means the placeholder
	LinuxTools   string `json:"tools_linux"`
	WindowsTools string `json:"tools_windows"`
	Port         int    `json:"port"`
}

func defaultParams() cmdParams {
	return cmdParams{LinuxTools: defaultLinuxTools, WindowsTools: defaultWindowsTools, Port: defaultLocalPort}
}

// paramError is a query value the pages cannot use; it names the field.
type paramError struct{ field, msg string }

func (e paramError) Error() string { return e.field + ": " + e.msg }

// parseParams reads the technician's choices from q; empty values keep the defaults. The
// allowed characters need no quoting in a POSIX shell, cmd.exe or PuTTY, so every
// generated command stays one the technician can paste.
func parseParams(q url.Values) (cmdParams, error) {
	p := defaultParams()
	if v := strings.TrimSpace(q.Get("ssh_user")); v != "" && v != sshUserPlaceholder {
		if len(v) > 64 || v[0] == '-' || !allOf(v, "._@-") {
			return p, paramError{"ssh_user", "use letters, digits and . _ @ - (at most 64, not starting with -)"}
		}
		p.SSHUser = v
	}
	if v := strings.TrimSpace(q.Get("tools_linux")); v != "" {
		v = strings.TrimSuffix(v, "/")
		if len(v) > 200 || v[0] == '-' || !allOf(v, "/._~:+-") || strings.Contains(v[1:], "~") ||
			(v[0] == '~' && v != "~" && v[1] != '/') {
			return p, paramError{"tools_linux", "a folder of letters, digits and / . _ ~ : + - (no spaces; ~ only as ~/ at the start)"}
		}
		p.LinuxTools = v
	}
	if v := strings.TrimSpace(q.Get("tools_windows")); v != "" {
		v = strings.TrimSuffix(strings.ReplaceAll(v, `\`, "/"), "/")
		if len(v) > 200 || v[0] == '-' || !allOf(v, "/._:+-") {
			return p, paramError{"tools_windows", `a folder of letters, digits and / \ . _ : + - (no spaces)`}
		}
		p.WindowsTools = v
	}
	if v := strings.TrimSpace(q.Get("port")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1024 || n > 65000 {
			return p, paramError{"port", "a local port number from 1024 to 65000"}
		}
		p.Port = n
	}
	return p, nil
}

// query renders the values that differ from the defaults, for links ("" if none).
func (p cmdParams) query() string {
	q := url.Values{}
	d := defaultParams()
	if p.SSHUser != "" {
		q.Set("ssh_user", p.SSHUser)
	}
	if p.LinuxTools != d.LinuxTools {
		q.Set("tools_linux", p.LinuxTools)
	}
	if p.WindowsTools != d.WindowsTools {
		q.Set("tools_windows", p.WindowsTools)
	}
	if p.Port != d.Port {
		q.Set("port", strconv.Itoa(p.Port))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// sshUser is the user for commands: the technician's, or the manual's placeholder.
func (p cmdParams) sshUser() string {
	if p.SSHUser == "" {
		return sshUserPlaceholder
	}
	return p.SSHUser
}

// allOf reports whether s holds only ASCII letters, digits and the extra characters.
func allOf(s, extra string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(extra, r)) {
			return false
		}
	}
	return true
}
