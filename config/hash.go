package config

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// HashCost is the bcrypt cost of hashes made by `maintproxy passwd`.
const HashCost = 12

// dummyHash is compared against when there is no real hash, so that an unknown name costs
// the same time as a wrong secret.
const dummyHash = "$2a$12$i5N58lsLfzZDxb2B.vYuAugoQz49MpbnkA8EUvpw/MOmBzLaQZyHG"

// maxSecretBytes is bcrypt's input limit; longer secrets are refused, not truncated.
const maxSecretBytes = 72

// Agent secrets made by `maintproxy agent-secret` are machine-generated, so a fast keyed
// hash protects them as well as bcrypt protects a human password, and a broker checks an
// agent login in microseconds instead of a quarter second.
//
// Stored form: "hmac-sha256:" + salt + ":" + mac, both unpadded base64url, where salt is 16
// random bytes and mac is HMAC-SHA-256 keyed with the salt over the secret.
const (
	// HMACPrefix starts an agent secret hash of the fast kind.
	HMACPrefix = "hmac-sha256:"
	// AgentSecretBytes is the entropy of a generated agent secret (256 bits).
	AgentSecretBytes = 32
	hmacSaltBytes    = 16
	// minAgentSecret is the shortest secret a fast hash is made for: 128 bits in base64.
	minAgentSecret = 22
)

var b64 = base64.RawURLEncoding

// dummyHMAC is checked for an unknown agent identity so that it costs what a known one does.
const dummyHMAC = "hmac-sha256:AAAAAAAAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// VerifySecret reports whether secret matches hash, a bcrypt hash or an hmac-sha256 agent
// secret hash. An empty hash (unknown account or system) never matches but takes as long as
// a bcrypt comparison.
func VerifySecret(hash, secret string) bool {
	if strings.HasPrefix(hash, HMACPrefix) {
		return verifyHMAC(hash, secret)
	}
	known := hash != ""
	if !known {
		hash = dummyHash
	}
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(secret))
	return err == nil && known && len(secret) <= maxSecretBytes
}

// VerifyAgentSecret is VerifySecret for agent logins: for an unknown system (empty hash) it
// does the work of a fast hash, not of bcrypt, so that naming an unknown system is no way
// to make the broker spend a quarter second.
func VerifyAgentSecret(hash, secret string) bool {
	if hash == "" {
		verifyHMAC(dummyHMAC, secret)
		return false
	}
	return VerifySecret(hash, secret)
}

// FastHash reports whether hash is an hmac-sha256 agent secret hash (checked in
// microseconds), as opposed to bcrypt.
func FastHash(hash string) bool { return strings.HasPrefix(hash, HMACPrefix) }

// HashSecret returns the bcrypt hash of secret for the configuration.
func HashSecret(secret string) (string, error) {
	if len(secret) > maxSecretBytes {
		return "", errTooLong
	}
	h, err := bcrypt.GenerateFromPassword([]byte(secret), HashCost)
	return string(h), err
}

// NewAgentSecret generates a random agent secret and its hmac-sha256 hash: the secret goes
// into the agent's configuration, the hash into the broker's.
func NewAgentSecret() (secret, hash string, err error) {
	raw := make([]byte, AgentSecretBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", "", err
	}
	secret = b64.EncodeToString(raw)
	hash, err = HashAgentSecret(secret)
	return secret, hash, err
}

// HashAgentSecret returns the hmac-sha256 hash of a machine-generated secret. It refuses
// secrets shorter than 22 characters (128 bits in base64): a fast hash is only safe for a
// secret nobody can guess.
func HashAgentSecret(secret string) (string, error) {
	if len(secret) < minAgentSecret {
		return "", errTooShort
	}
	salt := make([]byte, hmacSaltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return HMACPrefix + b64.EncodeToString(salt) + ":" + b64.EncodeToString(agentMAC(salt, secret)), nil
}

func agentMAC(salt []byte, secret string) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// parseHMAC splits a stored hash into salt and mac; ok is false if it is malformed.
func parseHMAC(hash string) (salt, mac []byte, ok bool) {
	rest, found := strings.CutPrefix(hash, HMACPrefix)
	if !found {
		return nil, nil, false
	}
	s, m, found := strings.Cut(rest, ":")
	if !found {
		return nil, nil, false
	}
	salt, err1 := b64.DecodeString(s)
	mac, err2 := b64.DecodeString(m)
	if err1 != nil || err2 != nil || len(salt) != hmacSaltBytes || len(mac) != sha256.Size {
		return nil, nil, false
	}
	return salt, mac, true
}

func verifyHMAC(hash, secret string) bool {
	salt, mac, ok := parseHMAC(hash)
	if !ok {
		return false
	}
	return hmac.Equal(agentMAC(salt, secret), mac)
}

type constErr string

func (e constErr) Error() string { return string(e) }

const (
	errTooLong  = constErr("longer than 72 bytes, which bcrypt cannot hash")
	errTooShort = constErr("shorter than 22 characters: a fast hash needs a machine-generated secret (`maintproxy agent-secret`)")
)

// IsBcrypt reports whether h has the form of a bcrypt hash.
func IsBcrypt(h string) bool { return isBcrypt(h) }
