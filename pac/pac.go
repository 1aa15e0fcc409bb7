package pac

import (
	"encoding/json"
	"regexp"
	"strings"
)

// ipv4Octet matches 0-255 without leading zeros, as net/netip (and so the proxy) accepts.
const ipv4Octet = `(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])`

// hostPattern is the maintenance grammar below maint.<domain>, lower case:
// <customer-id>[-<system-name>][-<co-located-ipv4>]. The customer ID is letters and digits;
// a system name may hold inner hyphens; the IPv4 keeps its dots.
const hostPattern = `^[a-z0-9]+(?:-[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)?(?:-` +
	ipv4Octet + `(?:\.` + ipv4Octet + `){3})?\.maint\.`

// HostRegexp returns the regular expression (valid in both Go and JavaScript) that PAC uses
// for maintenance host names under domain, which it expects in lower case.
func HostRegexp(domain string) string {
	return hostPattern + regexp.QuoteMeta(strings.ToLower(domain)) + `$`
}

// PAC returns the proxy auto-configuration script for domain: every host name of the
// maintenance grammar (any case, including the bare primary name 12345.maint.<domain>) goes
// to "HTTPS <proxyHostPort>", everything else DIRECT. maint.<domain> itself, admin.<domain>
// and look-alikes such as maint.<domain>.evil.com go DIRECT. The rule is the one source for
// proxy.pac and the Chrome extension.
func PAC(domain, proxyHostPort string) string {
	// JSON string literals are valid JavaScript and escape anything a config could smuggle in.
	re, _ := json.Marshal(HostRegexp(domain))
	proxy, _ := json.Marshal("HTTPS " + proxyHostPort)
	var b strings.Builder
	b.WriteString("// Proxy auto-configuration for the maintenance proxy of " + sanitizeComment(domain) + ".\n")
	b.WriteString("// <customer-id>[-<system-name>][-<co-located-ipv4>].maint." + sanitizeComment(domain) +
		" goes through the proxy over TLS; everything else goes direct.\n")
	b.WriteString("function FindProxyForURL(url, host) {\n")
	b.WriteString("  if (new RegExp(" + string(re) + ").test(String(host).toLowerCase())) {\n")
	b.WriteString("    return " + string(proxy) + ";\n")
	b.WriteString("  }\n")
	b.WriteString("  return \"DIRECT\";\n")
	b.WriteString("}\n")
	return b.String()
}

// sanitizeComment keeps a value from ending a // comment early.
func sanitizeComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x2028 || r == 0x2029 {
			return -1
		}
		return r
	}, s)
}
