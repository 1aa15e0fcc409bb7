package pac

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"maintproxy/maintname"
)

// evalPAC runs script's FindProxyForURL in Node's vm (testdata/evalpac.js) for each host.
func evalPAC(t *testing.T, script string, hosts []string) []string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "proxy.pac")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := make([][2]string, len(hosts))
	for i, h := range hosts {
		cases[i] = [2]string{"https://" + h + "/some/path?q=1", h}
	}
	var res []string
	runNode(t, cases, &res, "testdata/evalpac.js", file)
	return res
}

func TestPACInNode(t *testing.T) {
	const proxy = "HTTPS maint.example.com:6443"
	tests := []struct {
		host string
		want string
	}{
		// The grammar, every variant.
		{"12345.maint.example.com", proxy}, // bare primary: the classic pattern misses it
		{"12345-se2.maint.example.com", proxy},
		{"12345-SE2.maint.example.com", proxy},
		{"12345-SE1.MAINT.EXAMPLE.COM", proxy},
		{"ab12CD.maint.example.com", proxy},
		{"12345-se-2-north.maint.example.com", proxy},
		{"12345-se--2.maint.example.com", proxy},
		{"12345-192.168.1.20.maint.example.com", proxy},
		{"12345-SE2-192.168.1.20.maint.example.com", proxy},
		{"12345-se-2-10.0.0.255.maint.example.com", proxy},
		{"12345-se1-127.0.0.5.maint.example.com", proxy},
		{"12345-7.maint.example.com", proxy}, // a system named "7"
		{strings.Repeat("1", 63) + "-" + strings.Repeat("s", 63) + ".maint.example.com", proxy},
		{"12345-0.0.0.0.maint.example.com", proxy}, // the proxy explains why it names no server
		// Not the grammar: direct (the proxy would refuse them anyway).
		{"maint.example.com", "DIRECT"}, // the proxy itself: never proxied through itself
		{"admin.example.com", "DIRECT"},
		{"example.com", "DIRECT"},
		{"www.example.com", "DIRECT"},
		{"maint.example.com.evil.com", "DIRECT"},
		{"12345.maint.example.com.evil.com", "DIRECT"},
		{"xmaint.example.com", "DIRECT"},
		{"12345.xmaint.example.com", "DIRECT"},
		{"12345.maint.example.community", "DIRECT"},
		{"12345.maint.exampleXcom", "DIRECT"}, // the dot in the domain is literal
		{"12345.maint.example.com.", "DIRECT"},
		{"a.b.maint.example.com", "DIRECT"},
		{"-12345.maint.example.com", "DIRECT"},
		{"12345-.maint.example.com", "DIRECT"},
		{"12345-se1-.maint.example.com", "DIRECT"},
		{"12345_se1.maint.example.com", "DIRECT"},
		{"12345-se1-256.1.1.1.maint.example.com", "DIRECT"},
		{"12345-se1-01.1.1.1.maint.example.com", "DIRECT"},
		{"12345-1.2.3.maint.example.com", "DIRECT"},
		{"12345.maint.example.org", "DIRECT"},
		{strings.Repeat("1", 64) + ".maint.example.com", "DIRECT"}, // longer than a DNS label
		{"12345-" + strings.Repeat("s", 64) + ".maint.example.com", "DIRECT"},
		{"192.168.1.20", "DIRECT"},
		{"localhost", "DIRECT"},
		{"[::1]", "DIRECT"},
	}
	hosts := make([]string, len(tests))
	for i, tc := range tests {
		hosts[i] = tc.host
	}
	got := evalPAC(t, PAC("example.com", "maint.example.com:6443"), hosts)
	for i, tc := range tests {
		if got[i] != tc.want {
			t.Errorf("FindProxyForURL(%q) = %q, want %q", tc.host, got[i], tc.want)
		}
	}
}

// TestPACPortIrrelevant: Chromium passes the host without the port; the URL may carry one.
func TestPACPortIrrelevant(t *testing.T) {
	script := PAC("example.test", "maint.example.test:16443")
	got := evalPAC(t, script, []string{"12345-se1.maint.example.test", "12345-se1.maint.example.test"})
	for _, g := range got {
		if g != "HTTPS maint.example.test:16443" {
			t.Fatalf("got %q", g)
		}
	}
}

// TestPACHostileInput: whatever the configuration holds, the script stays one valid function.
func TestPACHostileInput(t *testing.T) {
	script := PAC("ex\"ample.com\n}); alert(1); //", "maint.x:1\"")
	got := evalPAC(t, script, []string{"12345.maint.example.com"})
	if got[0] != "DIRECT" {
		t.Fatalf("got %q", got[0])
	}
}

// TestPACAgreesWithGo: JavaScript and Go read maintname.HostRegexp the same way, so the Go
// fuzz test that compares it with the parser speaks for the browser. Hosts are near misses
// of the grammar, drawn from a fixed seed.
func TestPACAgreesWithGo(t *testing.T) {
	const n = 3000
	re := regexp.MustCompile(maintname.HostRegexp("example.com"))
	rng := rand.New(rand.NewPCG(8, 9))
	parts := []string{"1", "12345", "a", "z9", "-", "--", ".", "se2", "0", "00", "255", "256", "01",
		"192.168.1.20", "0.0.0.0", "1.2.3", ".maint.example.com", ".maint.", "example", ".com", "_", "A", strings.Repeat("x", 60)}
	hosts := make([]string, 0, n)
	for len(hosts) < n {
		var b strings.Builder
		for range 1 + rng.IntN(6) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		if rng.IntN(2) == 0 {
			b.WriteString(".maint.example.com")
		}
		hosts = append(hosts, b.String())
	}
	got := evalPAC(t, PAC("example.com", "maint.example.com:6443"), hosts)
	matched := 0
	for i, h := range hosts {
		want := "DIRECT"
		if re.MatchString(strings.ToLower(h)) {
			want = "HTTPS maint.example.com:6443"
			matched++
		}
		if got[i] != want {
			t.Errorf("FindProxyForURL(%q) = %q in JavaScript, %q by Go's regexp", h, got[i], want)
		}
	}
	if matched < n/20 {
		t.Errorf("only %d of %d hosts match: the sample misses the grammar", matched, n)
	}
	t.Logf("%d hosts, %d in the grammar", n, matched)
}
