package pac

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"maintproxy/config"
	"maintproxy/maintname"
)

// Folders inside the zips: unzipping gives one clearly named directory.
const (
	extensionDir = "maintproxy-extension"
	toolsDir     = "maintproxy-tools"
)

// rootFileName is the bundle's name for the root certificate; generated commands use it.
func rootFileName(cfg *config.Broker) string {
	var given string
	switch cfg.TLS.Mode {
	case config.ModeACME:
		if cfg.TLS.ACME.RootFile == "" {
			return "isrgrootx1.pem" // the name technicians know for Let's Encrypt
		}
		given = cfg.TLS.ACME.RootFile
	case config.ModeFiles:
		given = cfg.TLS.Files.Root
	default:
		return "maintproxy-ca.pem"
	}
	if name := filepath.Base(given); given != "" && safeFileName(name) {
		return name
	}
	return "maintproxy-root.pem"
}

// safeFileName accepts names that need no quoting in any shell or PuTTY.
func safeFileName(s string) bool {
	if s == "" || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// extensionRefreshMinutes is how often the extension fetches a previous PAC URL again.
const extensionRefreshMinutes = 30

// extensionFiles renders the unpacked Chrome extension. Its service worker puts the
// maintenance rule (maintname.HostRegexp, as in proxy.pac) in front of the browser's
// previous proxy settings; see templates/background.js.tmpl.
func extensionFiles(cfg *config.Broker, tmpl *template.Template) ([]zipFile, error) {
	pac := PAC(cfg.Domain, proxyAddr(cfg))
	rule, _ := json.Marshal(maintname.HostRegexp(cfg.Domain))
	proxy, _ := json.Marshal("HTTPS " + proxyAddr(cfg))
	manifest, err := json.MarshalIndent(map[string]any{
		"manifest_version": 3,
		"name":             "maintproxy " + cfg.Domain,
		"version":          "2.0",
		"description": "Sends maintenance addresses *.maint." + cfg.Domain + " through the proxy " + proxyAddr(cfg) +
			"; every other address keeps the browser's previous proxy settings.",
		// alarms: fetching a previous PAC URL again; host access: reading that PAC file
		// (the worker fetches nothing else).
		"permissions":      []string{"proxy", "alarms"},
		"host_permissions": []string{"<all_urls>"},
		"background":       map[string]string{"service_worker": "background.js"},
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	data := map[string]any{
		"Domain": cfg.Domain, "Proxy": proxyAddr(cfg), "PACURL": webURL(cfg, "/com/remoteproxy/proxy.pac"),
		"RuleJSON": string(rule), "ProxyJSON": string(proxy), "Grammar": maintname.HostGrammar(cfg.Domain),
		"RefreshMinutes": extensionRefreshMinutes,
	}
	bg, err := execText(tmpl, "background.js.tmpl", data)
	if err != nil {
		return nil, err
	}
	readme, err := execText(tmpl, "extension-readme.txt", data)
	if err != nil {
		return nil, err
	}
	return []zipFile{
		{Name: extensionDir + "/manifest.json", Data: append(manifest, '\n')},
		{Name: extensionDir + "/background.js", Data: bg},
		{Name: extensionDir + "/proxy.pac", Data: []byte(pac)},
		{Name: extensionDir + "/README.txt", Data: readme},
	}, nil
}

// ExpectedClients are the technician clients a complete tool bundle holds, named as
// `make build` writes them: maint for each OS and CPU Go builds it for, and proxytunnel.exe
// (maint for Windows; under that name it takes proxytunnel's command line), which the
// generated Windows and PuTTY commands call.
func ExpectedClients() []string {
	return []string{"maint-darwin-amd64", "maint-darwin-arm64", "maint-linux-amd64", "maint-linux-arm64",
		"maint-windows-amd64.exe", "maint-windows-arm64.exe", "proxytunnel.exe"}
}

// MissingClients returns the ExpectedClients that dir lacks (all of them when dir is
// empty or missing).
func MissingClients(dir string) []string {
	have := map[string]bool{}
	for _, b := range toolBinaries(dir) {
		have[b.name] = true
	}
	var missing []string
	for _, name := range ExpectedClients() {
		if !have[name] {
			missing = append(missing, name)
		}
	}
	return missing
}

// clientDescription says what a bundled file is for.
func clientDescription(name string) string {
	osNames := map[string]string{"linux": "Linux", "darwin": "macOS", "windows": "Windows"}
	cpus := map[string]string{"amd64": "x86-64", "arm64": "ARM64"}
	switch {
	case name == "proxytunnel.exe":
		return "maint for Windows x86-64 under proxytunnel's name: runs the proxytunnel commands and PuTTY sessions unchanged"
	case name == "README.txt":
		return "these instructions"
	case strings.HasSuffix(name, ".pem"):
		return "the root certificate the proxy's TLS certificate chains to"
	case strings.HasPrefix(name, "maint-"):
		parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(name, "maint-"), ".exe"), "-")
		if len(parts) == 2 && osNames[parts[0]] != "" && cpus[parts[1]] != "" {
			return "maint for " + osNames[parts[0]] + " " + cpus[parts[1]]
		}
	}
	return "maint client"
}

// bundleContents lists the files of tools.zip, in the order of its README.
func bundleContents(rootFile string, bins []toolBinary) []string {
	var names []string
	if rootFile != "" {
		names = append(names, rootFile)
	}
	for _, b := range bins {
		names = append(names, b.name)
	}
	return append(names, "README.txt")
}

// toolBinary is a built client found in Options.ToolsDir.
type toolBinary struct {
	name string
	path string
	key  string // name, size and mtime: changes when the file is rebuilt
}

// toolBinaries lists the client binaries in dir (maint-linux-amd64, …,
// maint-windows-amd64.exe, proxytunnel.exe); a missing or empty dir gives none.
func toolBinaries(dir string) []toolBinary {
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []toolBinary
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !(name == "maint" || name == "maint.exe" || name == "proxytunnel.exe" || strings.HasPrefix(name, "maint-")) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, toolBinary{name: name, path: filepath.Join(dir, name),
			key: fmt.Sprintf("%s/%d/%d", name, info.Size(), info.ModTime().UnixNano())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// toolsKey identifies one build of the tool bundle.
func toolsKey(cfg *config.Broker, root []byte, bins []toolBinary) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", cfg.Domain, proxyAddr(cfg), webURL(cfg, ""), rootFileName(cfg))
	h.Write(root)
	for _, b := range bins {
		fmt.Fprintf(h, "\x00%s", b.key)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// bundleFile is one line of the bundle README's contents list.
type bundleFile struct{ Name, About string }

// toolsFiles renders the tool bundle: root certificate, README and client binaries.
func toolsFiles(cfg *config.Broker, root []byte, bins []toolBinary, tmpl *template.Template) ([]zipFile, error) {
	rootFile := ""
	if len(bytes.TrimSpace(root)) > 0 {
		rootFile = rootFileName(cfg)
	}
	cc := cmdContext{proxy: proxyAddr(cfg), user: "<proxy-user>", secret: "<proxy-password>", rootFile: rootFile, params: defaultParams()}
	host := "<customer-id>-<system-name>.maint." + cfg.Domain
	ssh := cc.sshCommands("", host, 22)
	rdp := cc.forwardCommands("", host, 3389, defaultLocalPort, true)
	var files []zipFile
	if rootFile != "" {
		files = append(files, zipFile{Name: toolsDir + "/" + rootFile, Data: root})
	}
	for _, b := range bins {
		data, err := os.ReadFile(b.path)
		if err != nil {
			return nil, err
		}
		files = append(files, zipFile{Name: toolsDir + "/" + b.name, Data: data, Mode: 0o755})
	}
	var contents []bundleFile
	for _, name := range bundleContents(rootFile, bins) {
		contents = append(contents, bundleFile{name, clientDescription(name)})
	}
	rootNote := "only needs to be on disk"
	if cfg.TLS.Mode == config.ModeSelfSigned {
		rootNote = "the broker's own CA: add it to your browser's trusted authorities too"
	}
	readme, err := execText(tmpl, "tools-readme.txt", map[string]any{
		"Domain": cfg.Domain, "Proxy": proxyAddr(cfg), "LinuxDir": defaultLinuxTools, "WindowsDir": defaultWindowsTools,
		"PACURL": webURL(cfg, "/com/remoteproxy/proxy.pac"), "ExtensionURL": webURL(cfg, "/com/remoteproxy/chrome-extension.zip"),
		"AccessURL": webURL(cfg, accessPath), "RootFile": rootFile, "RootNote": rootNote,
		"Files": contents, "HasProxytunnelExe": hasBinary(bins, "proxytunnel.exe"), "HasClients": len(bins) > 0,
		"SSHLinux": text(ssh, "ssh_linux"), "SSHWindows": text(ssh, "ssh_windows"),
		"PuTTYHost": text(ssh, "putty_host"), "PuTTYPort": text(ssh, "putty_port"), "PuTTYProxy": text(ssh, "putty_proxy_command"),
		"MaintSSH": text(ssh, "maint_ssh"), "RDPStandalone": text(rdp, "rdp_standalone"),
		"RDPClient": text(rdp, "rdp_client"), "MaintForward": text(rdp, "maint_forward"),
	})
	if err != nil {
		return nil, err
	}
	files = append(files, zipFile{Name: toolsDir + "/README.txt", Data: readme})
	return files, nil
}

func hasBinary(bins []toolBinary, name string) bool {
	for _, b := range bins {
		if b.name == name {
			return true
		}
	}
	return false
}

func text(cs commandSet, key string) string {
	for _, c := range cs {
		if c.Key == key {
			return c.Text
		}
	}
	return ""
}

func execText(t *template.Template, name string, data any) ([]byte, error) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
