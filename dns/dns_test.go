package dns

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"maintproxy/config"
	"maintproxy/internal/testclock"
	"maintproxy/internal/testkit"
)

const testDomain = "example.test"

// testConfig is a ready broker configuration with the DNS server on 127.0.0.1:0.
func testConfig(t *testing.T, rate int) *config.Broker {
	t.Helper()
	cfg, err := config.NewBroker(config.Broker{
		Domain:  testDomain,
		Listen:  config.Listen{Proxy: "127.0.0.1:0", Web: "127.0.0.1:0", DNS: "127.0.0.1:0"},
		DataDir: t.TempDir(),
		DNS:     config.DNS{Enabled: true, Addresses: []string{"192.0.2.10", "2001:db8::10"}, RateLimit: rate},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startDNS runs a Server on 127.0.0.1 with the given rate limit and clock (nil: real time)
// until the test ends.
func startDNS(t *testing.T, rate int, now func() time.Time) *Server {
	t.Helper()
	s, err := New(Options{Config: testConfig(t, rate), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := testkit.Recv(t, done, 5*time.Second, "Serve returning after cancel"); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func query(t *testing.T, s *Server, network, name string, qtype uint16, rd bool) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = rd
	c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addr().String())
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, mdns.TypeToString[qtype], err)
	}
	return r
}

func TestDNSAnswers(t *testing.T) {
	s := startDNS(t, 1000, nil)
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
		{zone, mdns.TypeA, want{mdns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		{zone, mdns.TypeAAAA, want{mdns.RcodeSuccess, true, []string{"2001:db8::10"}, false}},
		{zone, mdns.TypeSOA, want{mdns.RcodeSuccess, true, []string{"ns." + zone}, false}},
		{zone, mdns.TypeNS, want{mdns.RcodeSuccess, true, []string{"ns." + zone}, false}},
		{zone, mdns.TypeMX, want{mdns.RcodeSuccess, true, nil, true}},
		{"ns." + zone, mdns.TypeA, want{mdns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		// the maintenance grammar, any case
		{"12345." + zone, mdns.TypeA, want{mdns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		{"12345-SE2." + zone, mdns.TypeA, want{mdns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		{"12345-192.168.1.20." + zone, mdns.TypeA, want{mdns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		{"12345-se2-192.168.1.20." + strings.ToUpper(zone), mdns.TypeAAAA, want{mdns.RcodeSuccess, true, []string{"2001:db8::10"}, false}},
		{"12345-se2." + zone, mdns.TypeTXT, want{mdns.RcodeSuccess, true, nil, true}},
		{"12345-se2." + zone, mdns.TypeANY, want{mdns.RcodeSuccess, true, []string{"RFC8482"}, false}},
		// published challenge records
		{"_acme-challenge." + zone, mdns.TypeTXT, want{mdns.RcodeSuccess, true, []string{"token-1", "token-2"}, false}},
		{"_acme-challenge." + zone, mdns.TypeA, want{mdns.RcodeSuccess, true, nil, true}},
		// in the zone but not a name of the grammar
		{"_sip._tcp." + zone, mdns.TypeSRV, want{mdns.RcodeNameError, true, nil, true}},
		{"bad_name." + zone, mdns.TypeA, want{mdns.RcodeNameError, true, nil, true}},
		{"12345-0.0.0.0." + zone, mdns.TypeA, want{mdns.RcodeNameError, true, nil, true}}, // names no server
		// outside the zone: refused, not resolved
		// admin.<domain> is a zone of one name
		{"admin." + testDomain + ".", mdns.TypeA, want{mdns.RcodeSuccess, true, []string{"192.0.2.10"}, false}},
		{"ADMIN." + testDomain + ".", mdns.TypeSOA, want{mdns.RcodeSuccess, true, []string{"ns." + zone}, false}},
		{"www.admin." + testDomain + ".", mdns.TypeA, want{mdns.RcodeNameError, true, nil, true}},
		{"_acme-challenge.admin." + testDomain + ".", mdns.TypeTXT, want{mdns.RcodeSuccess, true, []string{"admin-token"}, false}},
		{testDomain + ".", mdns.TypeA, want{mdns.RcodeRefused, false, nil, false}},
		{"_acme-challenge." + testDomain + ".", mdns.TypeTXT, want{mdns.RcodeRefused, false, nil, false}},
		{"www.example.com.", mdns.TypeA, want{mdns.RcodeRefused, false, nil, false}},
		{"xmaint." + testDomain + ".", mdns.TypeA, want{mdns.RcodeRefused, false, nil, false}},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, c := range cases {
			r := query(t, s, network, c.name, c.qtype, true)
			label := network + " " + c.name + " " + mdns.TypeToString[c.qtype]
			if r.Rcode != c.want.rcode {
				t.Errorf("%s: rcode %s, want %s", label, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[c.want.rcode])
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
				case *mdns.A:
					got = append(got, v.A.String())
				case *mdns.AAAA:
					got = append(got, v.AAAA.String())
				case *mdns.SOA:
					got = append(got, v.Ns)
				case *mdns.NS:
					got = append(got, v.Ns)
				case *mdns.TXT:
					got = append(got, v.Txt...)
				case *mdns.HINFO:
					got = append(got, v.Cpu)
				}
			}
			if strings.Join(got, " ") != strings.Join(c.want.answers, " ") {
				t.Errorf("%s: answers %v, want %v", label, got, c.want.answers)
			}
			hasSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == mdns.TypeSOA
			if hasSOA != c.want.soa {
				t.Errorf("%s: authority %v, want SOA %v", label, r.Ns, c.want.soa)
			}
		}
	}

	// NS answers carry glue for the in-zone name server.
	r := query(t, s, "udp", zone, mdns.TypeNS, false)
	if len(r.Extra) != 2 {
		t.Errorf("NS glue: %v", r.Extra)
	}

	// EDNS0 is answered with EDNS0.
	m := new(mdns.Msg)
	m.SetQuestion("12345."+zone, mdns.TypeA)
	m.SetEdns0(4096, false)
	r, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(m, s.Addr().String())
	if err != nil || r.IsEdns0() == nil || len(r.Answer) != 1 {
		t.Errorf("EDNS0 query: %v %v", r, err)
	}

	// Removing the TXT records removes the name.
	s.SetTXT("_acme-challenge."+zone, nil)
	if r := query(t, s, "tcp", "_acme-challenge."+zone, mdns.TypeTXT, false); r.Rcode != mdns.RcodeNameError {
		t.Errorf("removed TXT: %s", mdns.RcodeToString[r.Rcode])
	}
	st := s.Stats()
	if st.Queries == 0 || st.Refused == 0 || st.NXDomain == 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDNSNotQueryOpcodes(t *testing.T) {
	s := startDNS(t, 1000, nil)
	m := new(mdns.Msg)
	m.SetUpdate("maint." + testDomain + ".")
	r, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(m, s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != mdns.RcodeNotImplemented {
		t.Errorf("UPDATE: %s", mdns.RcodeToString[r.Rcode])
	}
}

// TestDNSRateLimit sends bursts of UDP queries from one client at an injected time: the
// bucket answers exactly dns.rate_limit in full, then every second response slips through
// truncated (so real resolvers retry over TCP) and the rest are dropped; a second later the
// bucket is full again. TCP and other client networks are not affected.
func TestDNSRateLimit(t *testing.T) {
	const rate, burst = 5, 60
	clk := testclock.New(time.Unix(1_700_000_000, 0))
	s := startDNS(t, rate, clk.Now)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sent := 0
	send := func(c net.PacketConn, n int) {
		for range n {
			sent++
			m := new(mdns.Msg)
			m.SetQuestion("12345.maint."+testDomain+".", mdns.TypeA)
			m.Id = uint16(sent)
			buf, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.WriteTo(buf, s.Addr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// receive reads n responses and counts full and truncated ones.
	receive := func(c net.PacketConn, n int) (full, truncated int) {
		buf := make([]byte, 1500)
		for range n {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("after %d full and %d truncated of %d: %v", full, truncated, n, err)
			}
			r := new(mdns.Msg)
			if err := r.Unpack(buf[:k]); err != nil {
				t.Fatal(err)
			}
			if r.Truncated {
				truncated++
			} else if len(r.Answer) == 1 {
				full++
			}
		}
		return full, truncated
	}
	// settled waits until the server has judged every query sent so far.
	settled := func(over uint64) {
		testkit.WaitFor(t, 10*time.Second, "every query judged", func() bool {
			st := s.Stats()
			return st.Queries == uint64(sent) && st.Dropped+st.Truncated == over
		})
	}

	send(conn, burst)
	wantTrunc := (burst - rate + 1) / 2
	settled(burst - rate)
	if full, trunc := receive(conn, rate+wantTrunc); full != rate || trunc != wantTrunc {
		t.Errorf("burst of %d: %d full, %d truncated; want %d, %d", burst, full, trunc, rate, wantTrunc)
	}
	if st := s.Stats(); st.Truncated != uint64(wantTrunc) || st.Dropped != uint64(burst-rate-wantTrunc) {
		t.Errorf("stats %+v", st)
	}

	// One second later: rate tokens again, not more.
	clk.Add(time.Second)
	send(conn, rate+1)
	settled(burst - rate + 1)
	if full, trunc := receive(conn, rate+1); full != rate || trunc != 1 {
		t.Errorf("after a second: %d full, %d truncated; want %d, 1", full, trunc, rate)
	}

	// TCP proves the source address, so it is not limited.
	for range 3 {
		if r := query(t, s, "tcp", "12345.maint."+testDomain+".", mdns.TypeA, false); len(r.Answer) != 1 || r.Truncated {
			t.Fatalf("TCP under the UDP limit: %v", r)
		}
	}
	// Another /24 has its own budget (all of 127.0.0.0/8 is loopback on Linux).
	other, err := net.ListenPacket("udp", "127.0.1.1:0")
	if err != nil {
		t.Skipf("no second loopback network: %v", err)
	}
	defer other.Close()
	send(other, 1)
	if full, _ := receive(other, 1); full != 1 {
		t.Error("a client in another /24 was limited")
	}
}

// TestRateLimiter checks the bucket arithmetic and its memory bound at injected times.
func TestRateLimiter(t *testing.T) {
	clk := testclock.New(time.Unix(1_700_000_000, 0))
	l := newRateLimiter(2, clk.Now)
	a := mustAddr("192.0.2.1")
	want := []rateVerdict{rateAllow, rateAllow, rateSlip, rateDrop, rateSlip, rateDrop}
	for i, w := range want {
		if got := l.take(a); got != w {
			t.Fatalf("take %d: %v, want %v", i, got, w)
		}
	}
	clk.Add(500 * time.Millisecond) // one token back
	if got := l.take(mustAddr("192.0.2.200")); got != rateAllow {
		t.Errorf("same /24 after 0.5s: %v", got)
	}
	if got := l.take(a); got != rateSlip {
		t.Errorf("bucket empty again: %v", got)
	}
	clk.Add(time.Hour) // refills to the burst, not beyond
	for i, w := range []rateVerdict{rateAllow, rateAllow, rateSlip} {
		if got := l.take(a); got != w {
			t.Errorf("after an hour, take %d: %v, want %v", i, got, w)
		}
	}
	if !clientNet(mustAddr("127.0.0.1")).Contains(mustAddr("127.0.0.200")) || clientNet(mustAddr("192.0.2.1")).Contains(mustAddr("192.0.3.1")) {
		t.Error("IPv4 client networks are not /24")
	}
	if !clientNet(mustAddr("2001:db8:0:ff::1")).Contains(mustAddr("2001:db8:0:1::2")) || clientNet(mustAddr("2001:db8:0:100::1")).Contains(mustAddr("2001:db8::1")) {
		t.Error("IPv6 client networks are not /56")
	}

	// Memory: a full table forgets refilled buckets first, and starts over only if none is.
	fill := func() {
		for i := range dnsMaxBuckets {
			l.take(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}))
		}
	}
	// No bucket has refilled: the table starts over rather than grow.
	l = newRateLimiter(2, clk.Now)
	fill()
	l.take(a)
	if n := len(l.buckets); n != 1 {
		t.Errorf("a full table of busy buckets: %d left, want 1", n)
	}
	// A second later all have refilled but one that is busy again: only that one is kept.
	l = newRateLimiter(2, clk.Now)
	fill()
	clk.Add(time.Second)
	busy := netip.AddrFrom4([4]byte{10, 0, 0, 1})
	for range 3 {
		l.take(busy)
	}
	l.take(a)
	if n := len(l.buckets); n != 2 || l.buckets[clientNet(busy)] == nil {
		t.Errorf("after pruning refilled buckets: %d left, want the busy one and the new one", n)
	}
}

func TestDNSServeStopsAndPortInUse(t *testing.T) {
	s := startDNS(t, 10, nil)
	cfg := testConfig(t, 10)
	cfg.Listen.DNS = s.Addr().String()
	if _, err := New(Options{Config: cfg}); err == nil || !strings.HasPrefix(err.Error(), "listen.dns: ") {
		t.Errorf("second server on the same port: %v", err)
	}
	// Serve on a server whose context is already cancelled returns at once.
	s2, err := New(Options{Config: testConfig(t, 10)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- s2.Serve(ctx) }()
	if err := testkit.Recv(t, done, 5*time.Second, "Serve with a cancelled context returning"); err != nil {
		t.Error(err)
	}
}

func TestDNSWithDig(t *testing.T) {
	dig, err := lookPath("dig")
	if err != nil {
		t.Skip("dig not installed")
	}
	s := startDNS(t, 1000, nil)
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
