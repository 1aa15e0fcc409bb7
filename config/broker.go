// Package config loads, defaults and validates the broker's and the agent's configuration.
//
// Both are YAML files read through viper; every key can be overridden from the environment
// (MAINTPROXY_LISTEN_PROXY for listen.proxy, MAINTAGENT_SECRET for the agent's secret).
// Validation errors name the offending field, e.g. `accounts[2].password_hash: …`.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"maintproxy/maintname"
)

// TLS modes (tls.mode).
const (
	ModeSelfSigned = "selfsigned"
	ModeACME       = "acme"
	ModeFiles      = "files"
)

// LetsEncryptURL is the default ACME directory.
const LetsEncryptURL = "https://acme-v02.api.letsencrypt.org/directory"

// Broker is the broker's configuration. Get one from LoadBroker, ParseBroker or NewBroker:
// each applies the defaults, validates every field and builds the look-up indexes, so the
// value is ready to use and nothing needs a second call. Treat it as read-only afterwards;
// publish an edit as a new value from NewBroker. A value built any other way has no
// defaults and was never checked (a zero limit admits no tunnel); its look-ups still work,
// by scanning the lists.
type Broker struct {
	// Domain is the provider's domain: the proxy is maint.<domain>, the web site admin.<domain>.
	Domain    string     `mapstructure:"domain"`
	Listen    Listen     `mapstructure:"listen"`
	DataDir   string     `mapstructure:"data_dir"`
	TLS       TLS        `mapstructure:"tls"`
	DNS       DNS        `mapstructure:"dns"`
	Limits    Limits     `mapstructure:"limits"`
	Log       Log        `mapstructure:"log"`
	Accounts  []Account  `mapstructure:"accounts"`
	Customers []Customer `mapstructure:"customers"`
	// Cluster, when set, makes this broker one of several sharing an etcd store.
	Cluster Cluster `mapstructure:"cluster"`
	// Timeouts are the public listeners' per-phase deadlines.
	Timeouts Timeouts `mapstructure:"timeouts"`
	// ShutdownTimeout is how long a stopping broker lets open tunnels finish (default 30s).
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`

	accounts  map[string]*Account
	customers map[string]*Customer
}

// Listen holds the broker's listen addresses; an empty optional address disables that listener.
type Listen struct {
	Proxy string `mapstructure:"proxy"` // TLS CONNECT proxy (default :6443)
	Web   string `mapstructure:"web"`   // TLS web site and agent endpoint (default :443)
	HTTP  string `mapstructure:"http"`  // optional plain HTTP: ACME HTTP-01 and redirects to HTTPS
	DNS   string `mapstructure:"dns"`   // optional authoritative DNS for maint.<domain> (UDP and TCP)
	// Metrics serves Prometheus /metrics over plain HTTP, for the operator's monitoring
	// only: a file without the key gets DefaultMetricsListen (loopback); empty disables.
	Metrics string `mapstructure:"metrics"`
}

// TLS selects where the listeners' certificates come from.
type TLS struct {
	Mode       string     `mapstructure:"mode"`
	ACME       ACME       `mapstructure:"acme"`
	Files      Files      `mapstructure:"files"`
	SelfSigned SelfSigned `mapstructure:"selfsigned"`
}

// ACME configures certificates from an ACME CA (Let's Encrypt by default).
type ACME struct {
	Email        string   `mapstructure:"email"`
	DirectoryURL string   `mapstructure:"directory_url"`
	ExtraNames   []string `mapstructure:"extra_names"`
	// RootFile is the PEM root the issued chain ends in, shipped in the tool bundle
	// (default: ISRG Root X1, embedded).
	RootFile string `mapstructure:"root_file"`
	// CAFile is an extra PEM root to trust when talking to the ACME directory (test CAs).
	CAFile string `mapstructure:"ca_file"`
}

// Files names a certificate chain and key on disk, reloaded when they change: either PEM
// Cert and Key, or a PKCS#12 file.
type Files struct {
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
	// PKCS12 is a PKCS#12 (.p12/.pfx) file holding the key, the certificate and its chain,
	// instead of Cert and Key.
	PKCS12 string `mapstructure:"pkcs12"`
	// PKCS12PasswordFile holds PKCS12's password (its first line; none: no password).
	PKCS12PasswordFile string `mapstructure:"pkcs12_password_file"`
	// Root is the PEM root the chain ends in, shipped in the tool bundle (optional).
	Root string `mapstructure:"root"`
}

// DNS configures the optional authoritative server for the maint.<domain> zone.
type DNS struct {
	Enabled bool `mapstructure:"enabled"`
	// Addresses are the A/AAAA answers for maint.<domain> and every name below it.
	Addresses []string `mapstructure:"addresses"`
	// NS are the zone's name servers (default ns.maint.<domain>, answered with Addresses).
	NS []string `mapstructure:"ns"`
	// RateLimit is the number of responses per second per client address (0: 20).
	RateLimit int `mapstructure:"rate_limit"`
}

// Limits caps concurrent tunnels and guards credential checks; 0 means the default.
type Limits struct {
	PerAccount  int         `mapstructure:"per_account"`
	PerSystem   int         `mapstructure:"per_system"`
	Auth        AuthLimits  `mapstructure:"auth"`
	Lockout     Lockout     `mapstructure:"lockout"`
	Connections Connections `mapstructure:"connections"`
}

// AuthLimits is the admission control in front of every slow credential check: proxy and
// web passwords (bcrypt) share one, agent logins have their own. What exceeds it is refused
// at once (429, or 503 with Retry-After for agents), never queued without bound.
type AuthLimits struct {
	// PerMinute is how many slow checks one client address (IPv6: one /64) may cause per
	// minute; a wrong agent secret counts as one too (default 30).
	PerMinute int `mapstructure:"per_minute"`
	// Burst is how many it may cause at once after a quiet spell (default 10).
	Burst int `mapstructure:"burst"`
	// Concurrent bounds slow checks running at once (default half the CPUs, at least 1).
	Concurrent int `mapstructure:"concurrent"`
}

// Lockout stops password guessing. Failures from one client address lock that account for
// that address; failures from all addresses together lock the account everywhere, which
// only slows it: from an address without failures a correct password still gets in.
type Lockout struct {
	// Failures wrong passwords for one account from one address within Window lock that
	// account for that address for Duration (default 3 in 10m, locked for 10m).
	Failures int           `mapstructure:"failures"`
	Window   time.Duration `mapstructure:"window"`
	Duration time.Duration `mapstructure:"duration"`
	// AccountFailures wrong passwords for one account from all addresses within Window lock
	// the account for Duration (default 10): while locked it is checked at most once per
	// AccountInterval (default 10s), and only for addresses without failures on it.
	AccountFailures int           `mapstructure:"account_failures"`
	AccountInterval time.Duration `mapstructure:"account_interval"`
}

// Log configures logging.
type Log struct {
	Level string `mapstructure:"level"` // debug, info, warn, error
}

// Account is one reseller's or distributor's proxy account.
type Account struct {
	Username     string   `mapstructure:"username"`
	PasswordHash string   `mapstructure:"password_hash"`
	Customers    []string `mapstructure:"customers"`

	customers map[string]bool
}

// Customer is one customer network: a primary system and optional secondaries.
type Customer struct {
	ID      string   `mapstructure:"id"`
	Name    string   `mapstructure:"name"`
	Systems []System `mapstructure:"systems"`
}

// System is one customer server: one running an agent, or a secondary reached only through
// the primary's agent (network.systems), which has no agent_secret_hash.
type System struct {
	Name    string `mapstructure:"name"`
	Primary bool   `mapstructure:"primary"`
	// AgentSecretHash verifies the system's agent; empty (secondaries only): no agent may
	// log in as this system.
	AgentSecretHash string `mapstructure:"agent_secret_hash"`
}

// Defaults used when a field is empty.
const (
	DefaultProxyListen = ":6443"
	DefaultWebListen   = ":443"
	DefaultDataDir     = "/var/lib/maintproxy"
	DefaultPerAccount  = 512
	DefaultPerSystem   = 128
	DefaultDNSRate     = 20

	DefaultAuthPerMinute   = 30
	DefaultAuthBurst       = 10
	DefaultLockFailures    = 3
	DefaultLockWindow      = 10 * time.Minute
	DefaultLockDuration    = 10 * time.Minute
	DefaultAccountFailures = 10
	DefaultAccountInterval = 10 * time.Second
)

// NewBroker returns a ready copy of b: defaults applied, names normalised, every field
// validated and the look-up indexes built. The error names the first bad field. b itself,
// and the slices it shares with the copy, are left as they were.
func NewBroker(b Broker) (*Broker, error) {
	b.ownSlices()
	b.applyDefaults()
	if err := b.validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// ownSlices copies the slices that validation normalises in place, so that NewBroker does
// not write through to its caller's value.
func (b *Broker) ownSlices() {
	b.TLS.ACME.ExtraNames = slices.Clone(b.TLS.ACME.ExtraNames)
	b.Accounts = slices.Clone(b.Accounts)
	for i := range b.Accounts {
		b.Accounts[i].Customers = slices.Clone(b.Accounts[i].Customers)
	}
	b.Customers = slices.Clone(b.Customers)
	for i := range b.Customers {
		b.Customers[i].Systems = slices.Clone(b.Customers[i].Systems)
	}
}

// applyDefaults fills every empty field that has a default.
func (b *Broker) applyDefaults() {
	if b.Listen.Proxy == "" {
		b.Listen.Proxy = DefaultProxyListen
	}
	if b.Listen.Web == "" {
		b.Listen.Web = DefaultWebListen
	}
	if b.DataDir == "" {
		b.DataDir = DefaultDataDir
	}
	if b.TLS.Mode == "" {
		b.TLS.Mode = ModeSelfSigned
	}
	if b.TLS.ACME.DirectoryURL == "" {
		b.TLS.ACME.DirectoryURL = LetsEncryptURL
	}
	b.TLS.SelfSigned.RolloverBefore = durationOr(b.TLS.SelfSigned.RolloverBefore, DefaultRolloverBefore)
	if b.Limits.PerAccount == 0 {
		b.Limits.PerAccount = DefaultPerAccount
	}
	if b.Limits.PerSystem == 0 {
		b.Limits.PerSystem = DefaultPerSystem
	}
	if b.DNS.RateLimit == 0 {
		b.DNS.RateLimit = DefaultDNSRate
	}
	b.Limits.applyAuthDefaults()
	b.applyConnectionDefaults()
	if b.Log.Level == "" {
		b.Log.Level = "info"
	}
}

// validate checks the whole configuration, normalises names to lower case and builds the
// look-up indexes. The error names the first bad field.
func (b *Broker) validate() error {
	b.Domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(b.Domain), "."))
	if b.Domain == "" {
		return errors.New("domain: required (e.g. example.com; the proxy is then maint.example.com)")
	}
	if !validHostname(b.Domain) || !strings.Contains(b.Domain, ".") {
		return fmt.Errorf("domain: %q is not a valid DNS domain", b.Domain)
	}
	for _, l := range []struct {
		field, addr string
		optional    bool
	}{
		{"listen.proxy", b.Listen.Proxy, false},
		{"listen.web", b.Listen.Web, false},
		{"listen.http", b.Listen.HTTP, true},
		{"listen.dns", b.Listen.DNS, true},
		{"listen.metrics", b.Listen.Metrics, true},
	} {
		if l.addr == "" && l.optional {
			continue
		}
		if err := validListen(l.addr); err != nil {
			return fmt.Errorf("%s: %w", l.field, err)
		}
	}
	if b.DataDir == "" {
		return errors.New("data_dir: required")
	}
	if err := b.validateTLS(); err != nil {
		return err
	}
	if err := b.validateDNS(); err != nil {
		return err
	}
	if b.Limits.PerAccount < 0 {
		return errors.New("limits.per_account: must not be negative")
	}
	if b.Limits.PerSystem < 0 {
		return errors.New("limits.per_system: must not be negative")
	}
	if err := b.Limits.validateAuth(); err != nil {
		return err
	}
	if err := b.validateConnections(); err != nil {
		return err
	}
	switch b.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", b.Log.Level)
	}
	if err := b.Cluster.Check(); err != nil {
		return err
	}
	if err := b.indexCustomers(); err != nil {
		return err
	}
	return b.indexAccounts()
}

func (l *Limits) applyAuthDefaults() {
	a, k := &l.Auth, &l.Lockout
	a.PerMinute = cmp.Or(a.PerMinute, DefaultAuthPerMinute)
	a.Burst = cmp.Or(a.Burst, DefaultAuthBurst)
	a.Concurrent = cmp.Or(a.Concurrent, max(1, runtime.GOMAXPROCS(0)/2))
	k.Failures = cmp.Or(k.Failures, DefaultLockFailures)
	k.Window = cmp.Or(k.Window, DefaultLockWindow)
	k.Duration = cmp.Or(k.Duration, DefaultLockDuration)
	k.AccountFailures = cmp.Or(k.AccountFailures, DefaultAccountFailures)
	k.AccountInterval = cmp.Or(k.AccountInterval, DefaultAccountInterval)
}

func (l *Limits) validateAuth() error {
	for _, c := range []struct {
		field string
		v     int
	}{
		{"limits.auth.per_minute", l.Auth.PerMinute},
		{"limits.auth.burst", l.Auth.Burst},
		{"limits.auth.concurrent", l.Auth.Concurrent},
		{"limits.lockout.failures", l.Lockout.Failures},
		{"limits.lockout.account_failures", l.Lockout.AccountFailures},
	} {
		if c.v < 1 {
			return fmt.Errorf("%s: must be at least 1", c.field)
		}
	}
	for _, c := range []struct {
		field string
		v     time.Duration
	}{
		{"limits.lockout.window", l.Lockout.Window},
		{"limits.lockout.duration", l.Lockout.Duration},
		{"limits.lockout.account_interval", l.Lockout.AccountInterval},
	} {
		if c.v < time.Second || c.v > 24*time.Hour {
			return fmt.Errorf("%s: %v is outside 1s-24h", c.field, c.v)
		}
	}
	return nil
}

func (b *Broker) validateTLS() error {
	if err := b.TLS.SelfSigned.validate(); err != nil {
		return err
	}
	switch b.TLS.Mode {
	case ModeSelfSigned:
	case ModeACME:
		if b.TLS.ACME.Email == "" || !strings.Contains(b.TLS.ACME.Email, "@") {
			return errors.New("tls.acme.email: a contact email is required for ACME")
		}
		if !strings.HasPrefix(b.TLS.ACME.DirectoryURL, "https://") {
			return fmt.Errorf("tls.acme.directory_url: %q must be an https URL", b.TLS.ACME.DirectoryURL)
		}
		for i, n := range b.TLS.ACME.ExtraNames {
			n = strings.ToLower(n)
			if !validHostname(n) || !(n == b.Domain || strings.HasSuffix(n, "."+b.Domain)) {
				return fmt.Errorf("tls.acme.extra_names[%d]: %q is not a name inside %s", i, n, b.Domain)
			}
			b.TLS.ACME.ExtraNames[i] = n
		}
	case ModeFiles:
		if err := b.TLS.Files.validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("tls.mode: %q is not one of selfsigned, acme, files", b.TLS.Mode)
	}
	return nil
}

func (b *Broker) validateDNS() error {
	if !b.DNS.Enabled {
		return nil
	}
	if b.Listen.DNS == "" {
		return errors.New("listen.dns: required when dns.enabled is true (e.g. :53)")
	}
	if len(b.DNS.Addresses) == 0 {
		return errors.New("dns.addresses: at least one address of the broker is required when dns.enabled is true")
	}
	for i, a := range b.DNS.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("dns.addresses[%d]: %q is not an IP address", i, a)
		}
	}
	for i, n := range b.DNS.NS {
		if !validHostname(strings.TrimSuffix(strings.ToLower(n), ".")) {
			return fmt.Errorf("dns.ns[%d]: %q is not a host name", i, n)
		}
	}
	if b.DNS.RateLimit < 0 {
		return errors.New("dns.rate_limit: must not be negative")
	}
	return nil
}

func (b *Broker) indexCustomers() error {
	b.customers = make(map[string]*Customer, len(b.Customers))
	for i := range b.Customers {
		c := &b.Customers[i]
		field := fmt.Sprintf("customers[%d]", i)
		c.ID = strings.ToLower(strings.TrimSpace(c.ID))
		if !maintname.ValidCustomerID(c.ID) {
			return fmt.Errorf("%s.id: %q must be letters and digits only", field, c.ID)
		}
		if b.customers[c.ID] != nil {
			return fmt.Errorf("%s.id: %q is listed twice", field, c.ID)
		}
		if len(c.Systems) == 0 {
			return fmt.Errorf("%s.systems: customer %s needs at least one system", field, c.ID)
		}
		primaries := 0
		seen := map[string]bool{}
		for j := range c.Systems {
			s := &c.Systems[j]
			sf := fmt.Sprintf("%s.systems[%d]", field, j)
			s.Name = strings.ToLower(strings.TrimSpace(s.Name))
			if !maintname.ValidSystemName(s.Name) {
				return fmt.Errorf("%s.name: %q must be letters, digits and inner hyphens", sf, s.Name)
			}
			if seen[s.Name] {
				return fmt.Errorf("%s.name: %q is listed twice for customer %s", sf, s.Name, c.ID)
			}
			seen[s.Name] = true
			if s.Primary {
				primaries++
			}
			if s.AgentSecretHash == "" && !s.Primary {
				continue // reached only through the primary's agent (network.systems); no agent logs in as it
			}
			if !isBcrypt(s.AgentSecretHash) && !FastHash(s.AgentSecretHash) {
				return fmt.Errorf("%s.agent_secret_hash: must be an hmac-sha256 hash (make a secret and its hash with `maintproxy agent-secret`) or a bcrypt hash", sf)
			}
			if _, _, ok := parseHMAC(s.AgentSecretHash); FastHash(s.AgentSecretHash) && !ok {
				return fmt.Errorf("%s.agent_secret_hash: malformed hmac-sha256 hash; copy it whole from `maintproxy agent-secret`", sf)
			}
		}
		if primaries != 1 {
			return fmt.Errorf("%s.systems: customer %s needs exactly one primary system, has %d", field, c.ID, primaries)
		}
		b.customers[c.ID] = c
	}
	return nil
}

func (b *Broker) indexAccounts() error {
	b.accounts = make(map[string]*Account, len(b.Accounts))
	for i := range b.Accounts {
		a := &b.Accounts[i]
		field := fmt.Sprintf("accounts[%d]", i)
		a.Username = strings.TrimSpace(a.Username)
		if a.Username == "" || len(a.Username) > 64 || strings.ContainsAny(a.Username, ": \t") {
			return fmt.Errorf("%s.username: %q must be 1-64 characters without spaces or colons", field, a.Username)
		}
		if b.accounts[a.Username] != nil {
			return fmt.Errorf("%s.username: %q is listed twice", field, a.Username)
		}
		if !isBcrypt(a.PasswordHash) {
			return fmt.Errorf("%s.password_hash: must be a bcrypt hash (make one with `maintproxy passwd`)", field)
		}
		a.customers = make(map[string]bool, len(a.Customers))
		for j, id := range a.Customers {
			id = strings.ToLower(strings.TrimSpace(id))
			if b.customers[id] == nil {
				return fmt.Errorf("%s.customers[%d]: customer %q is not defined under customers", field, j, id)
			}
			a.Customers[j] = id
			a.customers[id] = true
		}
		b.accounts[a.Username] = a
	}
	return nil
}

// Account returns the named proxy account, or nil.
func (b *Broker) Account(username string) *Account {
	if b.accounts == nil { // not made by a constructor: no index
		for i := range b.Accounts {
			if b.Accounts[i].Username == username {
				return &b.Accounts[i]
			}
		}
		return nil
	}
	return b.accounts[username]
}

// Customer returns the customer with the given ID (any case), or nil.
func (b *Broker) Customer(id string) *Customer {
	if b.customers == nil { // not made by a constructor: no index
		for i := range b.Customers {
			if strings.EqualFold(b.Customers[i].ID, id) {
				return &b.Customers[i]
			}
		}
		return nil
	}
	return b.customers[strings.ToLower(id)]
}

// Manages reports whether the account may reach the customer (ID in lower case).
func (a *Account) Manages(customerID string) bool {
	if a.customers == nil { // not made by a constructor: no index
		return slices.ContainsFunc(a.Customers, func(id string) bool { return strings.EqualFold(id, customerID) })
	}
	return a.customers[customerID]
}

// System returns the named system (any case); the empty name means the primary. Nil if none.
func (c *Customer) System(name string) *System {
	for i := range c.Systems {
		s := &c.Systems[i]
		if (name == "" && s.Primary) || (name != "" && strings.EqualFold(s.Name, name)) {
			return s
		}
	}
	return nil
}

// ProxyHost is the proxy's public name, maint.<domain>.
func (b *Broker) ProxyHost() string { return "maint." + b.Domain }

// WebHost is the web site's public name, admin.<domain>.
func (b *Broker) WebHost() string { return "admin." + b.Domain }

// ProxyPort is the port technicians give for the proxy (from listen.proxy).
func (b *Broker) ProxyPort() string { return portOf(b.Listen.Proxy) }

// WebPort is the web listener's port (from listen.web).
func (b *Broker) WebPort() string { return portOf(b.Listen.Web) }

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func isBcrypt(h string) bool {
	return len(h) == 60 && (strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$"))
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if !maintname.ValidSystemName(label) { // a system name is exactly a DNS label
			return false
		}
	}
	return true
}

func validListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT or :PORT", addr)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("%q: listen on an IP address, not a name", addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return fmt.Errorf("%q has no valid port", addr)
	}
	return nil
}

// durationOr returns d, or def when d is zero.
func durationOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
