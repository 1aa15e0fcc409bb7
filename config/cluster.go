package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Cluster is the broker's optional `cluster:` section. Its zero value (no section) means a
// single broker: no store, no peer port. See Enabled.
type Cluster struct {
	// Node names this broker in the cluster; unique per broker.
	Node string      `mapstructure:"node"`
	Etcd ClusterEtcd `mapstructure:"etcd"`
	Peer ClusterPeer `mapstructure:"peer"`
	// LeaseTTL is how long this broker's presence (and its agents') outlives its death.
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
	// Config is where accounts, customers and limits come from: "file" (this broker's own
	// file, as for a single broker) or "store" (etcd, written by `maintproxy config push`).
	Config string `mapstructure:"config"`
	// SecretFile holds the cluster secret (at least 32 random bytes, the same file on every
	// broker). It encrypts what the cluster keeps in etcd that must not be readable by
	// whoever can read etcd or its backups: the identity CA key and the ACME cache.
	SecretFile string `mapstructure:"secret_file"`
	// DrainTimeout bounds a shutdown (SIGTERM): the broker hands its agents to the others
	// and waits this long at most for its open tunnels to end.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
}

// ClusterEtcd locates the etcd cluster.
type ClusterEtcd struct {
	Endpoints []string `mapstructure:"endpoints"`
	// Prefix is the key prefix everything the cluster writes lives under (default /maintproxy/).
	Prefix string     `mapstructure:"prefix"`
	TLS    ClusterTLS `mapstructure:"tls"`
}

// ClusterTLS is the optional client TLS towards etcd: a CA to verify the members and a
// client certificate to present. All empty: plain TCP (or system roots for https endpoints).
type ClusterTLS struct {
	CAFile   string `mapstructure:"ca_file"`
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// ClusterPeer configures the mutual-TLS link between brokers.
type ClusterPeer struct {
	Listen string `mapstructure:"listen"`
	// Advertise is the HOST:PORT other brokers dial; empty: Listen's port on this host's address.
	Advertise string `mapstructure:"advertise"`
}

// Cluster defaults and bounds.
const (
	DefaultClusterPrefix   = "/maintproxy/"
	DefaultPeerListen      = ":6444"
	DefaultLeaseTTL        = 10 * time.Second
	DefaultDrainTimeout    = 30 * time.Second
	ClusterConfigFile      = "file"
	ClusterConfigStore     = "store"
	MinClusterSecretLength = 32

	// etcd silently raises a lease TTL below 1.5 election timeouts (about 2 s with its
	// defaults), so a shorter value would not mean what it says.
	minLeaseTTL = 2 * time.Second
	// A dead broker's agents stay "online" this long at most; longer is a configuration slip.
	maxLeaseTTL = 10 * time.Minute
)

// Enabled reports whether the section asks for cluster mode: any of its fields is set (so a
// section with a forgotten node is an error, not silently a single broker).
func (c *Cluster) Enabled() bool {
	e := c.Etcd
	return c.Node != "" || len(e.Endpoints) > 0 || e.Prefix != "" || e.TLS != (ClusterTLS{}) ||
		c.Peer != (ClusterPeer{}) || c.LeaseTTL != 0 || c.Config != "" || c.SecretFile != "" || c.DrainTimeout != 0
}

// Check fills the defaults and validates the section when cluster mode is enabled; without
// it, it does nothing. The error names the first bad field (`cluster.node: …`).
func (c *Cluster) Check() error {
	if !c.Enabled() {
		return nil
	}
	c.applyDefaults()
	return c.validate()
}

func (c *Cluster) applyDefaults() {
	if c.Etcd.Prefix == "" {
		c.Etcd.Prefix = DefaultClusterPrefix
	}
	if c.Peer.Listen == "" {
		c.Peer.Listen = DefaultPeerListen
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.Config == "" {
		c.Config = ClusterConfigFile
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
}

func (c *Cluster) validate() error {
	c.Node = strings.TrimSpace(c.Node)
	if c.Node == "" {
		return errors.New("cluster.node: required in cluster mode (a name unique per broker, e.g. b1)")
	}
	if !ValidNodeName(c.Node) {
		return fmt.Errorf("cluster.node: %q must be 1-63 letters, digits, '-', '_' or '.'", c.Node)
	}
	if len(c.Etcd.Endpoints) == 0 {
		return errors.New("cluster.etcd.endpoints: at least one etcd endpoint is required (e.g. http://127.0.0.1:2379)")
	}
	for i, e := range c.Etcd.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Hostname() == "" {
			return fmt.Errorf("cluster.etcd.endpoints[%d]: %q must be http://HOST:PORT or https://HOST:PORT", i, e)
		}
	}
	if !strings.HasPrefix(c.Etcd.Prefix, "/") {
		return fmt.Errorf("cluster.etcd.prefix: %q must start with /", c.Etcd.Prefix)
	}
	if !strings.HasSuffix(c.Etcd.Prefix, "/") {
		c.Etcd.Prefix += "/"
	}
	t := c.Etcd.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			return errors.New("cluster.etcd.tls.cert_file: required with key_file")
		}
		return errors.New("cluster.etcd.tls.key_file: required with cert_file")
	}
	if err := validListen(c.Peer.Listen); err != nil {
		return fmt.Errorf("cluster.peer.listen: %w", err)
	}
	if c.Peer.Advertise != "" {
		host, port, err := net.SplitHostPort(c.Peer.Advertise)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("cluster.peer.advertise: %q must be HOST:PORT that other brokers can dial", c.Peer.Advertise)
		}
	}
	if c.LeaseTTL < minLeaseTTL || c.LeaseTTL > maxLeaseTTL {
		return fmt.Errorf("cluster.lease_ttl: %s is outside %s..%s (etcd raises shorter leases; longer ones keep a dead broker's agents online)", c.LeaseTTL, minLeaseTTL, maxLeaseTTL)
	}
	switch c.Config {
	case ClusterConfigFile, ClusterConfigStore:
	default:
		return fmt.Errorf("cluster.config: %q is not one of file, store", c.Config)
	}
	if c.DrainTimeout < 0 || c.DrainTimeout > time.Hour {
		return fmt.Errorf("cluster.drain_timeout: %s is outside 0s..1h", c.DrainTimeout)
	}
	if c.SecretFile == "" {
		return fmt.Errorf("cluster.secret_file: required in cluster mode (a file of at least %d random bytes, the same on every broker; it encrypts the identity CA key and the ACME cache in etcd)", MinClusterSecretLength)
	}
	return nil
}

// ValidNodeName accepts broker node names (cluster.node): safe as one segment of an etcd
// key and in logs.
func ValidNodeName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return s != "." && s != ".."
}
