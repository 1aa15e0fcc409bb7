package maintname

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const d = "example.com"
	ip := netip.MustParseAddr("192.168.1.20")
	ok := []struct {
		in   string
		want Target
	}{
		{"12345.maint.example.com:22", Target{Customer: "12345", Port: 22}},
		{"12345-SE2.maint.example.com:22", Target{Customer: "12345", System: "se2", Port: 22}},
		{"12345-192.168.1.20.maint.example.com:3389", Target{Customer: "12345", IP: ip, Port: 3389}},
		{"12345-SE2-192.168.1.20.maint.example.com:3389", Target{Customer: "12345", System: "se2", IP: ip, Port: 3389}},
		{"AbC12-Se2.MAINT.Example.COM:7071", Target{Customer: "abc12", System: "se2", Port: 7071}},
		{"12345-ucm-module-1-10.0.0.9.maint.example.com:443", Target{Customer: "12345", System: "ucm-module-1", IP: netip.MustParseAddr("10.0.0.9"), Port: 443}},
		{"12345-exp-2.maint.example.com:65535", Target{Customer: "12345", System: "exp-2", Port: 65535}},
		{"1.maint.example.com:1", Target{Customer: "1", Port: 1}},
		{"12345-7.maint.example.com:22", Target{Customer: "12345", System: "7", Port: 22}},
		{strings.Repeat("1", 63) + "-" + strings.Repeat("s", 63) + ".maint.example.com:22",
			Target{Customer: strings.Repeat("1", 63), System: strings.Repeat("s", 63), Port: 22}},
		// The edges of the special ranges still name servers.
		{"12345-1.0.0.0.maint.example.com:22", Target{Customer: "12345", IP: netip.MustParseAddr("1.0.0.0"), Port: 22}},
		{"12345-223.255.255.255.maint.example.com:22", Target{Customer: "12345", IP: netip.MustParseAddr("223.255.255.255"), Port: 22}},
		{"12345-se1-127.0.0.5.maint.example.com:8443", Target{Customer: "12345", System: "se1", IP: netip.MustParseAddr("127.0.0.5"), Port: 8443}},
	}
	for _, c := range ok {
		got, err := Parse(c.in, d)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	bad := []struct {
		in   string
		want error
	}{
		{"127.0.0.1:22", ErrNotMaintenance},
		{"[::1]:22", ErrNotMaintenance},
		{"example.com:443", ErrNotMaintenance},
		{"maint.example.com:6443", ErrNotMaintenance},
		{"12345.maint.example.com.evil.com:22", ErrNotMaintenance},
		{"12345.xmaint.example.com:22", ErrNotMaintenance},
		{"12345.maint.example.org:22", ErrNotMaintenance},
		{"12345.maint.example.com.:22", ErrNotMaintenance},
		{"[12345.maint.example.com]:22", ErrNotMaintenance},
		{"\u212a1.maint.example.com:22", ErrMalformed}, // Kelvin sign, not k
		{"12345.maint.example.\u212aom:22", ErrNotMaintenance},
		{"12345.maint.example.com", ErrMalformed},
		{".maint.example.com:22", ErrMalformed},
		{"12345.maint.example.com:0", ErrMalformed},
		{"12345.maint.example.com:65536", ErrMalformed},
		{"12345.maint.example.com:022", ErrMalformed},
		{"12345.maint.example.com:+22", ErrMalformed},
		{"12345.maint.example.com:ssh", ErrMalformed},
		{"12345.maint.example.com:", ErrMalformed},
		{"-se2.maint.example.com:22", ErrMalformed},
		{"12345-.maint.example.com:22", ErrMalformed},
		{"12345--se2.maint.example.com:22", ErrMalformed},
		{"12345-se2-.maint.example.com:22", ErrMalformed},
		{"12_45.maint.example.com:22", ErrMalformed},
		{"12345-se_2.maint.example.com:22", ErrMalformed},
		{"12345-192.168.1.maint.example.com:22", ErrMalformed},
		{"12345-192.168.1.256.maint.example.com:22", ErrMalformed},
		{"12345-192.168.01.20.maint.example.com:22", ErrMalformed},
		{"12345-192.168.1.20.5.maint.example.com:22", ErrMalformed},
		{"12345.se2.maint.example.com:22", ErrMalformed},
		{"a.b.maint.example.com:22", ErrMalformed},
		{"12345-se2-192.168.1.20x.maint.example.com:22", ErrMalformed},
		{"-192.168.1.20.maint.example.com:22", ErrMalformed},
		{strings.Repeat("1", 64) + ".maint.example.com:22", ErrMalformed},
		{"12345-" + strings.Repeat("s", 64) + ".maint.example.com:22", ErrMalformed},
	}
	for _, c := range bad {
		got, err := Parse(c.in, d)
		if !errors.Is(err, c.want) {
			t.Errorf("Parse(%q) = %+v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

// TestParseRefusesNoServer: co-located addresses that cannot name one server are refused
// with a message that says why, whatever the port.
func TestParseRefusesNoServer(t *testing.T) {
	for _, ip := range []string{
		"0.0.0.0", "0.1.2.3", "0.255.255.255", // "this network"
		"224.0.0.1", "239.255.255.250", // multicast
		"240.0.0.1", "254.1.1.1", // reserved
		"255.255.255.255", // broadcast
	} {
		for _, in := range []string{"12345-" + ip + ".maint.example.com:22", "12345-SE2-" + ip + ".maint.example.com:443"} {
			got, err := Parse(in, "example.com")
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse(%q) = %+v, %v; want ErrMalformed", in, got, err)
				continue
			}
			want := "co-located address " + ip + " names no server (0.0.0.0/8, multicast 224.0.0.0/4, reserved 240.0.0.0/4 and broadcast are refused)"
			if !strings.HasSuffix(err.Error(), want) {
				t.Errorf("Parse(%q): %q does not end in %q", in, err, want)
			}
		}
	}
}

func TestParsePort(t *testing.T) {
	for in, want := range map[string]uint16{"1": 1, "22": 22, "65535": 65535} {
		if got, err := ParsePort(in); err != nil || got != want {
			t.Errorf("ParsePort(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0", "022", "+22", "-1", "65536", "ssh", " 22", "2 2", "99999999999999999999"} {
		if got, err := ParsePort(in); err == nil {
			t.Errorf("ParsePort(%q) = %d, want an error", in, got)
		}
	}
}

func TestNameRules(t *testing.T) {
	for s, want := range map[string]bool{
		"12345": true, "abc12": true, strings.Repeat("a", 63): true,
		"": false, strings.Repeat("a", 64): false, "ABC": false, "a-b": false, "a_b": false, "é": false,
	} {
		if got := ValidCustomerID(s); got != want {
			t.Errorf("ValidCustomerID(%q) = %v", s, got)
		}
	}
	for s, want := range map[string]bool{
		"se1": true, "ucm-module-1": true, "se--2": true, "7": true, strings.Repeat("a", 63): true,
		"": false, "-se1": false, "se1-": false, "-": false, strings.Repeat("a", 64): false, "SE1": false, "se.1": false,
	} {
		if got := ValidSystemName(s); got != want {
			t.Errorf("ValidSystemName(%q) = %v", s, got)
		}
	}
}

func TestGrammarText(t *testing.T) {
	if got := GrammarFor("example.com"); got != "<customer-id>[-<system-name>][-<co-located-server-ipv4>].maint.example.com:<port>" {
		t.Errorf("GrammarFor = %q", got)
	}
	if Grammar != GrammarFor("<domain>") {
		t.Errorf("Grammar %q and GrammarFor disagree", Grammar)
	}
}

// FuzzParse checks that whatever is accepted is in canonical form and round-trips.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"12345.maint.example.com:22", "12345-SE2-192.168.1.20.maint.example.com:3389",
		"127.0.0.1:22", "12345-.maint.example.com:22", "a-b-c-1.2.3.4.maint.example.com:1", "1-0.0.0.0.maint.example.com:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Parse(in, "example.com")
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotMaintenance) {
				t.Fatalf("Parse(%q): unclassified error %v", in, err)
			}
			return
		}
		if !ValidCustomerID(got.Customer) || got.Port == 0 || got.System != "" && !ValidSystemName(got.System) {
			t.Fatalf("Parse(%q) = %+v: not canonical", in, got)
		}
		if got.IP.IsValid() && (!got.IP.Is4() || !namesServer(got.IP)) {
			t.Fatalf("Parse(%q): co-located %v", in, got.IP)
		}
		host, port, _ := strings.Cut(got.String(), ":")
		again, err := Parse(host+".maint.example.com:"+port, "example.com")
		if err != nil || again != got {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", in, again, err, got)
		}
	})
}
