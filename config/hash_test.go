package config

import (
	"strings"
	"testing"
	"time"
)

func TestAgentSecretHMAC(t *testing.T) {
	secret, hash, err := NewAgentSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) < 43 || !strings.HasPrefix(hash, HMACPrefix) || !FastHash(hash) {
		t.Fatalf("secret %d chars, hash %q", len(secret), hash)
	}
	if !VerifySecret(hash, secret) || !VerifyAgentSecret(hash, secret) {
		t.Fatal("the generated secret does not match its hash")
	}
	if VerifySecret(hash, secret[:len(secret)-1]) || VerifySecret(hash, secret+"x") || VerifyAgentSecret("", secret) {
		t.Fatal("a wrong secret matched")
	}
	// Two hashes of one secret differ (random salt) and both verify.
	h2, _ := HashAgentSecret(secret)
	if h2 == hash || !VerifySecret(h2, secret) {
		t.Fatal("salting")
	}
	// A tampered hash never matches and never panics.
	for _, bad := range []string{HMACPrefix, HMACPrefix + "x:y", hash[:len(hash)-2], strings.Replace(hash, ":", "", 2) + ":"} {
		if VerifySecret(bad, secret) {
			t.Errorf("malformed hash %q matched", bad)
		}
	}
	if _, err := HashAgentSecret("short-human-secret"); err == nil {
		t.Error("a short secret got a fast hash")
	}
	if _, _, ok := parseHMAC(dummyHMAC); !ok {
		t.Error("the dummy hash is malformed, so unknown systems cost less than known ones")
	}
}

// TestAgentSecretHashFormats: a system's agent_secret_hash may be hmac-sha256 or bcrypt;
// a password_hash must be bcrypt; a malformed hmac hash names the field.
func TestAgentSecretHashFormats(t *testing.T) {
	_, hash, _ := NewAgentSecret()
	in := strings.Replace(validYAML(), `{name: SE2, agent_secret_hash: "`+goodHash+`"}`, `{name: SE2, agent_secret_hash: "`+hash+`"}`, 1)
	b, err := ParseBroker([]byte(in))
	if err != nil {
		t.Fatalf("hmac-sha256 agent hash refused: %v", err)
	}
	if got := b.Customer("12345").System("se2").AgentSecretHash; got != hash {
		t.Errorf("hash changed on load: %q", got)
	}
	bad := strings.Replace(in, hash, hash[:len(hash)-3], 1)
	if _, err := ParseBroker([]byte(bad)); err == nil || !strings.Contains(err.Error(), "customers[0].systems[1].agent_secret_hash:") {
		t.Errorf("malformed hmac hash: %v", err)
	}
	asPassword := strings.Replace(validYAML(), `password_hash: "`+goodHash+`"`, `password_hash: "`+hash+`"`, 1)
	if _, err := ParseBroker([]byte(asPassword)); err == nil || !strings.Contains(err.Error(), "accounts[0].password_hash:") {
		t.Errorf("hmac hash as a password hash: %v", err)
	}
}

func TestLimitsDefaultsAndErrors(t *testing.T) {
	b, err := ParseBroker([]byte(validYAML()))
	if err != nil {
		t.Fatal(err)
	}
	want := Lockout{Failures: 3, Window: 10 * time.Minute, Duration: 10 * time.Minute, AccountFailures: 10, AccountInterval: 10 * time.Second}
	if b.Limits.Lockout != want || b.Limits.Auth.PerMinute != 30 || b.Limits.Auth.Burst != 10 || b.Limits.Auth.Concurrent < 1 {
		t.Errorf("defaults: %+v", b.Limits)
	}
	in := strings.Replace(validYAML(), "data_dir: /tmp/maintproxy-test",
		"data_dir: /tmp/x\nlimits: {lockout: {failures: 5, window: 1h, duration: 30m, account_failures: 50, account_interval: 1m}, auth: {per_minute: 6, burst: 2, concurrent: 3}}", 1)
	b, err = ParseBroker([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want = Lockout{Failures: 5, Window: time.Hour, Duration: 30 * time.Minute, AccountFailures: 50, AccountInterval: time.Minute}
	if b.Limits.Lockout != want || b.Limits.Auth != (AuthLimits{PerMinute: 6, Burst: 2, Concurrent: 3}) {
		t.Errorf("from the file: %+v", b.Limits)
	}
	for _, c := range []struct{ limits, field string }{
		{"{lockout: {failures: -1}}", "limits.lockout.failures:"},
		{"{lockout: {window: 100ms}}", "limits.lockout.window:"},
		{"{lockout: {duration: 48h}}", "limits.lockout.duration:"},
		{"{lockout: {account_failures: -3}}", "limits.lockout.account_failures:"},
		{"{lockout: {account_interval: -1s}}", "limits.lockout.account_interval:"},
		{"{auth: {per_minute: -1}}", "limits.auth.per_minute:"},
		{"{auth: {burst: -1}}", "limits.auth.burst:"},
		{"{auth: {concurrent: -2}}", "limits.auth.concurrent:"},
		{"{lockout: {failure: 3}}", "failure"},
	} {
		in := strings.Replace(validYAML(), "data_dir: /tmp/maintproxy-test", "data_dir: /tmp/x\nlimits: "+c.limits, 1)
		if _, err := ParseBroker([]byte(in)); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v does not name %q", c.limits, err, c.field)
		}
	}
}

// BenchmarkVerifySecret compares an agent login's hash check: hmac-sha256 against bcrypt
// at the cost `maintproxy passwd` uses.
func BenchmarkVerifySecret(b *testing.B) {
	secret, fast, _ := NewAgentSecret()
	slow, _ := HashSecret(secret[:40])
	b.Run("hmac-sha256", func(b *testing.B) {
		for b.Loop() {
			VerifySecret(fast, secret)
		}
	})
	b.Run("bcrypt-12", func(b *testing.B) {
		for b.Loop() {
			VerifySecret(slow, secret[:40])
		}
	})
}
