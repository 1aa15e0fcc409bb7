package maintname

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// pacDomains are the domains the PAC property is checked under; a domain that itself
// starts with maint. tests that the suffix is anchored, not searched for.
var pacDomains = []string{"example.com", "maint.example.com"}

// checkPACAgrees fails t unless the PAC regular expression (on the lower-cased host, as the
// PAC script lowers it) and ParseHost accept exactly the same host, apart from co-located
// addresses that name no server: the regexp matches those and ParseHost refuses them with
// that reason alone, which the test proves by swapping in an ordinary address.
// The host is lowered ASCII-only, as ParseHost lowers it; JavaScript's toLowerCase agrees
// on ASCII, which is all a browser passes (host names reach PAC scripts in their ASCII,
// IDNA form).
func checkPACAgrees(t *testing.T, res []*regexp.Regexp, host string) {
	t.Helper()
	for i, domain := range pacDomains {
		matched := res[i].MatchString(asciiLower(host))
		_, err := ParseHost(host, domain)
		var noServer noServerError
		switch {
		case err == nil && !matched:
			t.Fatalf("%q under %s: ParseHost accepts, the PAC regexp does not match", host, domain)
		case err == nil:
		case !errors.As(err, &noServer):
			if matched {
				t.Fatalf("%q under %s: the PAC regexp matches, ParseHost refuses: %v", host, domain, err)
			}
		case !matched:
			t.Fatalf("%q under %s: refused for its address (%v) but the PAC regexp does not match", host, domain, err)
		default:
			if namesServer(noServer.ip) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("%q under %s: %v refused as naming no server", host, domain, noServer.ip)
			}
			// The same name with an ordinary address is accepted: nothing else was wrong.
			lower := asciiLower(host)
			at := strings.LastIndex(lower, "-"+noServer.ip.String()+".maint.")
			if at < 0 {
				t.Fatalf("%q under %s: address %v not found in the name", host, domain, noServer.ip)
			}
			fixed := lower[:at] + "-10.0.0.1" + lower[at+1+len(noServer.ip.String()):]
			if _, err := ParseHost(fixed, domain); err != nil {
				t.Fatalf("%q under %s: with an ordinary address (%q) still refused: %v", host, domain, fixed, err)
			}
		}
	}
}

func compilePAC(tb testing.TB) []*regexp.Regexp {
	tb.Helper()
	var res []*regexp.Regexp
	for _, d := range pacDomains {
		res = append(res, regexp.MustCompile(HostRegexp(d)))
	}
	return res
}

// pacSeeds cover every branch of the grammar and the ways out of it.
var pacSeeds = []string{
	"12345.maint.example.com", "12345-se2.maint.example.com", "12345-SE2.MAINT.EXAMPLE.COM",
	"12345-se-2-north.maint.example.com", "12345-se--2.maint.example.com", "12345-7.maint.example.com",
	"12345-192.168.1.20.maint.example.com", "12345-se2-192.168.1.20.maint.example.com",
	"12345-ucm-module-1-10.0.0.9.maint.example.com", "1-2-3.4.5.6.maint.example.com",
	"12345-0.0.0.0.maint.example.com", "12345-se1-255.255.255.255.maint.example.com", "1-224.0.0.1.maint.example.com",
	"12345.maint.maint.example.com", "maint.example.com", "admin.example.com", "12345.maint.example.com.",
	"12345.maint.example.com.evil.com", "12345.xmaint.example.com", "12345.maint.exampleXcom",
	"a.b.maint.example.com", "-12345.maint.example.com", "12345-.maint.example.com", "12345--se1.maint.example.com",
	"12345_se1.maint.example.com", "12345-se1-256.1.1.1.maint.example.com", "12345-se1-01.1.1.1.maint.example.com",
	"12345-1.2.3.maint.example.com", "12345-1.2.3.4.5.maint.example.com", "192.168.1.20", "[::1]", "",
	"12345.maint.example.com\n", "\u212a.maint.example.com", "İ1.maint.example.com",
	strings.Repeat("1", 63) + ".maint.example.com", strings.Repeat("1", 64) + ".maint.example.com",
	"1-" + strings.Repeat("s", 63) + ".maint.example.com", "1-" + strings.Repeat("s", 64) + "-1.2.3.4.maint.example.com",
}

// TestPACRegexpMatchesParse checks the property of FuzzPACRegexpMatchesParse on the seeds,
// so that it runs in every `go test`.
func TestPACRegexpMatchesParse(t *testing.T) {
	res := compilePAC(t)
	matched := 0
	for _, h := range pacSeeds {
		checkPACAgrees(t, res, h)
		if res[0].MatchString(asciiLower(h)) {
			matched++
		}
	}
	if matched < 10 || matched > len(pacSeeds)-10 {
		t.Errorf("%d of %d seeds match: the seeds no longer cover both sides", matched, len(pacSeeds))
	}
}

// FuzzPACRegexpMatchesParse: the PAC file's regular expression and ParseHost accept exactly
// the same host names (see checkPACAgrees for the one, deliberate, difference).
func FuzzPACRegexpMatchesParse(f *testing.F) {
	for _, s := range pacSeeds {
		f.Add(s)
	}
	res := compilePAC(f)
	f.Fuzz(func(t *testing.T, host string) { checkPACAgrees(t, res, host) })
}
