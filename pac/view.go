package pac

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"maintproxy/certs"
	"maintproxy/config"
)

// pageCommon is what every access page shows in its header; its fields are also at the
// top of every JSON variant.
type pageCommon struct {
	Account      string `json:"account"`
	Domain       string `json:"domain"`
	Proxy        string `json:"proxy"`
	PACURL       string `json:"pac_url"`
	ExtensionURL string `json:"extension_url"`
	ToolsURL     string `json:"tools_url"`
	RootURL      string `json:"root_url,omitempty"`
	RootFile     string `json:"root_file,omitempty"`
	CertWarning  string `json:"cert_warning,omitempty"`
}

// overviewView is the overview of an account's customers and systems (the page at
// /com/remoteproxy/access and its JSON variant): lights and messages only, each system
// linking to its own page.
type overviewView struct {
	pageCommon
	SSHConfigURL string            `json:"ssh_config_url"`
	Tools        []string          `json:"tools"` // the files in tools.zip
	Customers    []customerSummary `json:"customers"`
	Systems      int               `json:"systems"`
	Setup        setupView         `json:"-"`
	// Certificates is what the broker's listeners serve (the operator's certificate
	// screen); nil when the broker gave no description.
	Certificates *certView `json:"certificates,omitempty"`
}

// certView is the certificate screen: what each listener serves and the roots clients
// trust, without local paths.
type certView struct {
	Mode    string         `json:"mode"`
	Served  []certs.Served `json:"served"`
	Roots   []certs.Cert   `json:"roots"`
	Warning string         `json:"warning,omitempty"`
	At      time.Time      `json:"at"`
}

func newCertView(d *certs.Description) *certView {
	if d == nil {
		return nil
	}
	return &certView{Mode: d.Mode, Served: d.Served, Roots: d.Roots, Warning: d.Warning, At: d.At}
}

type customerSummary struct {
	ID      string          `json:"id"`
	Name    string          `json:"name,omitempty"`
	Light   Light           `json:"light"`
	Message string          `json:"message"`
	Systems []systemSummary `json:"systems"`
}

// systemState is what the overview and a system's page both say of a system.
type systemState struct {
	Name    string     `json:"name"`
	Primary bool       `json:"primary"`
	Host    string     `json:"host"`
	Light   Light      `json:"light"`
	Message string     `json:"message"`
	Online  bool       `json:"online"`
	Since   *time.Time `json:"since,omitempty"`
	// LastSeen is when an offline system was last connected (Since, said plainly).
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// LoginFailed and LoginFailure are the last refused agent login and why (the manual's
	// words), until the next good one.
	LoginFailed  *time.Time `json:"login_failed,omitempty"`
	LoginFailure string     `json:"login_failure,omitempty"`
	Via          string     `json:"via,omitempty"`
	Reported     bool       `json:"policy_reported"`
	RemoteAccess bool       `json:"remote_access"`
	Colocated    bool       `json:"colocated"`
}

func stateOf(in viewInput, c *config.Customer, s config.System, st SystemStatus) systemState {
	ind := Indicate(st, in.now)
	state := systemState{Name: s.Name, Primary: s.Primary, Host: systemHost(in.cfg, c.ID, s.Name),
		Light: ind.Light, Message: ind.Message, Online: st.Online, Since: sinceOf(st.Since), Via: st.Via,
		Reported: st.Reported, RemoteAccess: st.RemoteAccess, Colocated: st.Colocated,
		LoginFailed: sinceOf(st.LoginFailed)}
	if !st.Online {
		state.LastSeen = state.Since
	}
	if state.LoginFailed != nil {
		state.LoginFailure = st.LoginFailure
		if state.LoginFailure == "" {
			state.LoginFailure = MsgAuthFailed
		}
	}
	return state
}

type systemSummary struct {
	systemState
	URL    string `json:"url"` // the system's page
	Path   string `json:"-"`   // the same, as a path (HTML links)
	Search string `json:"-"`   // what the filter box matches (lower case)
}

// setupView is the browser and tools section of the overview.
type setupView struct {
	EdgeLine    string
	PrivateRoot bool // the root is the broker's own (or a private one): browsers must trust it
	RootFile    string
	RootURL     string
}

// systemPage is one system's page (/com/remoteproxy/access/<customer>/<system>) and its
// JSON variant: only what works today, with the technician's choices filled in.
type systemPage struct {
	pageCommon
	CustomerID   string     `json:"customer"`
	CustomerName string     `json:"customer_name,omitempty"`
	Params       cmdParams  `json:"params"`
	System       systemView `json:"system"`
	OverviewPath string     `json:"-"`
	Query        string     `json:"-"` // the non-default choices, for links
}

type systemView struct {
	ID string `json:"id"` // customer/system: the prefix of its copy IDs
	systemState
	Disabled bool          `json:"remote_access_disabled"` // the customer switched remote access off: nothing works
	Services []serviceView `json:"services"`
	Commands commandSet    `json:"commands,omitempty"`
	RDP      commandSet    `json:"rdp_commands,omitempty"`
	RDPFile  string        `json:"rdp_file,omitempty"` // URL of the .rdp file for the RDP forward
	Tunnels  []tunnelView  `json:"tunnels"`
	rdpName  string
	rdpLocal int
}

