package certs

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"maintproxy/config"
)

// startDNS runs a DNSServer on 127.0.0.1 with the given rate limit until the test ends.
func startDNS(t *testing.T, rate int) *DNSServer {
	t.Helper()
	cfg := testConfig(t, config.ModeSelfSigned)
	cfg.Listen.DNS = "127.0.0.1:0"
	cfg.DNS = config.DNS{Enabled: true, Addresses: []string{"192.0.2.10", "2001:db8::10"}, RateLimit: rate}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := NewDNSServer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return s
}

func query(t *testing.T, s *DNSServer, network, name string, qtype uint16, rd bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = rd
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addr().String())
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

func TestDNSAnswers(t *testing.T) {
	s := startDNS(t, 1000)
	s.SetTXT("_acme-challenge.maint.example.test", []string{"token-1", "token-2"})
	s.SetTXT("_acme-challenge.admin.example.test.", []string{"admin-token"})
	s.SetTXT("_acme-challenge.example.test.", []string{"outside"}) // ignored
	zone := "maint." + testDomain + "."
	type want struct {
		rcode   int
		aa      bool
		answers []string // record data, in order
		soa     bool     // SOA in the authority section
	}
	cases := []struct {
		name  string
		qtype uint16
		want  want
	}{
		{zone, dns.TypeA, want{dns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		{zone, dns.TypeAAAA, want{dns.RcodeSuccess, true, []string{"2001:db8::10"}, false}},
		{zone, dns.TypeSOA, want{dns.RcodeSuccess, true, []string{"ns." + zone}, false}},
		{zone, dns.TypeNS, want{dns.RcodeSuccess, true, []string{"ns." + zone}, false}},
		{zone, dns.TypeMX, want{dns.RcodeSuccess, true, nil, true}},
		{"ns." + zone, dns.TypeA, want{dns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		// the maintenance grammar, any case
		{"12345." + zone, dns.TypeA, want{dns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		{"12345-SE2." + zone, dns.TypeA, want{dns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		{"12345-192.168.1.20." + zone, dns.TypeA, want{dns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		{"12345-se2-192.168.1.20." + strings.ToUpper(zone), dns.TypeAAAA, want{dns.RcodeSuccess, true, []string{"2001:db8::10"}, false}},
		{"12345-se2." + zone, dns.TypeTXT, want{dns.RcodeSuccess, true, nil, true}},
		{"12345-se2." + zone, dns.TypeANY, want{dns.RcodeSuccess, true, []string{"RFC8482"}, false}},
		// published challenge records
		{"_acme-challenge." + zone, dns.TypeTXT, want{dns.RcodeSuccess, true, []string{"token-1", "token-2"}, false}},
		{"_acme-challenge." + zone, dns.TypeA, want{dns.RcodeSuccess, true, nil, true}},
		// in the zone but not a name of the grammar
		{"_sip._tcp." + zone, dns.TypeSRV, want{dns.RcodeNameError, true, nil, true}},
		{"bad_name." + zone, dns.TypeA, want{dns.RcodeNameError, true, nil, true}},
		// outside the zone: refused, not resolved
		// admin.<domain> is a zone of one name
		{"admin." + testDomain + ".", dns.TypeA, want{dns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		{"ADMIN." + testDomain + ".", dns.TypeSOA, want{dns.RcodeSuccess, true, []string{"ns." + zone}, false}},
		{"www.admin." + testDomain + ".", dns.TypeA, want{dns.RcodeNameError, true, nil, true}},
		{"_acme-challenge.admin." + testDomain + ".", dns.TypeTXT, want{dns.RcodeSuccess, true, []string{"admin-token"}, false}},
		{testDomain + ".", dns.TypeA, want{dns.RcodeRefused, false, nil, false}},
		{"_acme-challenge." + testDomain + ".", dns.TypeTXT, want{dns.RcodeRefused, false, nil, false}},
		{"www.example.com.", dns.TypeA, want{dns.RcodeRefused, false, nil, false}},
		{"xmaint." + testDomain + ".", dns.TypeA, want{dns.RcodeRefused, false, nil, false}},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, c := range cases {
			r := query(t, s, network, c.name, c.qtype, true)
			label := network + " " + c.name + " " + dns.TypeToString[c.qtype]
			if r.Rcode != c.want.rcode {
				t.Errorf("%s: rcode %s, want %s", label, dns.RcodeToString[r.Rcode], dns.RcodeToString[c.want.rcode])
			}
			if r.RecursionAvailable {
				t.Errorf("%s: RA set", label)
			}
			if r.Authoritative != c.want.aa {
				t.Errorf("%s: AA %v, want %v", label, r.Authoritative, c.want.aa)
			}
			var got []string
			for _, rr := range r.Answer {
				if !strings.EqualFold(rr.Header().Name, c.name) {
					t.Errorf("%s: answer owner %s", label, rr.Header().Name)
				}
				switch v := rr.(type) {
				case *dns.A:
					got = append(got, v.A.String())
				case *dns.AAAA:
					got = append(got, v.AAAA.String())
				case *dns.SOA:
					got = append(got, v.Ns)
				case *dns.NS:
					got = append(got, v.Ns)
				case *dns.TXT:
					got = append(got, v.Txt...)
				case *dns.HINFO:
					got = append(got, v.Cpu)
				}
			}
			if strings.Join(got, " ") != strings.Join(c.want.answers, " ") {
				t.Errorf("%s: answers %v, want %v", label, got, c.want.answers)
			}
			hasSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
			if hasSOA != c.want.soa {
				t.Errorf("%s: authority %v, want SOA %v", label, r.Ns, c.want.soa)
			}
		}
	}

	// NS answers carry glue for the in-zone name server.
	r := query(t, s, "udp", zone, dns.TypeNS, false)
	if len(r.Extra) != 2 {
		t.Errorf("NS glue: %v", r.Extra)
	}

	// EDNS0 is answered with EDNS0.
	m := new(dns.Msg)
	m.SetQuestion("12345."+zone, dns.TypeA)
	m.SetEdns0(4096, false)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, s.Addr().String())
	if err != nil || r.IsEdns0() == nil || len(r.Answer) != 1 {
		t.Errorf("EDNS0 query: %v %v", r, err)
	}

	// Removing the TXT records removes the name.
	s.SetTXT("_acme-challenge."+zone, nil)
	if r := query(t, s, "tcp", "_acme-challenge."+zone, dns.TypeTXT, false); r.Rcode != dns.RcodeNameError {
		t.Errorf("removed TXT: %s", dns.RcodeToString[r.Rcode])
	}
	st := s.Stats()
	if st.Queries == 0 || st.Refused == 0 || st.NXDomain == 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDNSNotQueryOpcodes(t *testing.T) {
	s := startDNS(t, 1000)
	m := new(dns.Msg)
	m.SetUpdate("maint." + testDomain + ".")
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("UPDATE: %s", dns.RcodeToString[r.Rcode])
	}
}

// TestDNSRateLimit sends a burst of UDP queries from one client and checks that only
// about the configured rate is answered in full, that some answers slip through
// truncated (so real resolvers retry over TCP), and that TCP still answers.
func TestDNSRateLimit(t *testing.T) {
	const rate, burst = 5, 60
	s := startDNS(t, rate)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	for i := range burst {
		m := new(dns.Msg)
		m.SetQuestion("12345.maint."+testDomain+".", dns.TypeA)
		m.Id = uint16(i + 1)
		buf, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteTo(buf, s.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	full, truncated := 0, 0
	buf := make([]byte, 1500)
	for {
		// Quiet for 300 ms: every response that is coming has come.
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			break
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if r.Truncated {
			truncated++
		} else if len(r.Answer) == 1 {
			full++
		}
		if full+truncated > burst {
			t.Fatal("more responses than queries")
		}
	}
	elapsed := time.Since(start).Seconds()
	limit := rate + int(elapsed*rate) + 1
	t.Logf("%d queries in %.2fs: %d answered, %d truncated, %d dropped", burst, elapsed, full, truncated, burst-full-truncated)
	if full < 1 || full > limit {
		t.Errorf("%d full answers, want 1..%d", full, limit)
	}
	if truncated == 0 || full+truncated >= burst {
		t.Errorf("no rate limiting: %d full, %d truncated of %d", full, truncated, burst)
	}
	st := s.Stats()
	if st.Dropped == 0 || st.Truncated == 0 {
		t.Errorf("stats %+v", st)
	}
	// TCP proves the source address, so it is not limited.
	for range 3 {
		if r := query(t, s, "tcp", "12345.maint."+testDomain+".", dns.TypeA, false); len(r.Answer) != 1 || r.Truncated {
			t.Fatalf("TCP under the UDP limit: %v", r)
		}
	}
	// Other networks have their own budget.
	if !clientNet(mustAddr("127.0.0.1")).Contains(mustAddr("127.0.0.200")) || clientNet(mustAddr("192.0.2.1")).Contains(mustAddr("192.0.3.1")) {
		t.Error("client networks are not /24")
	}
}

func TestDNSServeStopsAndPortInUse(t *testing.T) {
	s := startDNS(t, 10)
	cfg := testConfig(t, config.ModeSelfSigned)
	cfg.Listen.DNS = s.Addr().String()
	cfg.DNS = config.DNS{Enabled: true, Addresses: []string{"192.0.2.10"}}
	if _, err := NewDNSServer(cfg, nil); err == nil || !strings.HasPrefix(err.Error(), "listen.dns: ") {
		t.Errorf("second server on the same port: %v", err)
	}
	// Serve on a server whose context is already cancelled returns at once.
	cfg.Listen.DNS = "127.0.0.1:0"
	s2, err := NewDNSServer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- s2.Serve(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve with a cancelled context did not return")
	}
}

func TestDNSWithDig(t *testing.T) {
	dig, err := lookPath("dig")
	if err != nil {
		t.Skip("dig not installed")
	}
	s := startDNS(t, 1000)
	_, port, _ := net.SplitHostPort(s.Addr().String())
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"12345-se2-192.168.1.20.maint.example.test", "A"}, "192.0.2.10"},
		{[]string{"+tcp", "12345.maint.example.test", "AAAA"}, "2001:db8::10"},
		{[]string{"+norecurse", "nothere_.maint.example.test", "A"}, "status: NXDOMAIN"},
		{[]string{"www.example.com", "A"}, "status: REFUSED"},
	} {
		args := append([]string{"@127.0.0.1", "-p", port, "+time=2", "+tries=1"}, c.args...)
		out, err := runCmd(dig, args...)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("dig %v: %v\n%s", c.args, err, out)
		}
		if flags := digFlags(out); strings.Contains(" "+flags+" ", " ra ") {
			t.Errorf("dig %v: recursion available (flags %q)", c.args, flags)
		}
	}
}

// digFlags returns the header flags dig printed (";; flags: qr aa rd; QUERY: ...").
func digFlags(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if _, rest, ok := strings.Cut(line, ";; flags:"); ok {
			flags, _, _ := strings.Cut(rest, ";")
			return strings.TrimSpace(flags)
		}
	}
	return ""
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func lookPath(name string) (string, error) { return exec.LookPath(name) }

func runCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
