package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"maintproxy/config"
)

// Grammar is the maintenance host name grammar, shown to technicians with a 400.
const Grammar = "<customer-id>[-<system-name>][-<co-located-server-ipv4>].maint.<domain>:<port>"

// Parse errors.
var (
	// ErrNotMaintenance: the host is not below maint.<domain> (never dialled).
	ErrNotMaintenance = errors.New("not a maintenance host name")
	// ErrMalformed: the host is below maint.<domain> but does not follow Grammar.
	ErrMalformed = errors.New("malformed maintenance host name")
)

// Target is a parsed CONNECT destination.
type Target struct {
	Customer string     // lower case, letters and digits
	System   string     // lower case; empty means the customer's primary system
	IP       netip.Addr // co-located server; the zero Addr means the system itself
	Port     uint16
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
	return fmt.Sprintf("%s:%d", s, t.Port)
}

// ParseTarget parses a CONNECT authority such as 12345-SE2-192.168.1.20.maint.example.com:3389
// against domain (lower case). Names are case-insensitive. It returns ErrNotMaintenance for
// any host outside maint.<domain> (raw IPs included) and ErrMalformed, wrapped with the
// reason, for names inside it that break the grammar.
func ParseTarget(authority, domain string) (Target, error) {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q is not host:port", ErrMalformed, authority)
	}
	host = strings.ToLower(host)
	suffix := ".maint." + domain
	prefix, ok := strings.CutSuffix(host, suffix)
	if !ok || domain == "" {
		return Target{}, ErrNotMaintenance
	}
	var t Target
	p, err := config.ParsePort(port)
	if err != nil {
		return Target{}, fmt.Errorf("%w: port %v", ErrMalformed, err)
	}
	t.Port = uint16(p)
	if prefix == "" {
		return Target{}, fmt.Errorf("%w: no customer ID before %s", ErrMalformed, suffix[1:])
	}
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
	customer, system, _ := strings.Cut(prefix, "-")
	if customer == "" || !isAlnum(customer) {
		return Target{}, fmt.Errorf("%w: customer ID %q must be letters and digits", ErrMalformed, customer)
	}
	if strings.Contains(prefix, "-") && !config.ValidSystemName(system) {
		return Target{}, fmt.Errorf("%w: system name %q must be letters, digits and inner hyphens", ErrMalformed, system)
	}
	t.Customer, t.System = customer, system
	return t, nil
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return len(s) <= 63
}
