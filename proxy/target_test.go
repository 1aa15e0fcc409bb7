package proxy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
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
		{"12345-0.0.0.0.maint.example.com:22", Target{Customer: "12345", IP: netip.MustParseAddr("0.0.0.0"), Port: 22}},
	}
	for _, c := range ok {
		got, err := ParseTarget(c.in, d)
		if err != nil || got != c.want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
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
	}
	for _, c := range bad {
		got, err := ParseTarget(c.in, d)
		if !errors.Is(err, c.want) {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

// FuzzParseTarget checks that whatever is accepted is in canonical form and round-trips.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"12345.maint.example.com:22", "12345-SE2-192.168.1.20.maint.example.com:3389",
		"127.0.0.1:22", "12345-.maint.example.com:22", "a-b-c-1.2.3.4.maint.example.com:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseTarget(in, "example.com")
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotMaintenance) {
				t.Fatalf("ParseTarget(%q): unclassified error %v", in, err)
			}
			return
		}
		if got.Customer == "" || got.Port == 0 || strings.ToLower(got.Customer) != got.Customer {
			t.Fatalf("ParseTarget(%q) = %+v: not canonical", in, got)
		}
		if got.IP.IsValid() && !got.IP.Is4() {
			t.Fatalf("ParseTarget(%q): non-IPv4 %v", in, got.IP)
		}
		host, port, _ := strings.Cut(got.String(), ":")
		again, err := ParseTarget(host+".maint.example.com:"+port, "example.com")
		if err != nil || again != got {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", in, again, err, got)
		}
	})
}
