package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodHash = "$2a$04$U82Zsd4d8MzHkwG6Zb.KV.RaZt4qIYTAIKVEG.OEKyqdkHzr/Ow.W"

func validYAML() string {
	return `domain: Example.com
data_dir: /tmp/maintproxy-test
accounts:
  - {username: resa, password_hash: "` + goodHash + `", customers: ["12345"]}
customers:
  - id: "12345"
    systems:
      - {name: SE1, primary: true, agent_secret_hash: "` + goodHash + `"}
      - {name: SE2, agent_secret_hash: "` + goodHash + `"}
`
}

func TestBrokerDefaultsAndNormalisation(t *testing.T) {
	b, err := ParseBroker([]byte(validYAML()))
	if err != nil {
		t.Fatal(err)
	}
	if b.Domain != "example.com" || b.Listen.Proxy != ":6443" || b.Listen.Web != ":443" || b.TLS.Mode != ModeSelfSigned {
		t.Errorf("defaults: %+v", b)
	}
	c := b.Customer("12345")
	if c == nil || c.System("") == nil || c.System("").Name != "se1" || c.System("Se2") == nil {
		t.Fatalf("customer index: %+v", c)
	}
	if a := b.Account("resa"); a == nil || !a.Manages("12345") || a.Manages("99999") {
		t.Errorf("account index: %+v", a)
	}
}

func TestBrokerEnvOverride(t *testing.T) {
	t.Setenv("MAINTPROXY_LISTEN_PROXY", "127.0.0.1:7443")
	t.Setenv("MAINTPROXY_TLS_MODE", "files")
	t.Setenv("MAINTPROXY_TLS_FILES_CERT", "/c.pem")
	t.Setenv("MAINTPROXY_TLS_FILES_KEY", "/k.pem")
	b, err := ParseBroker([]byte(validYAML()))
	if err != nil {
		t.Fatal(err)
	}
	if b.Listen.Proxy != "127.0.0.1:7443" || b.TLS.Mode != "files" || b.TLS.Files.Cert != "/c.pem" {
		t.Errorf("env not applied: %+v", b)
	}
}

// TestBrokerErrorsNameTheField: each broken config names the field at fault.
func TestBrokerErrorsNameTheField(t *testing.T) {
	for _, c := range []struct{ from, to, field string }{
		{"domain: Example.com", "domain: ''", "domain:"},
		{"domain: Example.com", "domain: 'bad domain'", "domain:"},
		{"data_dir: /tmp/maintproxy-test", "data_dir: /tmp/x\nlisten: {proxy: 'nope'}", "listen.proxy:"},
		{"data_dir: /tmp/maintproxy-test", "data_dir: /tmp/x\ntls: {mode: letsencrypt}", "tls.mode:"},
		{"data_dir: /tmp/maintproxy-test", "data_dir: /tmp/x\ntls: {mode: acme}", "tls.acme.email:"},
		{"data_dir: /tmp/maintproxy-test", "data_dir: /tmp/x\ntls: {mode: files}", "tls.files.cert:"},
		{"data_dir: /tmp/maintproxy-test", "data_dir: /tmp/x\ndns: {enabled: true}", "listen.dns:"},
		{`password_hash: "` + goodHash + `", customers: ["12345"]`, `password_hash: "plain", customers: ["12345"]`, "accounts[0].password_hash:"},
		{`customers: ["12345"]`, `customers: ["99999"]`, "accounts[0].customers[0]:"},
		{"{username: resa,", "{username: 'res a',", "accounts[0].username:"},
		{`- id: "12345"`, `- id: "12-345"`, "customers[0].id:"},
		{"{name: SE2, agent_secret_hash", "{name: SE2, primary: true, agent_secret_hash", "customers[0].systems:"},
		{"{name: SE2,", "{name: se1,", "customers[0].systems[1].name:"},
		{"{name: SE2,", "{name: -x,", "customers[0].systems[1].name:"},
		{"data_dir: /tmp/maintproxy-test", "data_dir: /tmp/x\nlimits: {per_sytem: 3}", "per_sytem"},
		{"data_dir: /tmp/maintproxy-test", "data_dir: /tmp/x\ncluster: {etcd: {endpoints: [http://127.0.0.1:2379]}}", "cluster.node:"},
	} {
		in := strings.Replace(validYAML(), c.from, c.to, 1)
		if in == validYAML() {
			t.Fatalf("replacement %q not applied", c.from)
		}
		_, err := ParseBroker([]byte(in))
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v does not name %q", c.to, err, c.field)
		}
	}
}

