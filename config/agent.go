package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"maintproxy/maintname"
)

// Agent is the customer-site agent's configuration. Get one from LoadAgent or NewAgent,
// which apply the defaults and validate it.
type Agent struct {
	// Broker is the base URL of the broker's web listener, e.g. https://admin.example.com.
	Broker string `mapstructure:"broker"`
	// BrokerAddrs, when set, are the HOST:PORT addresses dialled instead of resolving the
	// URL's host (TLS still verifies server_name or the URL's name): the brokers of a
	// cluster. They are tried shuffled, the one that failed last tried last.
	BrokerAddrs []string `mapstructure:"broker_addrs"`
	// Connections is how many sessions the agent keeps, each to a different broker
	// (default 1; 2 in cluster mode, so losing a broker loses no new tunnel).
	Connections int `mapstructure:"connections"`
	// CAFile is a PEM file of roots to verify the broker with (default: the system roots).
	CAFile string `mapstructure:"ca_file"`
	// ServerName overrides the TLS name checked on the broker's certificate.
	ServerName string `mapstructure:"server_name"`
	Customer   string `mapstructure:"customer"`
	System     string `mapstructure:"system"`
	Secret     string `mapstructure:"secret"`
	SecretFile string `mapstructure:"secret_file"`

	RemoteAccess RemoteAccess `mapstructure:"remote_access"`
	Colocated    Colocated    `mapstructure:"colocated"`
	// Network lists the other systems of the customer's network that this agent (the
	// primary's) reaches for the broker, under this server's switches.
	Network Network `mapstructure:"network"`

	// DialTimeout bounds each dial to a target (default 10s).
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	// MaxBackoff caps the wait between reconnect attempts (default 30s).
	MaxBackoff time.Duration `mapstructure:"max_backoff"`
	Log        Log           `mapstructure:"log"`
}

// RemoteAccess is the customer's switch for access to the server itself.
type RemoteAccess struct {
	Enabled bool `mapstructure:"enabled"`
	// Services maps a requested port to the local address dialled for it.
	Services map[string]string `mapstructure:"services"`
}

// Colocated is the customer's switch for access to other servers on the same network.
type Colocated struct {
	Enabled bool     `mapstructure:"enabled"`
	Tunnels []Tunnel `mapstructure:"tunnels"`
}

// Network is the customer's network as seen from the primary server.
type Network struct {
	// Systems maps the name of a secondary or expansion server without an agent of its own
	// to its IPv4 address, e.g. {SE2: 192.168.1.21}. A CONNECT to <customer>-SE2 then
	// comes through this agent and dials that address on the ports of
	// remote_access.services, while remote_access is enabled here.
	Systems map[string]string `mapstructure:"systems"`
}

// Tunnel is one TCP tunnel entry: the only way to reach a co-located server.
type Tunnel struct {
	Application string `mapstructure:"application"`
	IP          string `mapstructure:"ip"`
	Port        int    `mapstructure:"port"`
}

// standardPorts are the services of a phone system offered by default: SSH/SFTP, HTTPS,
// RDP, web control panel, web manager, one-X Portal, WebLM.
func standardPorts() []int { return []int{22, 443, 3389, 7071, 8443, 9443, 52233} }

// applicationPort is the default port of a tunnel application (upper case), or 0.
func applicationPort(app string) int {
	switch app {
	case "SSH", "SFTP":
		return 22
	case "HTTPS":
		return 443
	case "RDP":
		return 3389
	case "VNC":
		return 5900
	case "WEBCONTROL":
		return 7071
	case "ONEXPORTAL":
		return 9443
	case "WEBLM":
		return 52233
	}
	return 0
}

// NewAgent returns a ready copy of a: defaults applied, names normalised, secret_file read
// and every field validated. The error names the first bad field. a itself is left as it
// was.
func NewAgent(a Agent) (*Agent, error) {
	a.BrokerAddrs = slices.Clone(a.BrokerAddrs)
	a.Colocated.Tunnels = slices.Clone(a.Colocated.Tunnels)
	a.RemoteAccess.Services = maps.Clone(a.RemoteAccess.Services)
	a.Network.Systems = maps.Clone(a.Network.Systems)
	a.applyDefaults()
	if err := a.validate(); err != nil {
		return nil, err
	}
	return &a, nil
}

// MaxAgentConnections bounds connections: each is a session to a different broker.
const MaxAgentConnections = 8

// applyDefaults fills every empty field that has a default.
func (a *Agent) applyDefaults() {
	if len(a.RemoteAccess.Services) == 0 {
		ports := standardPorts()
		a.RemoteAccess.Services = make(map[string]string, len(ports))
		for _, p := range ports {
			a.RemoteAccess.Services[strconv.Itoa(p)] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		}
	}
	for i := range a.Colocated.Tunnels {
		t := &a.Colocated.Tunnels[i]
		t.Application = strings.ToUpper(strings.TrimSpace(t.Application))
		if t.Port == 0 {
			t.Port = applicationPort(t.Application)
		}
	}
	if a.Connections == 0 {
		a.Connections = 1
	}
	a.DialTimeout = durationOr(a.DialTimeout, 10*time.Second)
	a.MaxBackoff = durationOr(a.MaxBackoff, 30*time.Second)
	if a.Log.Level == "" {
		a.Log.Level = "info"
	}
}

