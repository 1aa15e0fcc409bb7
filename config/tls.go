package config

import (
	"errors"
	"fmt"
	"time"
)

// SelfSigned configures the self-signed identity CA (tls.mode selfsigned).
type SelfSigned struct {
	// RolloverBefore is how long before the identity CA expires the broker makes the next
	// CA and publishes it beside the current one (default 8760h, a year of the CA's three).
	// Leaves come from the next CA once half of this has passed; the old CA stays published
	// until it expires.
	RolloverBefore time.Duration `mapstructure:"rollover_before"`
}

// Bounds of tls.selfsigned.rollover_before: at least a month of overlap for agents to fetch
// the next CA, and less than the CA's three-year life so a new CA does not begin its own
// rollover before its predecessor has switched.
const (
	DefaultRolloverBefore = 365 * 24 * time.Hour
	MinRolloverBefore     = 30 * 24 * time.Hour
	MaxRolloverBefore     = 2 * 365 * 24 * time.Hour
)

func (s SelfSigned) validate() error {
	if s.RolloverBefore < MinRolloverBefore || s.RolloverBefore > MaxRolloverBefore {
		return fmt.Errorf("tls.selfsigned.rollover_before: %v is outside %v-%v (30 to 730 days)",
			s.RolloverBefore, MinRolloverBefore, MaxRolloverBefore)
	}
	return nil
}

// validate checks that exactly one of cert+key or pkcs12 is given.
func (f Files) validate() error {
	if f.PKCS12 != "" {
		if f.Cert != "" || f.Key != "" {
			return errors.New("tls.files.pkcs12: give either tls.files.cert and tls.files.key, or tls.files.pkcs12, not both")
		}
		return nil
	}
	if f.PKCS12PasswordFile != "" {
		return errors.New("tls.files.pkcs12_password_file: set without tls.files.pkcs12")
	}
	if f.Cert == "" {
		return errors.New("tls.files.cert: required when tls.mode is files (or tls.files.pkcs12)")
	}
	if f.Key == "" {
		return errors.New("tls.files.key: required when tls.mode is files with tls.files.cert")
	}
	return nil
}