type tunnelView struct {
	ID          string     `json:"id"`
	Application string     `json:"application"`
	IP          string     `json:"ip"`
	Port        int        `json:"port"`
	Host        string     `json:"host,omitempty"`
	URL         string     `json:"url,omitempty"`
	Commands    commandSet `json:"commands,omitempty"`
	RDPFile     string     `json:"rdp_file,omitempty"`
	rdpName     string
	local       int // the local port of its forward; 0 if none
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

// defaultPorts are offered for a system whose agent never reported its services.
func defaultPorts() map[int]bool {
	return map[int]bool{22: true, 3389: true, 7071: true, 9443: true, 52233: true}
}

// viewInput is what the view builders need besides the configuration.
type viewInput struct {
	cfg      *config.Broker
	account  *config.Account
	secret   string // the real password (copy endpoint) or passwordMask (pages, JSON)
	rootFile string
	status   func(customer, system string) SystemStatus
	warning  string
	certs    func() *certs.Description
	tools    []string
	params   cmdParams
	now      time.Time
}

const accessPath = "/com/remoteproxy/access"

func (in viewInput) common() pageCommon {
	cfg := in.cfg
	c := pageCommon{
		Account:      in.account.Username,
		Domain:       cfg.Domain,
		Proxy:        proxyAddr(cfg),
		PACURL:       webURL(cfg, "/com/remoteproxy/proxy.pac"),
		ExtensionURL: webURL(cfg, "/com/remoteproxy/chrome-extension.zip"),
		ToolsURL:     webURL(cfg, "/com/remoteproxy/tools.zip"),
		RootFile:     in.rootFile,
		CertWarning:  in.warning,
	}
	if in.rootFile != "" {
		c.RootURL = webURL(cfg, "/com/remoteproxy/"+in.rootFile)
	}
	return c
}

func (in viewInput) cmdContext() cmdContext {
	return cmdContext{proxy: proxyAddr(in.cfg), user: in.account.Username, secret: in.secret, rootFile: in.rootFile, params: in.params}
}

// customers returns the account's customers in configured order.
func (in viewInput) customers() []*config.Customer {
	var out []*config.Customer
	for _, id := range in.account.Customers {
		if c := in.cfg.Customer(id); c != nil && in.account.Manages(c.ID) {
			out = append(out, c)
		}
	}
	return out
}

// customer returns the account's customer id, or nil (unknown and not managed alike).
func (in viewInput) customer(id string) *config.Customer {
	c := in.cfg.Customer(id)
	if c == nil || !in.account.Manages(c.ID) {
		return nil
	}
	return c
}

// buildOverview assembles the overview for in.account: its customers only.
func buildOverview(in viewInput) overviewView {
	v := overviewView{pageCommon: in.common(), Customers: []customerSummary{}, Tools: in.tools,
		SSHConfigURL: webURL(in.cfg, accessPath+"/ssh_config")}
	if in.certs != nil {
		v.Certificates = newCertView(in.certs())
	}
	v.Setup = setupView{EdgeLine: `msedge.exe --proxy-pac-url=` + v.PACURL, RootFile: in.rootFile, RootURL: v.RootURL,
		PrivateRoot: in.rootFile != "" && in.cfg.TLS.Mode != config.ModeACME}
	for _, c := range in.customers() {
		cs := customerSummary{ID: c.ID, Name: c.Name, Systems: make([]systemSummary, 0, len(c.Systems))}
		named := make([]namedIndication, 0, len(c.Systems))
		for _, s := range c.Systems {
			state := stateOf(in, c, s, in.status(c.ID, s.Name))
			named = append(named, namedIndication{s.Name, Indication{Light: state.Light, Message: state.Message}})
			path := c.ID + "/" + s.Name
			cs.Systems = append(cs.Systems, systemSummary{systemState: state,
				URL: webURL(in.cfg, accessPath+"/"+path), Path: "access/" + path,
				Search: strings.ToLower(c.ID + " " + c.Name + " " + s.Name + " " + state.Message),
			})
		}
		ni := networkIndication(named)
		cs.Light, cs.Message = ni.Light, ni.Message
		v.Systems += len(cs.Systems)
		v.Customers = append(v.Customers, cs)
	}
	return v
}

// buildSystemPage assembles one system's page; false if the account has no such system.
func buildSystemPage(in viewInput, customerID, system string) (systemPage, bool) {
	c := in.customer(customerID)
	if c == nil {
		return systemPage{}, false
	}
	s := c.System(system)
	if s == nil || system == "" {
		return systemPage{}, false
	}
	p := systemPage{pageCommon: in.common(), CustomerID: c.ID, CustomerName: c.Name, Params: in.params,
		OverviewPath: accessPath, Query: in.params.query()}
	p.System = buildSystem(in, c, *s, in.status(c.ID, s.Name))
	return p, true
}

func systemHost(cfg *config.Broker, customer, system string) string {
	return customer + "-" + system + ".maint." + cfg.Domain
}

func sinceOf(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	since := t.UTC().Truncate(time.Second)
	return &since
}

// buildSystem lists what works on one system: nothing when the customer switched remote
// access off; the services offered; tunnel entries only with co-located access on. Each
// forward gets its own local port, counting up from the technician's first port.
func buildSystem(in viewInput, c *config.Customer, s config.System, st SystemStatus) systemView {
	cc := in.cmdContext()
	host := systemHost(in.cfg, c.ID, s.Name)
	id := c.ID + "/" + s.Name
	sv := systemView{ID: id, systemState: stateOf(in, c, s, st), Services: []serviceView{}, Tunnels: []tunnelView{}}
	if st.Reported && !st.RemoteAccess {
		sv.Disabled = true // remote access governs co-located servers too
		return sv
	}
	ports := defaultPorts()
	if st.Reported {
		ports = map[int]bool{}
		for _, p := range st.Services {
			ports[p] = true
		}
	}
	local := in.params.Port
	if ports[22] {
		sv.Commands = cc.sshCommands(id, host, 22)
	}
	if ports[3389] {
		sv.RDP = cc.forwardCommands(id+"/rdp", host, 3389, local, true)
		sv.rdpLocal, sv.rdpName = local, rdpFileName(in.cfg, host, 3389)
		sv.RDPFile = in.rdpURL(id, sv.rdpName)
		local++
	}
	for _, ws := range webServices() {
		if ports[ws.port] {
			sv.Services = append(sv.Services, serviceView{Name: ws.name, URL: httpsURL(host, ws.port, ws.path)})
		}
	}
	if !st.Reported || !st.Colocated {
		return sv
	}
	for i, t := range st.Tunnels {
		tv := buildTunnel(in, cc, id, i, t, local)
		if tv.local != 0 {
			local++
		}
		sv.Tunnels = append(sv.Tunnels, tv)
	}
	return sv
}

// buildTunnel renders tunnel entry i of system sysID (customer/system); a forward uses
// local port local.
func buildTunnel(in viewInput, cc cmdContext, sysID string, i int, t TunnelEntry, local int) tunnelView {
	id := fmt.Sprintf("%s/t%d", sysID, i)
	tv := tunnelView{ID: id, Application: t.Application, IP: t.IP, Port: t.Port}
	ip, err := netip.ParseAddr(t.IP)
	if err != nil || !ip.Is4() || t.Port < 1 || t.Port > 65535 {
		return tv // shown, but nothing can reach it
	}
	customer, system, _ := strings.Cut(sysID, "/")
	tv.Host = customer + "-" + system + "-" + ip.String() + ".maint." + in.cfg.Domain
	switch app := strings.ToUpper(t.Application); {
	case app == "SSH" || app == "SFTP":
		tv.Commands = cc.sshCommands(id, tv.Host, t.Port)
	case app == "HTTPS" || app == "WEBCONTROL" || app == "ONEXPORTAL" || app == "WEBLM":
		tv.URL = httpsURL(tv.Host, t.Port, "/")
	case app == "RDP" || t.Port == 3389:
		tv.Commands = cc.forwardCommands(id, tv.Host, t.Port, local, true)
		tv.local, tv.rdpName = local, rdpFileName(in.cfg, tv.Host, t.Port)
		tv.RDPFile = in.rdpURL(sysID, tv.rdpName)
	default:
		tv.Commands = cc.forwardCommands(id, tv.Host, t.Port, local, false)
		tv.local = local
	}
	return tv
}

// rdpFileName names the .rdp file of the RDP target host:port: 12345-se1-192.168.1.20-3389.rdp.
func rdpFileName(cfg *config.Broker, host string, port int) string {
	return fmt.Sprintf("%s-%d.rdp", strings.TrimSuffix(host, ".maint."+cfg.Domain), port)
}

// rdpURL is the download address of an .rdp file of system sysID (customer/system); it
// carries the technician's first local port, from which the file's port is counted.
func (in viewInput) rdpURL(sysID, name string) string {
	return webURL(in.cfg, accessPath+"/"+sysID+"/"+name) + in.params.query()
}

// findRDP returns the local port of the page's RDP forward whose .rdp file is name.
func (v systemView) findRDP(name string) (local int, ok bool) {
	if v.rdpName != "" && name == v.rdpName {
		return v.rdpLocal, true
	}
	for _, t := range v.Tunnels {
		if t.rdpName != "" && t.rdpName == name {
			return t.local, true
		}
	}
	return 0, false
}

// find returns the command with the given copy ID.
func (v systemView) find(id string) (command, bool) {
	sets := []commandSet{v.Commands, v.RDP}
	for _, t := range v.Tunnels {
		sets = append(sets, t.Commands)
	}
	for _, set := range sets {
		for _, cmd := range set {
			if cmd.ID == id {
				return cmd, true
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
