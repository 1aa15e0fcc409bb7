package config

import (
	"cmp"
	"fmt"
	"time"
)

// People is the optional `people:` section: the rules for personal logins, tokens and the
// audit history kept in the people store (see package people). Every field has a default,
// so a file without the section gets the manual's rules.
type People struct {
	Password PasswordRules `mapstructure:"password"`
	// TokenTTL is how long a token from `maint login` is valid (default 10h: a working day).
	TokenTTL time.Duration `mapstructure:"token_ttl"`
	// LockFailures wrong passwords in a row lock a person for LockDuration (defaults 5, 15m);
	// the lock is kept in the store, so it holds on every broker and across restarts.
	LockFailures int           `mapstructure:"lock_failures"`
	LockDuration time.Duration `mapstructure:"lock_duration"`
	// AuditRetention is how long audit history records are kept (default 90 days).
	AuditRetention time.Duration `mapstructure:"audit_retention"`
	// RequestTTL is how long an unanswered access request stays listed (default 24h).
	RequestTTL time.Duration `mapstructure:"request_ttl"`
	// MaxGrant bounds the window of one access grant (default 7 days).
	MaxGrant time.Duration `mapstructure:"max_grant"`
	// SessionIdle ends a web sign-in unused this long (default 15m; at least 1s, so that
	// tests can watch it happen — a real deployment wants minutes).
	SessionIdle time.Duration `mapstructure:"session_idle"`
}

// PasswordRules are the manual's rules for personal passwords.
type PasswordRules struct {
	// MinLength and MaxLength bound a password's length in characters (defaults 9 and 31).
	MinLength int `mapstructure:"min_length"`
	MaxLength int `mapstructure:"max_length"`
	// MinClasses is how many of lower case, upper case, digits and others a password
	// needs (default 2).
	MinClasses int `mapstructure:"min_classes"`
	// History is how many previous passwords may not be used again (default 5).
	History int `mapstructure:"history"`
}

// Defaults of the people section.
const (
	DefaultPasswordMin    = 9
	DefaultPasswordMax    = 31
	DefaultPasswordCls    = 2
	DefaultPasswordHist   = 5
	DefaultTokenTTL       = 10 * time.Hour
	DefaultPersonFailures = 5
	DefaultPersonLock     = 15 * time.Minute
	DefaultAuditRetention = 90 * 24 * time.Hour
	DefaultRequestTTL     = 24 * time.Hour
	DefaultMaxGrant       = 7 * 24 * time.Hour
	DefaultSessionIdle    = 15 * time.Minute
)

func (p *People) applyDefaults() {
	p.Password.MinLength = cmp.Or(p.Password.MinLength, DefaultPasswordMin)
	p.Password.MaxLength = cmp.Or(p.Password.MaxLength, DefaultPasswordMax)
	p.Password.MinClasses = cmp.Or(p.Password.MinClasses, DefaultPasswordCls)
	p.Password.History = cmp.Or(p.Password.History, DefaultPasswordHist)
	p.TokenTTL = cmp.Or(p.TokenTTL, DefaultTokenTTL)
	p.LockFailures = cmp.Or(p.LockFailures, DefaultPersonFailures)
	p.LockDuration = cmp.Or(p.LockDuration, DefaultPersonLock)
	p.AuditRetention = cmp.Or(p.AuditRetention, DefaultAuditRetention)
	p.RequestTTL = cmp.Or(p.RequestTTL, DefaultRequestTTL)
	p.MaxGrant = cmp.Or(p.MaxGrant, DefaultMaxGrant)
	p.SessionIdle = cmp.Or(p.SessionIdle, DefaultSessionIdle)
}

func (p *People) validate() error {
	pw := p.Password
	switch {
	case pw.MinLength < 1 || pw.MinLength > maxSecretBytes:
		return fmt.Errorf("people.password.min_length: %d is outside 1-%d", pw.MinLength, maxSecretBytes)
	case pw.MaxLength < pw.MinLength || pw.MaxLength > maxSecretBytes:
		return fmt.Errorf("people.password.max_length: %d must be between min_length (%d) and %d", pw.MaxLength, pw.MinLength, maxSecretBytes)
	case pw.MinClasses < 1 || pw.MinClasses > 4:
		return fmt.Errorf("people.password.min_classes: %d is outside 1-4", pw.MinClasses)
	case pw.History < 0 || pw.History > 24:
		return fmt.Errorf("people.password.history: %d is outside 0-24", pw.History)
	case p.LockFailures < 1:
		return fmt.Errorf("people.lock_failures: must be at least 1")
	}
	for _, d := range []struct {
		field    string
		v        time.Duration
		min, max time.Duration
	}{
		{"people.token_ttl", p.TokenTTL, time.Minute, 31 * 24 * time.Hour},
		{"people.lock_duration", p.LockDuration, time.Second, 24 * time.Hour},
		{"people.audit_retention", p.AuditRetention, time.Hour, 10 * 365 * 24 * time.Hour},
		{"people.request_ttl", p.RequestTTL, time.Minute, 31 * 24 * time.Hour},
		{"people.max_grant", p.MaxGrant, time.Minute, 366 * 24 * time.Hour},
		{"people.session_idle", p.SessionIdle, time.Second, 24 * time.Hour},
	} {
		if d.v < d.min || d.v > d.max {
			return fmt.Errorf("%s: %v is outside %v-%v", d.field, d.v, d.min, d.max)
		}
	}
	return nil
}