func TestAgentConfig(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	path := filepath.Join(dir, "agent.yaml")
	os.WriteFile(path, []byte(`broker: https://admin.example.com
customer: "12345"
system: SE1
secret_file: `+secret+`
remote_access: {enabled: true}
colocated:
  enabled: true
  tunnels:
    - {application: rdp, ip: 192.168.1.20}
    - {application: HTTPS, ip: 192.168.1.21, port: 8443}
`), 0o600)
	a, err := LoadAgent(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.Secret != "s3cret" || a.System != "se1" || a.Colocated.Tunnels[0].Port != 3389 || a.Colocated.Tunnels[1].Port != 8443 {
		t.Errorf("agent config: %+v", a)
	}
	if got := a.RemoteAccess.ServicePorts(); len(got) != len(standardPorts()) || a.RemoteAccess.Services["22"] != "127.0.0.1:22" {
		t.Errorf("default services: %v", a.RemoteAccess.Services)
	}
	for _, c := range []struct{ from, to, field string }{
		{"broker: https://admin.example.com", "broker: http://admin.example.com", "broker:"},
		{"system: SE1", "system: ''", "system:"},
		{"ip: 192.168.1.20}", "ip: 192.168.1.300}", "colocated.tunnels[0].ip:"},
		{"{application: rdp,", "{application: fax,", "colocated.tunnels[0].port:"},
		{"remote_access: {enabled: true}", "remote_access: {enabled: true, services: {'99999': 'x:1'}}", "remote_access.services[99999]:"},
	} {
		in, _ := os.ReadFile(path)
		p := filepath.Join(dir, "bad.yaml")
		os.WriteFile(p, []byte(strings.Replace(string(in), c.from, c.to, 1)), 0o600)
		if _, err := LoadAgent(p); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v does not name %q", c.to, err, c.field)
		}
	}
}

func TestVerifySecret(t *testing.T) {
	h, err := HashSecret("pw")
	if err != nil {
		t.Fatal(err)
	}
	if !VerifySecret(h, "pw") || VerifySecret(h, "pW") || VerifySecret("", "pw") {
		t.Error("VerifySecret")
	}
	if _, err := HashSecret(strings.Repeat("x", 73)); err == nil {
		t.Error("a 73-byte secret was hashed (bcrypt would truncate it)")
	}
}

// TestExamplesAreValid keeps examples/ loadable.
func TestExamplesAreValid(t *testing.T) {
	if _, err := LoadBroker("../examples/maintproxy.yaml"); err != nil {
		t.Errorf("examples/maintproxy.yaml: %v", err)
	}
	if c, err := LoadBroker("../examples/maintproxy-cluster.yaml"); err != nil || !c.SharedOnly() {
		t.Errorf("examples/maintproxy-cluster.yaml: %v", err)
	}
	t.Setenv("MAINTAGENT_SECRET_FILE", "")
	t.Setenv("MAINTAGENT_SECRET", "from-env")
	data, _ := os.ReadFile("../examples/maintagent.yaml")
	p := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(p, []byte(strings.Replace(string(data), "secret_file: /etc/maintproxy/agent.secret\n", "", 1)), 0o600)
	a, err := LoadAgent(p)
	if err != nil || a.Secret != "from-env" {
		t.Errorf("examples/maintagent.yaml: %v", err)
	}
}

