package config

import (
	"strings"
	"testing"
	"time"
)

// parseCluster decodes a `cluster:` section through the same viper path as the broker file.
func parseCluster(t *testing.T, yaml string) (Cluster, error) {
	t.Helper()
	var w struct {
		Cluster Cluster `mapstructure:"cluster"`
	}
	if err := unmarshal([]byte(yaml), BrokerEnvPrefix, &w); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	err := w.Cluster.Check()
	return w.Cluster, err
}

func TestClusterAbsentIsSingleBroker(t *testing.T) {
	c, err := parseCluster(t, "{}\n")
	if err != nil || c.Enabled() || c.Peer.Listen != "" {
		t.Fatalf("no section: enabled=%v err=%v %+v", c.Enabled(), err, c)
	}
}

func TestClusterDefaultsAndFields(t *testing.T) {
	c, err := parseCluster(t, `
cluster:
  node: b1
  etcd:
    endpoints: [http://127.0.0.1:2379, https://etcd2.example.com:2379]
    prefix: /mp
    tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem}
  peer: {listen: "127.0.0.1:7444", advertise: "b1.example.com:7444"}
  lease_ttl: 3s
  config: store
  secret_file: /etc/maintproxy/cluster.secret
`)
	if err != nil {
		t.Fatal(err)
	}
	want := Cluster{Node: "b1", Etcd: ClusterEtcd{
		Endpoints: []string{"http://127.0.0.1:2379", "https://etcd2.example.com:2379"}, Prefix: "/mp/",
		TLS: ClusterTLS{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem"}},
		Peer:     ClusterPeer{Listen: "127.0.0.1:7444", Advertise: "b1.example.com:7444"},
		LeaseTTL: 3 * time.Second, Config: "store", SecretFile: "/etc/maintproxy/cluster.secret"}
	if c.Node != want.Node || c.Etcd.Prefix != want.Etcd.Prefix || c.Etcd.TLS != want.Etcd.TLS ||
		c.Peer != want.Peer || c.LeaseTTL != want.LeaseTTL || c.Config != want.Config ||
		c.SecretFile != want.SecretFile || strings.Join(c.Etcd.Endpoints, ",") != strings.Join(want.Etcd.Endpoints, ",") {
		t.Errorf("got %+v\nwant %+v", c, want)
	}

	c, err = parseCluster(t, "cluster: {node: b2, etcd: {endpoints: [http://e:2379]}, secret_file: /s}\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Etcd.Prefix != DefaultClusterPrefix || c.Peer.Listen != DefaultPeerListen || c.LeaseTTL != DefaultLeaseTTL || c.Config != ClusterConfigFile {
		t.Errorf("defaults: %+v", c)
	}
}

func TestClusterEnvOverridesNode(t *testing.T) {
	t.Setenv("MAINTPROXY_CLUSTER_NODE", "b9")
	c, err := parseCluster(t, "cluster: {node: b1, etcd: {endpoints: [http://e:2379]}, secret_file: /s}\n")
	if err != nil || c.Node != "b9" {
		t.Fatalf("node %q err %v", c.Node, err)
	}
}

func TestClusterValidationNamesField(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"node missing", "cluster: {etcd: {endpoints: [http://e:2379]}, secret_file: /s}", "cluster.node: required in cluster mode"},
		{"node bad", "cluster: {node: 'a/b', etcd: {endpoints: [http://e:2379]}, secret_file: /s}", "cluster.node:"},
		{"only config set", "cluster: {config: store}", "cluster.node: required in cluster mode"},
		{"no endpoints", "cluster: {node: b1, secret_file: /s}", "cluster.etcd.endpoints:"},
		{"endpoint no scheme", "cluster: {node: b1, etcd: {endpoints: ['127.0.0.1:2379']}, secret_file: /s}", "cluster.etcd.endpoints[0]:"},
		{"endpoint no port", "cluster: {node: b1, etcd: {endpoints: [http://e:1, http://e]}, secret_file: /s}", "cluster.etcd.endpoints[1]:"},
		{"prefix relative", "cluster: {node: b1, etcd: {endpoints: [http://e:1], prefix: mp/}, secret_file: /s}", "cluster.etcd.prefix:"},
		{"key without cert", "cluster: {node: b1, etcd: {endpoints: [http://e:1], tls: {key_file: /k}}, secret_file: /s}", "cluster.etcd.tls.cert_file:"},
		{"cert without key", "cluster: {node: b1, etcd: {endpoints: [http://e:1], tls: {cert_file: /c}}, secret_file: /s}", "cluster.etcd.tls.key_file:"},
		{"peer listen", "cluster: {node: b1, etcd: {endpoints: [http://e:1]}, peer: {listen: 'nope'}, secret_file: /s}", "cluster.peer.listen:"},
		{"peer advertise", "cluster: {node: b1, etcd: {endpoints: [http://e:1]}, peer: {advertise: ':6444'}, secret_file: /s}", "cluster.peer.advertise:"},
		{"ttl short", "cluster: {node: b1, etcd: {endpoints: [http://e:1]}, lease_ttl: 1s, secret_file: /s}", "cluster.lease_ttl:"},
		{"ttl long", "cluster: {node: b1, etcd: {endpoints: [http://e:1]}, lease_ttl: 1h, secret_file: /s}", "cluster.lease_ttl:"},
		{"config mode", "cluster: {node: b1, etcd: {endpoints: [http://e:1]}, config: db, secret_file: /s}", "cluster.config:"},
		{"secret missing", "cluster: {node: b1, etcd: {endpoints: [http://e:1]}}", "cluster.secret_file: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCluster(t, tc.yaml+"\n")
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %v, want prefix %q", err, tc.want)
			}
		})
	}
}
