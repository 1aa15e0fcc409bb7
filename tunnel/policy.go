package tunnel

import (
	"fmt"
	"net/netip"
	"strconv"

	"maintproxy/config"
)

// Policy is what an agent reports in its hello: the customer's switches on that server.
type Policy struct {
	Version      int           `json:"version"`
	AgentVersion string        `json:"agent_version,omitempty"`
	RemoteAccess bool          `json:"remote_access"`
	Services     []int         `json:"services"`
	Colocated    bool          `json:"colocated"`
	Tunnels      []TunnelEntry `json:"tunnels"`
}

// TunnelEntry is one co-located server/service the customer opened.
type TunnelEntry struct {
	Application string `json:"application"`
	IP          string `json:"ip"`
	Port        int    `json:"port"`
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
	}
	for _, t := range cfg.Colocated.Tunnels {
		p.Tunnels = append(p.Tunnels, TunnelEntry{Application: t.Application, IP: t.IP, Port: t.Port})
	}
	return p
}

// resolve decides, on the agent, where a tunnel header may go: the address to dial, or
// the refusal code and a message for the technician.
func resolve(cfg *config.Agent, h Header) (string, Code, string) {
	port := strconv.Itoa(int(h.Port))
	if !cfg.RemoteAccess.Enabled {
		return "", CodeRemoteAccessOff, ""
	}
	if !h.IP.IsValid() {
		addr, ok := cfg.RemoteAccess.Services[port]
		if !ok {
			return "", CodeServiceNotOffered, fmt.Sprintf("port %s is not offered for remote access on this system", port)
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
