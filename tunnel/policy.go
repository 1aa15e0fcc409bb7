package tunnel

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"maintproxy/config"
)

// Policy is what an agent reports in its hello, and again whenever it changes (where the
// broker takes updates): the customer's switches on that server.
type Policy struct {
	Version      int           `json:"version"`
	AgentVersion string        `json:"agent_version,omitempty"`
	RemoteAccess bool          `json:"remote_access"`
	Services     []int         `json:"services"`
	Colocated    bool          `json:"colocated"`
	Tunnels      []TunnelEntry `json:"tunnels"`
	// Header is the highest stream header version the agent reads; 0 (an agent of an
	// earlier release) means HeaderV1.
	Header int `json:"header,omitempty"`
	// Network lists the systems of the customer's network this agent reaches for the
	// broker (network.systems), by name in lower case, sorted.
	Network []NetworkSystem `json:"network"`
}

// TunnelEntry is one co-located server/service the customer opened.
type TunnelEntry struct {
	Application string `json:"application"`
	IP          string `json:"ip"`
	Port        int    `json:"port"`
}

// NetworkSystem is one system reached through the reporting agent.
type NetworkSystem struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
}

// Reaches reports whether the agent with this policy reaches system (a name in any case)
// for the broker.
func (p Policy) Reaches(system string) bool {
	return slices.ContainsFunc(p.Network, func(n NetworkSystem) bool { return strings.EqualFold(n.Name, system) })
}

// headerVersion is the stream header version to write to the agent with this policy.
func (p Policy) headerVersion() int {
	return min(max(p.Header, HeaderV1), HeaderVersion)
}

// PolicyFromConfig is the policy an agent with cfg reports.
func PolicyFromConfig(cfg *config.Agent, agentVersion string) Policy {
	p := Policy{
		Version:      Version,
		AgentVersion: agentVersion,
		RemoteAccess: cfg.RemoteAccess.Enabled,
		Services:     cfg.RemoteAccess.ServicePorts(),
		Colocated:    cfg.Colocated.Enabled,
		Tunnels:      []TunnelEntry{},
		Header:       HeaderVersion,
	}
	for _, t := range cfg.Colocated.Tunnels {
		p.Tunnels = append(p.Tunnels, TunnelEntry{Application: t.Application, IP: t.IP, Port: t.Port})
	}
	for name, ip := range cfg.Network.Systems {
		p.Network = append(p.Network, NetworkSystem{Name: name, IP: ip})
	}
	slices.SortFunc(p.Network, func(a, b NetworkSystem) int { return strings.Compare(a.Name, b.Name) })
	return p
}

// resolve decides, on the agent, where a tunnel header may go: the address to dial, or
// the refusal code and a message for the technician. A header naming a network system
// (Header.System) is decided by this server's switches: remote access on, the port among
// its services (dialled on the system's address), and for a co-located server its own
// co-located switch and tunnel entries.
func resolve(cfg *config.Agent, h Header) (string, Code, string) {
	port := strconv.Itoa(int(h.Port))
	if !cfg.RemoteAccess.Enabled {
		return "", CodeRemoteAccessOff, ""
	}
	var sysIP netip.Addr
	if h.System != "" && !strings.EqualFold(h.System, cfg.System) {
		ip, ok := cfg.NetworkSystem(h.System)
		if !ok {
			return "", CodeNoSuchSystem, fmt.Sprintf("system %s is not in network.systems of this primary server", strings.ToLower(h.System))
		}
		sysIP = ip
	}
	if !h.IP.IsValid() {
		addr, ok := cfg.RemoteAccess.Services[port]
		if !ok {
			return "", CodeServiceNotOffered, fmt.Sprintf("port %s is not offered for remote access on this system", port)
		}
		if sysIP.IsValid() {
			return netip.AddrPortFrom(sysIP, h.Port).String(), CodeOK, ""
		}
		return addr, CodeOK, ""
	}
	if !cfg.Colocated.Enabled {
		return "", CodeColocatedOff, ""
	}
	for _, t := range cfg.Colocated.Tunnels {
		if ip, err := netip.ParseAddr(t.IP); err == nil && ip == h.IP && t.Port == int(h.Port) {
			return netip.AddrPortFrom(h.IP, h.Port).String(), CodeOK, ""
		}
	}
	return "", CodeNoTunnelEntry, fmt.Sprintf("no TCP tunnel entry for %s port %s on this system", h.IP, port)
}
