package pac

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"maintproxy/config"
)

// Traffic-light colours of the access page.
const (
	lightGreen  = "green"
	lightOrange = "orange"
	lightRed    = "red"
)

// accessView is everything the access page shows; it is also the JSON variant's shape.
type accessView struct {
	Account      string         `json:"account"`
	Domain       string         `json:"domain"`
	Proxy        string         `json:"proxy"`
	PACURL       string         `json:"pac_url"`
	ExtensionURL string         `json:"extension_url"`
	ToolsURL     string         `json:"tools_url"`
	RootFile     string         `json:"root_file,omitempty"`
	CertWarning  string         `json:"cert_warning,omitempty"`
	Customers    []customerView `json:"customers"`
}

type customerView struct {
	ID      string       `json:"id"`
	Name    string       `json:"name,omitempty"`
	Light   string       `json:"light"`
	Systems []systemView `json:"systems"`
}

type systemView struct {
	Name         string        `json:"name"`
	Primary      bool          `json:"primary"`
	Host         string        `json:"host"`
	Online       bool          `json:"online"`
	Light        string        `json:"light"`
	State        string        `json:"state"`
	Since        *time.Time    `json:"since,omitempty"`
	Reported     bool          `json:"policy_reported"`
	RemoteAccess bool          `json:"remote_access"`
	Colocated    bool          `json:"colocated"`
	Tunnels      []tunnelView  `json:"tunnels"`
	Services     []serviceView `json:"services"`
	Commands     commandSet    `json:"commands"`
	RDP          commandSet    `json:"rdp_commands"`
}

type tunnelView struct {
	Application string     `json:"application"`
	IP          string     `json:"ip"`
	Port        int        `json:"port"`
	Host        string     `json:"host"`
	URL         string     `json:"url,omitempty"`
	Commands    commandSet `json:"commands,omitempty"`
}

type serviceView struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// webService is a browser service on a customer server.
type webService struct {
	port int
	name string
	path string
}

// webServices are the browser services of the spec, in display order.
func webServices() []webService {
	return []webService{
		{7071, "Web control panel", "/login"},
		{9443, "one-X Portal", "/onexportal-admin.html"},
		{52233, "WebLM server", "/WebLM/index.jsp"},
		{8443, "Web manager", "/"},
		{443, "HTTPS", "/"},
	}
}

// defaultWebPorts are shown for a system whose agent never reported its services.
func defaultWebPorts() map[int]bool {
	return map[int]bool{22: true, 3389: true, 7071: true, 9443: true, 52233: true}
}

// viewInput is what buildView needs besides the configuration.
type viewInput struct {
	cfg      *config.Broker
	account  *config.Account
	secret   string // the real password (copy endpoint) or passwordMask (page, JSON)
	rootFile string
	status   func(customer, system string) SystemStatus
	warning  string
	now      time.Time
}

// buildView assembles the page for in.account: its customers only, in configured order.
func buildView(in viewInput) accessView {
	cfg := in.cfg
	v := accessView{
		Account:      in.account.Username,
		Domain:       cfg.Domain,
		Proxy:        proxyAddr(cfg),
		PACURL:       webURL(cfg, "/com/remoteproxy/proxy.pac"),
		ExtensionURL: webURL(cfg, "/com/remoteproxy/chrome-extension.zip"),
		ToolsURL:     webURL(cfg, "/com/remoteproxy/tools.zip"),
		RootFile:     in.rootFile,
		CertWarning:  in.warning,
		Customers:    []customerView{},
	}
	cc := cmdContext{proxy: v.Proxy, user: in.account.Username, secret: in.secret, rootFile: in.rootFile}
	for _, id := range in.account.Customers {
		c := cfg.Customer(id)
		if c == nil || !in.account.Manages(c.ID) {
			continue
		}
		cv := customerView{ID: c.ID, Name: c.Name, Systems: []systemView{}}
		online := 0
		for _, s := range c.Systems {
			sv := buildSystem(cfg, cc, c.ID, s, in.status(c.ID, s.Name), in.now)
			if sv.Online {
				online++
			}
			cv.Systems = append(cv.Systems, sv)
		}
		switch online {
		case len(cv.Systems):
			cv.Light = lightGreen
		case 0:
			cv.Light = lightRed
		default:
			cv.Light = lightOrange // one server of the network offline
		}
		v.Customers = append(v.Customers, cv)
	}
	return v
}