// TestNewBroker: a value built in code becomes ready in one call, without touching the
// caller's value; a bad field is named.
func TestNewBroker(t *testing.T) {
	in := Broker{
		Domain:    "Example.COM",
		DataDir:   "/tmp/x",
		Accounts:  []Account{{Username: "resa", PasswordHash: goodHash, Customers: []string{"AB12"}}},
		Customers: []Customer{{ID: "AB12", Systems: []System{{Name: "SE1", Primary: true, AgentSecretHash: goodHash}}}},
	}
	b, err := NewBroker(in)
	if err != nil {
		t.Fatal(err)
	}
	if b.Domain != "example.com" || b.Listen.Proxy != DefaultProxyListen || b.Limits.PerAccount != DefaultPerAccount {
		t.Errorf("defaults: %+v", b)
	}
	if a := b.Account("resa"); a == nil || !a.Manages("ab12") || b.Customer("ab12").System("").Name != "se1" {
		t.Errorf("indexes: %+v", a)
	}
	if in.Customers[0].ID != "AB12" || in.Customers[0].Systems[0].Name != "SE1" || in.Accounts[0].Customers[0] != "AB12" || in.Listen.Proxy != "" {
		t.Errorf("NewBroker wrote through to its argument: %+v", in)
	}
	in.Customers[0].Systems[0].AgentSecretHash = "plain"
	if _, err := NewBroker(in); err == nil || !strings.HasPrefix(err.Error(), "customers[0].systems[0].agent_secret_hash:") {
		t.Errorf("bad hash: %v", err)
	}
	// A secondary reached only through the primary's agent needs no hash; the primary does.
	in.Customers[0].Systems[0].AgentSecretHash = ""
	if _, err := NewBroker(in); err == nil || !strings.HasPrefix(err.Error(), "customers[0].systems[0].agent_secret_hash:") {
		t.Errorf("primary without a hash: %v", err)
	}
	in.Customers[0].Systems = append(in.Customers[0].Systems, System{Name: "SE2"})
	in.Customers[0].Systems[0].AgentSecretHash = goodHash
	if _, err := NewBroker(in); err != nil {
		t.Errorf("secondary without a hash: %v", err)
	}
}

// TestLookupsWithoutIndex: a value not made by a constructor still finds what it lists
// rather than refusing every login.
func TestLookupsWithoutIndex(t *testing.T) {
	b := &Broker{
		Accounts:  []Account{{Username: "resa", Customers: []string{"12345"}}},
		Customers: []Customer{{ID: "12345", Systems: []System{{Name: "se1", Primary: true}}}},
	}
	a := b.Account("resa")
	if a == nil || !a.Manages("12345") || a.Manages("99999") || b.Account("resb") != nil {
		t.Errorf("accounts: %+v", a)
	}
	if c := b.Customer("12345"); c == nil || c.System("SE1") == nil || b.Customer("99999") != nil {
		t.Errorf("customers: %+v", c)
	}
}

func TestNewAgent(t *testing.T) {
	in := Agent{
		Broker: "https://admin.example.com", Customer: "12345", System: "SE1", Secret: "s",
		Colocated: Colocated{Tunnels: []Tunnel{{Application: "rdp", IP: "192.168.1.20"}}},
	}
	a, err := NewAgent(in)
	if err != nil {
		t.Fatal(err)
	}
	if a.System != "se1" || a.Colocated.Tunnels[0].Port != 3389 || a.DialTimeout == 0 || len(a.RemoteAccess.ServicePorts()) != len(standardPorts()) {
		t.Errorf("agent: %+v", a)
	}
	if in.Colocated.Tunnels[0].Port != 0 || in.Colocated.Tunnels[0].Application != "rdp" || in.RemoteAccess.Services != nil {
		t.Errorf("NewAgent wrote through to its argument: %+v", in)
	}
	in.Colocated.Tunnels[0].Application = "fax"
	if _, err := NewAgent(in); err == nil || !strings.HasPrefix(err.Error(), "colocated.tunnels[0].port:") {
		t.Errorf("unknown application: %v", err)
	}
}
