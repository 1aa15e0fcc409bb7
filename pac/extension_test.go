package pac

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// extJob is what testdata/evalext.js runs: the worker against a fake chrome.proxy.
type extJob struct {
	Base     extSetting        `json:"base"`
	Ours     json.RawMessage   `json:"ours,omitempty"`
	PACFiles map[string]string `json:"pacFiles,omitempty"`
	Events   []extEvent        `json:"events,omitempty"`
	Cases    [][2]string       `json:"cases"`
}

type extSetting struct {
	LevelOfControl string         `json:"levelOfControl,omitempty"`
	Value          map[string]any `json:"value"`
}

type extEvent struct {
	Type     string            `json:"type"`
	Base     *extSetting       `json:"base,omitempty"`
	PACFiles map[string]string `json:"pacFiles,omitempty"`
}

type extResult struct {
	Setting  json.RawMessage `json:"setting"`
	Sets     int             `json:"sets"`
	Clears   int             `json:"clears"`
	Fetches  []string        `json:"fetches"`
	Warnings []string        `json:"warnings"`
	Alarm    *struct {
		Period float64 `json:"periodInMinutes"`
	} `json:"alarm"`
	Results []string `json:"results"`
}

// unpackedExtension downloads the extension from a test handler and unpacks it.
func unpackedExtension(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed: the extension needs a real JavaScript engine")
	}
	e := newTestEnv(t, "")
	data, _ := readZip(t, e.get(t, "/com/remoteproxy/chrome-extension.zip", "", "").Body.Bytes())
	dir := t.TempDir()
	for name, b := range data {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "maintproxy-extension")
}

func runExt(t *testing.T, dir string, job extJob) extResult {
	t.Helper()
	var res extResult
	runNode(t, job, &res, "testdata/evalext.js", dir)
	return res
}

const maintRoute = "HTTPS maint.example.test:16443"

// extCases are hosts every scenario routes: maintenance names always to maintproxy.
func extCases(extra ...[2]string) [][2]string {
	return append([][2]string{
		{"https://12345-se1.maint.example.test:7071/", "12345-se1.maint.example.test"},
		{"https://12345.maint.example.test/", "12345.MAINT.example.test"},
		{"https://12345-se1-192.168.1.20.maint.example.test:8443/", "12345-se1-192.168.1.20.maint.example.test"},
	}, extra...)
}

func checkRoutes(t *testing.T, name string, res extResult, cases [][2]string, want []string) {
	t.Helper()
	if len(res.Results) != len(cases) {
		t.Fatalf("%s: %d results for %d cases (setting %s, warnings %v)", name, len(res.Results), len(cases), res.Setting, res.Warnings)
	}
	for i := range 3 {
		if res.Results[i] != maintRoute {
			t.Errorf("%s: %s -> %q, want maintproxy", name, cases[i][1], res.Results[i])
		}
	}
	for i, w := range want {
		if got := res.Results[3+i]; got != w {
			t.Errorf("%s: %s %s -> %q, want %q", name, cases[3+i][0], cases[3+i][1], got, w)
		}
	}
}

