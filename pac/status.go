package pac

import "time"

// SystemStatus is what the access page shows of one customer system's agent. The broker
// fills it from its agent registry.
type SystemStatus struct {
	Online bool
	// Since is when the current session started (online) or the last one ended (offline);
	// zero when the system has not connected since the broker started.
	Since time.Time
	// Reported is true once the agent has told its customer's switches (the fields below);
	// until then the page offers the usual services.
	Reported     bool
	RemoteAccess bool          // the customer's remote-access switch on this system
	Colocated    bool          // the customer's switch for co-located servers
	Services     []int         // ports the customer offers on this system
	Tunnels      []TunnelEntry // co-located servers and services the customer opened
}

// TunnelEntry is one co-located server and service the customer opened for remote access.
type TunnelEntry struct {
	Application string // SSH, RDP, HTTPS, …
	IP          string
	Port        int
}
