package pac

import (
	"encoding/json"
	"strings"

	"maintproxy/maintname"
)

// PAC returns the proxy auto-configuration script for domain: every host name of the
// maintenance grammar (any case, including the bare primary name 12345.maint.<domain>) goes
// to "HTTPS <proxyHostPort>", everything else DIRECT. maint.<domain> itself, admin.<domain>
// and look-alikes such as maint.<domain>.evil.com go DIRECT. The rule is
// maintname.HostRegexp, for proxy.pac and the Chrome extension alike.
func PAC(domain, proxyHostPort string) string {
	// JSON string literals are valid JavaScript and escape anything a config could smuggle in.
	re, _ := json.Marshal(maintname.HostRegexp(domain))
	proxy, _ := json.Marshal("HTTPS " + proxyHostPort)
	var b strings.Builder
	b.WriteString("// Proxy auto-configuration for the maintenance proxy of " + sanitizeComment(domain) + ".\n")
	b.WriteString("// " + maintname.HostGrammar(sanitizeComment(domain)) +
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
