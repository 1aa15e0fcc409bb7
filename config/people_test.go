package config

import (
	"strings"
	"testing"
	"time"
)

// TestPeopleRules: the people section's defaults are the manual's, and each bad value is
// refused naming its field.
func TestPeopleRules(t *testing.T) {
	b, err := NewBroker(Broker{Domain: "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if p := b.People; p.Password != (PasswordRules{9, 31, 2, 5}) || p.TokenTTL != 10*time.Hour || p.LockFailures != 5 {
		t.Errorf("defaults: %+v", p)
	}
	for _, c := range []struct {
		edit func(*People)
		want string
	}{
		{func(p *People) { p.Password.MaxLength = 5 }, "people.password.max_length"},
		{func(p *People) { p.Password.MinLength = 80 }, "people.password.min_length"},
		{func(p *People) { p.Password.MinClasses = 5 }, "people.password.min_classes"},
		{func(p *People) { p.Password.History = -1 }, "people.password.history"},
		{func(p *People) { p.LockFailures = -2 }, "people.lock_failures"},
		{func(p *People) { p.TokenTTL = time.Second }, "people.token_ttl"},
		{func(p *People) { p.AuditRetention = time.Minute }, "people.audit_retention"},
		{func(p *People) { p.MaxGrant = 400 * 24 * time.Hour }, "people.max_grant"},
	} {
		in := Broker{Domain: "example.test"}
		c.edit(&in.People)
		if _, err := NewBroker(in); err == nil || !strings.HasPrefix(err.Error(), c.want+":") {
			t.Errorf("%s: %v", c.want, err)
		}
	}
}
