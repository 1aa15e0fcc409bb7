package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"maintproxy/config"
)

// FromConfig turns the broker's `cluster:` section (already checked) into Options: it reads
// the etcd client TLS files and the cluster secret. The caller adds Self, Logger and OnReady.
func FromConfig(c *config.Cluster) (Options, error) {
	if !c.Enabled() {
		return Options{}, errors.New("cluster: no cluster section")
	}
	o := Options{
		Node:      c.Node,
		Endpoints: c.Etcd.Endpoints,
		Prefix:    c.Etcd.Prefix,
		LeaseTTL:  c.LeaseTTL,
	}
	t := c.Etcd.TLS
	if t != (config.ClusterTLS{}) {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return Options{}, fmt.Errorf("cluster.etcd.tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return Options{}, fmt.Errorf("cluster.etcd.tls.ca_file: %s holds no PEM certificate", t.CAFile)
			}
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return Options{}, fmt.Errorf("cluster.etcd.tls.cert_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		o.TLS = tc
	}
	secret, err := LoadSecret(c.SecretFile)
	if err != nil {
		return Options{}, err
	}
	o.Secret = secret
	return o, nil
}

// AdvertiseAddr is the peer address other brokers dial: advertise if set, else listen with
// its host, or, when listen has no host or a wildcard one, this host's first global unicast
// address (IPv4 preferred).
func AdvertiseAddr(listen, advertise string) (string, error) {
	if advertise != "" {
		return advertise, nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("cluster.peer.listen: %w", err)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("cluster.peer.advertise: cannot list this host's addresses (%v); set it", err)
	}
	var v6 net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return net.JoinHostPort(n.IP.String(), port), nil
		}
		if v6 == nil {
			v6 = n.IP
		}
	}
	if v6 != nil {
		return net.JoinHostPort(v6.String(), port), nil
	}
	return "", errors.New("cluster.peer.advertise: this host has no routable address; set it")
}