func buildSystem(cfg *config.Broker, cc cmdContext, customer string, s config.System, st SystemStatus, now time.Time) systemView {
	host := customer + "-" + s.Name + ".maint." + cfg.Domain
	id := customer + "/" + s.Name
	sv := systemView{
		Name: s.Name, Primary: s.Primary, Host: host, Online: st.Online, Light: lightRed,
		Reported:     st.Reported,
		RemoteAccess: st.RemoteAccess, Colocated: st.Colocated,
		Tunnels: []tunnelView{}, Services: []serviceView{},
		Commands: cc.sshCommands(id, host, 22),
		RDP:      cc.forwardCommands(id+"/rdp", host, 3389, true),
	}
	if !st.Since.IsZero() {
		since := st.Since.UTC().Truncate(time.Second)
		sv.Since = &since
	}
	switch {
	case st.Online:
		sv.Light = lightGreen
		sv.State = "Online since " + formatSince(st.Since, now)
	case st.Since.IsZero():
		sv.State = "Waiting for first connection"
	default:
		sv.State = "System not reachable or offline for the last " + humanDuration(now.Sub(st.Since)) +
			" (since " + st.Since.UTC().Format("2006-01-02 15:04 MST") + ")"
	}
	ports := defaultWebPorts()
	if sv.Reported {
		ports = map[int]bool{}
		for _, p := range st.Services {
			ports[p] = true
		}
	}
	if !ports[22] && sv.Reported {
		sv.Commands = nil // the customer does not offer SSH on this server
	}
	if !ports[3389] && sv.Reported {
		sv.RDP = nil
	}
	for _, ws := range webServices() {
		if ports[ws.port] {
			sv.Services = append(sv.Services, serviceView{Name: ws.name, URL: httpsURL(host, ws.port, ws.path)})
		}
	}
	for i, t := range st.Tunnels {
		sv.Tunnels = append(sv.Tunnels, buildTunnel(cc, fmt.Sprintf("%s/t%d", id, i), customer, s.Name, cfg.Domain, t))
	}
	return sv
}

func buildTunnel(cc cmdContext, id, customer, system, domain string, t TunnelEntry) tunnelView {
	ip, err := netip.ParseAddr(t.IP)
	if err != nil || !ip.Is4() {
		return tunnelView{Application: t.Application, IP: t.IP, Port: t.Port}
	}
	host := customer + "-" + system + "-" + ip.String() + ".maint." + domain
	tv := tunnelView{Application: t.Application, IP: t.IP, Port: t.Port, Host: host}
	switch strings.ToUpper(t.Application) {
	case "SSH", "SFTP":
		tv.Commands = cc.sshCommands(id, host, t.Port)
	case "RDP":
		tv.Commands = cc.forwardCommands(id, host, t.Port, true)
	case "HTTPS", "WEBCONTROL", "ONEXPORTAL", "WEBLM":
		tv.URL = httpsURL(host, t.Port, "/")
	default:
		tv.Commands = cc.forwardCommands(id, host, t.Port, false)
	}
	return tv
}

// find returns the command with the given copy ID.
func (v accessView) find(id string) (command, bool) {
	for _, c := range v.Customers {
		for _, s := range c.Systems {
			sets := []commandSet{s.Commands, s.RDP}
			for _, t := range s.Tunnels {
				sets = append(sets, t.Commands)
			}
			for _, set := range sets {
				for _, cmd := range set {
					if cmd.ID == id {
						return cmd, true
					}
				}
			}
		}
	}
	return command{}, false
}

func httpsURL(host string, port int, path string) string {
	if port == 443 {
		return "https://" + host + path
	}
	return fmt.Sprintf("https://%s:%d%s", host, port, path)
}

// proxyAddr is the proxy's public address, maint.<domain>:<port>.
func proxyAddr(cfg *config.Broker) string {
	port := cfg.ProxyPort()
	if port == "" {
		port = "6443"
	}
	return cfg.ProxyHost() + ":" + port
}

// webURL is an absolute URL on the broker's public web name.
func webURL(cfg *config.Broker, path string) string {
	if p := cfg.WebPort(); p != "" && p != "443" {
		return "https://" + cfg.WebHost() + ":" + p + path
	}
	return "https://" + cfg.WebHost() + path
}

func formatSince(t, now time.Time) string {
	return t.UTC().Format("2006-01-02 15:04 MST") + " (" + humanDuration(now.Sub(t)) + ")"
}

// humanDuration renders d coarsely: "3 d 4 h", "2 h 5 min", "7 min", "less than a minute".
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "less than a minute"
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%d d %d h", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}