// TestExtensionKeepsPreviousSettings: for each previous mode, maintenance names go to
// maintproxy and every other host where the previous settings sent it.
func TestExtensionKeepsPreviousSettings(t *testing.T) {
	dir := unpackedExtension(t)
	const corpPAC = `// the corporation's PAC file
var corpProxy = "PROXY proxy.corp.example:8080";
function isCorp(host) { return dnsDomainIs(host, ".corp.example"); }
function FindProxyForURL(url, host) {
  if (isCorp(host)) return "DIRECT";
  if (shExpMatch(host, "*.maint.example.test")) return "PROXY wrong.example:1"; // must never win
  return corpProxy;
}`
	// A script that sets FindProxyForURL as an implicit global must not replace ours.
	const sloppyPAC = `FindProxyForURL = function (url, host) { return "SOCKS5 socks.corp.example:1080"; };`
	for _, tc := range []struct {
		name  string
		base  extSetting
		files map[string]string
		cases [][2]string
		want  []string
		note  string // in the generated script
	}{
		{name: "direct", base: extSetting{Value: map[string]any{"mode": "direct"}},
			cases: [][2]string{{"https://www.example.com/", "www.example.com"}, {"https://maint.example.test:16443/", "maint.example.test"}},
			want:  []string{"DIRECT", "DIRECT"}},
		{name: "system (cannot be read)", base: extSetting{Value: map[string]any{"mode": "system"}},
			cases: [][2]string{{"https://www.example.com/", "www.example.com"}}, want: []string{"DIRECT"}, note: "cannot be read by an extension"},
		{name: "fixed single proxy with bypass list",
			base: extSetting{Value: map[string]any{"mode": "fixed_servers", "rules": map[string]any{
				"singleProxy": map[string]any{"scheme": "http", "host": "proxy.corp.example", "port": 3128},
				"bypassList":  []string{"<local>", "*.intra.example", ".lan", "10.0.0.0/8", "https://secure.example:8443", "exact.example"}}}},
			cases: [][2]string{
				{"https://www.example.com/", "www.example.com"},
				{"http://intranet/", "intranet"},
				{"https://wiki.intra.example/", "wiki.intra.example"},
				{"https://printer.lan/", "printer.lan"},
				{"https://10.1.2.3/", "10.1.2.3"},
				{"https://11.1.2.3/", "11.1.2.3"},
				{"https://secure.example:8443/", "secure.example"},
				{"https://secure.example/", "secure.example"},
				{"https://exact.example/", "exact.example"},
				{"https://sub.exact.example/", "sub.exact.example"},
			},
			want: []string{"PROXY proxy.corp.example:3128", "DIRECT", "DIRECT", "DIRECT", "DIRECT", "PROXY proxy.corp.example:3128",
				"DIRECT", "PROXY proxy.corp.example:3128", "DIRECT", "PROXY proxy.corp.example:3128"}},
		{name: "fixed per scheme",
			base: extSetting{Value: map[string]any{"mode": "fixed_servers", "rules": map[string]any{
				"proxyForHttp":  map[string]any{"host": "h.corp.example", "port": 8080},
				"proxyForHttps": map[string]any{"scheme": "https", "host": "s.corp.example"},
				"fallbackProxy": map[string]any{"scheme": "socks5", "host": "2001:db8::1"}}}},
			cases: [][2]string{{"http://a.example/", "a.example"}, {"https://a.example/", "a.example"}, {"ftp://a.example/", "a.example"}},
			want:  []string{"PROXY h.corp.example:8080", "HTTPS s.corp.example:443", "SOCKS5 [2001:db8::1]:1080"}},
		{name: "PAC script (data)", base: extSetting{Value: map[string]any{"mode": "pac_script", "pacScript": map[string]any{"data": corpPAC}}},
			cases: [][2]string{{"https://www.example.com/", "www.example.com"}, {"https://git.corp.example/", "git.corp.example"}},
			want:  []string{"PROXY proxy.corp.example:8080", "DIRECT"}},
		{name: "PAC URL", base: extSetting{Value: map[string]any{"mode": "pac_script", "pacScript": map[string]any{"url": "http://wpad.corp.example/proxy.pac"}}},
			files: map[string]string{"http://wpad.corp.example/proxy.pac": corpPAC},
			cases: [][2]string{{"https://www.example.com/", "www.example.com"}, {"https://git.corp.example/", "git.corp.example"}},
			want:  []string{"PROXY proxy.corp.example:8080", "DIRECT"}},
		{name: "PAC URL that cannot be read", base: extSetting{Value: map[string]any{"mode": "pac_script", "pacScript": map[string]any{"url": "http://down.example/x.pac"}}},
			cases: [][2]string{{"https://www.example.com/", "www.example.com"}}, want: []string{"DIRECT"}, note: "could not be read"},
		{name: "PAC assigning a global", base: extSetting{Value: map[string]any{"mode": "pac_script", "pacScript": map[string]any{"data": sloppyPAC}}},
			cases: [][2]string{{"https://www.example.com/", "www.example.com"}}, want: []string{"SOCKS5 socks.corp.example:1080"}},
		{name: "PAC with a syntax error", base: extSetting{Value: map[string]any{"mode": "pac_script", "pacScript": map[string]any{"data": "function FindProxyForURL( {"}}},
			cases: [][2]string{{"https://www.example.com/", "www.example.com"}}, want: []string{"DIRECT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cases := extCases(tc.cases...)
			res := runExt(t, dir, extJob{Base: tc.base, PACFiles: tc.files, Cases: cases})
			checkRoutes(t, tc.name, res, cases, tc.want)
			if res.Sets != 1 || res.Clears != 0 {
				t.Errorf("sets %d, clears %d", res.Sets, res.Clears)
			}
			if tc.note != "" && !strings.Contains(string(res.Setting), tc.note) {
				t.Errorf("script lacks %q", tc.note)
			}
			if res.Alarm == nil || res.Alarm.Period != extensionRefreshMinutes {
				t.Errorf("refresh alarm %+v", res.Alarm)
			}
		})
	}
}