// validate checks the agent configuration and loads secret_file. The error names the field.
func (a *Agent) validate() error {
	u, err := url.Parse(a.Broker)
	if a.Broker == "" {
		return errors.New("broker: required (the broker's web address, e.g. https://admin.example.com)")
	}
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("broker: %q must be an https:// URL", a.Broker)
	}
	for i, addr := range a.BrokerAddrs {
		host, port, err := net.SplitHostPort(strings.TrimSpace(addr))
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("broker_addrs[%d]: %q must be HOST:PORT", i, addr)
		}
		a.BrokerAddrs[i] = strings.TrimSpace(addr)
	}
	if a.Connections < 1 || a.Connections > MaxAgentConnections {
		return fmt.Errorf("connections: %d is outside 1-%d", a.Connections, MaxAgentConnections)
	}
	if a.CAFile != "" {
		if _, err := os.Stat(a.CAFile); err != nil {
			return fmt.Errorf("ca_file: %v", err)
		}
	}
	a.Customer = strings.ToLower(strings.TrimSpace(a.Customer))
	if !maintname.ValidCustomerID(a.Customer) {
		return fmt.Errorf("customer: %q must be letters and digits only", a.Customer)
	}
	a.System = strings.ToLower(strings.TrimSpace(a.System))
	if !maintname.ValidSystemName(a.System) {
		return fmt.Errorf("system: %q must be letters, digits and inner hyphens", a.System)
	}
	if a.Secret != "" && a.SecretFile != "" {
		return errors.New("secret_file: give either secret or secret_file, not both")
	}
	if a.SecretFile != "" {
		b, err := os.ReadFile(a.SecretFile)
		if err != nil {
			return fmt.Errorf("secret_file: %v", err)
		}
		a.Secret = strings.TrimSpace(string(b))
	}
	if a.Secret == "" {
		return errors.New("secret: required (or secret_file)")
	}
	for port, addr := range a.RemoteAccess.Services {
		if _, err := maintname.ParsePort(port); err != nil {
			return fmt.Errorf("remote_access.services[%s]: %v", port, err)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("remote_access.services[%s]: %q is not HOST:PORT", port, addr)
		}
	}
	for i, t := range a.Colocated.Tunnels {
		field := fmt.Sprintf("colocated.tunnels[%d]", i)
		ip, err := netip.ParseAddr(t.IP)
		if err != nil || !ip.Is4() {
			return fmt.Errorf("%s.ip: %q is not an IPv4 address", field, t.IP)
		}
		if t.Port < 1 || t.Port > 65535 {
			if t.Port == 0 && t.Application != "" {
				return fmt.Errorf("%s.port: required; application %q has no default port", field, t.Application)
			}
			return fmt.Errorf("%s.port: %d is outside 1-65535", field, t.Port)
		}
	}
	if err := a.validateNetwork(); err != nil {
		return err
	}
	if a.DialTimeout < 0 {
		return errors.New("dial_timeout: must be positive")
	}
	if a.MaxBackoff < time.Second {
		return errors.New("max_backoff: must be at least 1s")
	}
	return nil
}

// ServicePorts returns the offered remote-access ports in ascending order.
func (r RemoteAccess) ServicePorts() []int {
	ports := make([]int, 0, len(r.Services))
	for p := range r.Services {
		if n, err := maintname.ParsePort(p); err == nil {
			ports = append(ports, int(n))
		}
	}
	sort.Ints(ports)
	return ports
}

// validateNetwork checks network.systems and normalises its names to lower case.
func (a *Agent) validateNetwork() error {
	systems := make(map[string]string, len(a.Network.Systems))
	for _, name := range slices.Sorted(maps.Keys(a.Network.Systems)) { // the first bad entry, always the same
		addr := a.Network.Systems[name]
		field := fmt.Sprintf("network.systems[%s]", name)
		norm := strings.ToLower(strings.TrimSpace(name))
		if !maintname.ValidSystemName(norm) {
			return fmt.Errorf("%s: %q must be letters, digits and inner hyphens", field, name)
		}
		if norm == a.System {
			return fmt.Errorf("%s: that is this agent's own system", field)
		}
		if _, dup := systems[norm]; dup {
			return fmt.Errorf("%s: %q is listed twice (names are case-insensitive)", field, name)
		}
		ip, err := netip.ParseAddr(strings.TrimSpace(addr))
		if err != nil || !ip.Is4() {
			return fmt.Errorf("%s: %q is not an IPv4 address", field, addr)
		}
		systems[norm] = ip.String()
	}
	a.Network.Systems = systems
	return nil
}

// NetworkSystem returns the IPv4 address of a system listed in network.systems (any case).
func (a *Agent) NetworkSystem(name string) (netip.Addr, bool) {
	addr, ok := a.Network.Systems[strings.ToLower(name)]
	if !ok {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(addr)
	return ip, err == nil
}
