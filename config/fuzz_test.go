package config

import (
	"reflect"
	"testing"
)

// FuzzParseBroker: any file either fails with an error or gives a configuration that
// validates again unchanged (defaults and normalisation are idempotent).
func FuzzParseBroker(f *testing.F) {
	f.Add([]byte(validYAML()))
	f.Add([]byte(validYAML() + "limits: {connections: {per_address: 3, total: 7}}\ntimeouts: {idle: 4s}\nlisten: {metrics: ''}\n"))
	f.Add([]byte("domain: example.com\nlisten: {proxy: '[::1]:6443'}\ncustomers: [{id: '1', systems: [{name: a, primary: true, agent_secret_hash: x}]}]\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBroker(data)
		if err != nil {
			return
		}
		again, err := NewBroker(*b)
		if err != nil {
			t.Fatalf("a loaded configuration fails validation again: %v", err)
		}
		if again.Listen != b.Listen || again.Limits != b.Limits || again.Timeouts != b.Timeouts || len(again.Customers) != len(b.Customers) {
			t.Fatalf("validating again changed it: %+v / %+v", b, again)
		}
	})
}

// FuzzParseAgent: the same for the agent's file.
func FuzzParseAgent(f *testing.F) {
	f.Add([]byte("broker: https://admin.example.com\ncustomer: '12345'\nsystem: se1\nsecret: s3cret-enough\n"))
	f.Add([]byte("broker: https://admin.example.com\ncustomer: '12345'\nsystem: se1\nsecret: x\ncolocated: {enabled: true, tunnels: [{application: rdp, ip: 10.0.0.9}]}\nremote_access: {enabled: true, services: {'22': '127.0.0.1:22'}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAgent(data)
		if err != nil {
			return
		}
		again, err := NewAgent(*a)
		if err != nil {
			t.Fatalf("a loaded agent configuration fails validation again: %v", err)
		}
		if !reflect.DeepEqual(again, a) {
			t.Fatalf("validating again changed it: %+v / %+v", a, again)
		}
	})
}