// TestExtensionWakesAndRestarts: a worker woken again uses what its script recorded
// (nothing beneath it is read, nothing changes); at browser start it looks beneath its
// own setting again; a PAC URL is fetched again on the refresh alarm.
func TestExtensionWakesAndRestarts(t *testing.T) {
	dir := unpackedExtension(t)
	pacURL := "http://wpad.corp.example/proxy.pac"
	v1 := `function FindProxyForURL(u, h) { return "PROXY one.corp.example:8080"; }`
	v2 := `function FindProxyForURL(u, h) { return "PROXY two.corp.example:8080"; }`
	cases := extCases([2]string{"https://www.example.com/", "www.example.com"})
	base := extSetting{Value: map[string]any{"mode": "pac_script", "pacScript": map[string]any{"url": pacURL}}}
	first := runExt(t, dir, extJob{Base: base, PACFiles: map[string]string{pacURL: v1}, Cases: cases})
	checkRoutes(t, "first", first, cases, []string{"PROXY one.corp.example:8080"})

	// Woken again with its setting in force; the settings beneath changed meanwhile (the
	// worker cannot know without looking): it keeps the PAC URL it recorded, and the
	// file, now unreachable, is still served from its copy.
	fixed := extSetting{Value: map[string]any{"mode": "fixed_servers", "rules": map[string]any{"singleProxy": map[string]any{"host": "new.corp.example", "port": 3128}}}}
	woken := runExt(t, dir, extJob{Base: fixed, Ours: first.Setting, Cases: cases})
	checkRoutes(t, "woken", woken, cases, []string{"PROXY one.corp.example:8080"})
	if woken.Sets != 0 || woken.Clears != 0 {
		t.Errorf("woken: sets %d clears %d, want neither", woken.Sets, woken.Clears)
	}
	// The refresh alarm fetches the PAC file again and puts a changed one in force.
	refreshed := runExt(t, dir, extJob{Base: base, Ours: first.Setting, PACFiles: map[string]string{pacURL: v1},
		Events: []extEvent{{Type: "base", Base: &base, PACFiles: map[string]string{pacURL: v2}}, {Type: "alarm"}}, Cases: cases})
	checkRoutes(t, "refreshed", refreshed, cases, []string{"PROXY two.corp.example:8080"})
	if refreshed.Clears != 0 || len(refreshed.Fetches) != 2 {
		t.Errorf("refresh: clears %d, fetches %v", refreshed.Clears, refreshed.Fetches)
	}
	// At browser start it looks beneath its own setting: the new fixed proxy.
	started := runExt(t, dir, extJob{Base: fixed, Ours: first.Setting, Events: []extEvent{{Type: "startup"}}, Cases: cases})
	checkRoutes(t, "startup", started, cases, []string{"PROXY new.corp.example:3128"})
	if started.Clears != 1 {
		t.Errorf("startup: clears %d", started.Clears)
	}
}

// TestExtensionUnderPolicy: settings a policy enforces are left alone.
func TestExtensionUnderPolicy(t *testing.T) {
	dir := unpackedExtension(t)
	res := runExt(t, dir, extJob{Base: extSetting{LevelOfControl: "not_controllable", Value: map[string]any{"mode": "direct"}}})
	if res.Sets != 0 || len(res.Setting) > 0 && string(res.Setting) != "null" || len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "policy") {
		t.Errorf("under policy: %+v", res)
	}
}

// TestExtensionAgreesWithPAC: with a direct previous setting, the extension routes the
// PAC tests' hosts exactly as proxy.pac does.
func TestExtensionAgreesWithPAC(t *testing.T) {
	dir := unpackedExtension(t)
	hosts := []string{"12345.maint.example.test", "12345-SE2.maint.example.test", "12345-se1-192.168.1.20.maint.example.test",
		"maint.example.test", "admin.example.test", "maint.example.test.evil.com", "12345-se1-256.1.1.1.maint.example.test",
		"a.b.maint.example.test", "localhost", "192.168.1.20"}
	var cases [][2]string
	for _, h := range hosts {
		cases = append(cases, [2]string{"https://" + h + "/", h})
	}
	res := runExt(t, dir, extJob{Base: extSetting{Value: map[string]any{"mode": "direct"}}, Cases: cases})
	want := evalPAC(t, PAC("example.test", "maint.example.test:16443"), hosts)
	for i := range hosts {
		if res.Results[i] != want[i] {
			t.Errorf("%s: extension %q, proxy.pac %q", hosts[i], res.Results[i], want[i])
		}
	}
}
