package maintname

import (
	"regexp"
	"strings"
)

// The PAC file matches host names in the browser's JavaScript engine, the proxy parses them
// in Go; the pattern below is written in the subset of regular expression syntax on which
// Go (RE2) and JavaScript agree: ^ and $ without flags (both mean start and end of the
// whole input; neither matches before a trailing newline), ASCII character classes,
// non-capturing groups, alternation, ? and bounded {n,m} repetition, and escaped dots.
// No \d, \b, \s, flags, look-around or back-references. For a pattern without those,
// matching is membership in the same regular language in both engines, whatever their
// search strategy, so a Go test of the pattern speaks for the browser.

// ipv4Octet matches 0-255 without leading zeros, as net/netip (and so Parse) accepts.
const ipv4Octet = `(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])`

// hostPattern is the grammar below maint.<domain>, lower case:
// <customer-id>[-<system-name>][-<co-located-ipv4>]. The customer ID is 1-63 letters and
// digits; a system name is 1-63 letters, digits and inner hyphens; the IPv4 keeps its dots.
const hostPattern = `^[a-z0-9]{1,63}(?:-[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)?(?:-` +
	ipv4Octet + `(?:\.` + ipv4Octet + `){3})?\.maint\.`

// HostRegexp returns the regular expression, valid and equal in meaning in Go and
// JavaScript, that matches the lower-case host names of the grammar under domain (the
// configured, non-empty domain). It matches exactly the names ParseHost accepts, and also
// those whose co-located address names no server, which ParseHost refuses with a message
// (the proxy's 400 explains it better than a browser's failed direct connection).
func HostRegexp(domain string) string {
	return hostPattern + regexp.QuoteMeta(strings.ToLower(domain)) + `$`
}
