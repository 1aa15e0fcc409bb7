package config

import (
	"strings"
	"testing"
)

const sharedFile = `
domain: example.com
data_dir: /tmp/x
cluster: {node: b1, etcd: {endpoints: ["http://127.0.0.1:2379"]}, secret_file: /s, config: store}
limits: {per_system: 3}
accounts:
  - {username: resa, password_hash: "$2a$04$0123456789012345678901u5sQF3iVQ8ezOhPQGuMU9pTUP6aKNhW", customers: ["12345"]}
customers:
  - id: "12345"
    systems: [{name: SE1, primary: true, agent_secret_hash: "$2a$04$0123456789012345678901u5sQF3iVQ8ezOhPQGuMU9pTUP6aKNhW"}]
`

// TestSharedRoundTrip: what `config push` extracts from a file is what a broker with
// config: store puts in force, next to its own per-broker settings.
func TestSharedRoundTrip(t *testing.T) {
	doc, err := SharedYAML([]byte(sharedFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"domain", "cluster", "data_dir"} {
		if strings.Contains(string(doc), k+":") {
			t.Errorf("the shared document holds the per-broker key %s:\n%s", k, doc)
		}
	}
	own, err := ParseBroker([]byte("domain: other.example\ndata_dir: /tmp/y\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := own.WithShared(doc)
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "other.example" || c.DataDir != "/tmp/y" || c.Limits.PerSystem != 3 || c.Limits.PerAccount != DefaultPerAccount {
		t.Errorf("merged: domain %s data_dir %s limits %+v", c.Domain, c.DataDir, c.Limits)
	}
	if a := c.Account("resa"); a == nil || !a.Manages("12345") || c.Customer("12345").System("se1") == nil {
		t.Error("the shared accounts or customers are not indexed")
	}
	if own.Account("resa") != nil {
		t.Error("WithShared changed the broker's own configuration")
	}
	for _, bad := range []struct{ doc, want string }{
		{"accounts: [{username: x, password_hash: nope}]\n", "accounts[0].password_hash"},
		{"domain: evil.example\n", "domain"},
		{"customers: [{id: '1-2', systems: []}]\n", "customers[0].id"},
	} {
		if _, err := own.WithShared([]byte(bad.doc)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want an error naming %s", bad.doc, err, bad.want)
		}
	}
	if _, err := SharedYAML([]byte("domain: example.com\n")); err == nil {
		t.Error("a file without accounts, customers or limits gave a document to push")
	}
}
