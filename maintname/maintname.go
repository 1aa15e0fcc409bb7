// Package maintname owns the maintenance host name grammar,
//
//	<customer-id>[-<system-name>][-<co-located-server-ipv4>].maint.<domain>:<port>
//
// and everything derived from it: the parsed Target, the customer-ID, system-name and port
// rules that configuration shares, the grammar text shown to technicians, and the regular
// expression of the PAC file. It imports only the standard library, so that the proxy, the
// DNS zone, the PAC file and configuration agree by construction.
package maintname

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// hostGrammar is the grammar up to the domain.
const hostGrammar = "<customer-id>[-<system-name>][-<co-located-server-ipv4>].maint."

// Grammar is the maintenance host name grammar, as shown to technicians.
const Grammar = hostGrammar + "<domain>:<port>"

// HostGrammar is the grammar of the host part for domain, without the port.
func HostGrammar(domain string) string { return hostGrammar + domain }

// GrammarFor is Grammar with domain filled in.
func GrammarFor(domain string) string { return HostGrammar(domain) + ":<port>" }

// Parse errors, for errors.Is.
var (
	// ErrNotMaintenance: the host is not below maint.<domain> (never dialled).
	ErrNotMaintenance = errors.New("not a maintenance host name")
	// ErrMalformed: the host is below maint.<domain> but does not follow Grammar.
	ErrMalformed = errors.New("malformed maintenance host name")
)

// maxLabel is the longest customer ID or system name: a DNS label's limit.
const maxLabel = 63

// Target is a parsed maintenance destination.
type Target struct {
	Customer string     // lower case, letters and digits
	System   string     // lower case; empty means the customer's primary system
	IP       netip.Addr // co-located server; the zero Addr means the system itself
	Port     uint16     // 0 only from ParseHost
}

// String renders the target in canonical (lower-case) form without the domain.
func (t Target) String() string {
	s := t.Customer
	if t.System != "" {
		s += "-" + t.System
	}
	if t.IP.IsValid() {
		s += "-" + t.IP.String()
	}
	return s + ":" + strconv.Itoa(int(t.Port))
}

// Parse parses a CONNECT authority such as 12345-SE2-192.168.1.20.maint.example.com:3389
// against domain (lower case, as configuration normalises it). Names are case-insensitive.
// It returns ErrNotMaintenance for any host outside maint.<domain> (raw IPs included) and
// ErrMalformed, wrapped with the reason, for names inside it that break the grammar or
// whose co-located address names no server (see ParseHost).
func Parse(authority, domain string) (Target, error) {
	// SplitHostPort drops the brackets of "[host]:port", a form for IPv6 literals that no
	// maintenance name takes.
	if strings.HasPrefix(authority, "[") {
		return Target{}, ErrNotMaintenance
	}
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q is not host:port", ErrMalformed, authority)
	}
	t, herr := ParseHost(host, domain)
	if errors.Is(herr, ErrNotMaintenance) {
		return Target{}, herr
	}
	// The port is judged before the rest of the name, as it always has been.
	p, err := ParsePort(port)
	if err != nil {
		return Target{}, fmt.Errorf("%w: port %v", ErrMalformed, err)
	}
	if herr != nil {
		return Target{}, herr
	}
	t.Port = p
	return t, nil
}

// ParseHost parses a host name without a port (Target.Port is 0), as the DNS zone and the
// PAC file see it; Parse calls it. It accepts exactly the names HostRegexp matches, except
// that it also refuses co-located addresses that name no server: 0.0.0.0/8, multicast
// 224.0.0.0/4 and reserved 240.0.0.0/4 with the broadcast address (ErrMalformed).
func ParseHost(host, domain string) (Target, error) {
	// ASCII folding only: Unicode folding would turn look-alikes such as the Kelvin sign
	// into letters of a real customer ID.
	host = asciiLower(host)
	suffix := ".maint." + domain
	prefix, ok := strings.CutSuffix(host, suffix)
	if !ok || domain == "" {
		return Target{}, ErrNotMaintenance
	}
	if prefix == "" {
		return Target{}, fmt.Errorf("%w: no customer ID before %s", ErrMalformed, suffix[1:])
	}
	var t Target
	// A dot can only come from the co-located IPv4, which ends the first part after a hyphen.
	if dot := strings.IndexByte(prefix, '.'); dot >= 0 {
		dash := strings.LastIndexByte(prefix[:dot], '-')
		if dash < 0 {
			return Target{}, fmt.Errorf("%w: %q has a dot outside a co-located IPv4 address", ErrMalformed, prefix)
		}
		ip, err := netip.ParseAddr(prefix[dash+1:])
		if err != nil || !ip.Is4() {
			return Target{}, fmt.Errorf("%w: %q is not an IPv4 address", ErrMalformed, prefix[dash+1:])
		}
		t.IP, prefix = ip, prefix[:dash]
	}
	customer, system, hasSystem := strings.Cut(prefix, "-")
	if !ValidCustomerID(customer) {
		return Target{}, fmt.Errorf("%w: customer ID %q must be 1-63 letters and digits", ErrMalformed, customer)
	}
	if hasSystem && !ValidSystemName(system) {
		return Target{}, fmt.Errorf("%w: system name %q must be 1-63 letters, digits and inner hyphens", ErrMalformed, system)
	}
	// Judged last, so that the refusal names the address only when nothing else is wrong.
	if t.IP.IsValid() && !namesServer(t.IP) {
		return Target{}, fmt.Errorf("%w: %w", ErrMalformed, noServerError{t.IP})
	}
	t.Customer, t.System = customer, system
	return t, nil
}

// namesServer reports whether a co-located IPv4 address can name one server: not "this
// network" (0.0.0.0/8), multicast (224.0.0.0/4) or reserved (240.0.0.0/4, which holds the
// broadcast address 255.255.255.255).
func namesServer(ip netip.Addr) bool {
	first := ip.As4()[0]
	return first != 0 && first < 224
}

// noServerError says why a co-located address is refused.
type noServerError struct{ ip netip.Addr }

func (e noServerError) Error() string {
	return fmt.Sprintf("co-located address %s names no server (0.0.0.0/8, multicast 224.0.0.0/4, reserved 240.0.0.0/4 and broadcast are refused)", e.ip)
}

// ValidCustomerID reports whether s is a valid (lower-case) customer ID: 1-63 letters and
// digits.
func ValidCustomerID(s string) bool {
	if s == "" || len(s) > maxLabel {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLowerAlnum(s[i]) {
			return false
		}
	}
	return true
}

// ValidSystemName reports whether s is a valid (lower-case) system name: 1-63 letters,
// digits and hyphens, neither first nor last a hyphen. It is the rule of a DNS label.
func ValidSystemName(s string) bool {
	if s == "" || len(s) > maxLabel || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLowerAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// ParsePort parses a decimal TCP port in 1-65535, without sign or leading zeros.
func ParsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || s[0] == '0' || s[0] == '+' {
		return 0, fmt.Errorf("%q is not a port in 1-65535", s)
	}
	return uint16(n), nil
}

// asciiLower lower-cases ASCII letters and leaves every other byte as it is.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
