package config

import "golang.org/x/crypto/bcrypt"

// HashCost is the bcrypt cost of hashes made by `maintproxy passwd`.
const HashCost = 12

// dummyHash is compared against when there is no real hash, so that an unknown name costs
// the same time as a wrong secret.
const dummyHash = "$2a$12$i5N58lsLfzZDxb2B.vYuAugoQz49MpbnkA8EUvpw/MOmBzLaQZyHG"

// maxSecretBytes is bcrypt's input limit; longer secrets are refused, not truncated.
const maxSecretBytes = 72

// VerifySecret reports whether secret matches the bcrypt hash. An empty hash (unknown
// account or system) never matches but takes as long as a real comparison.
func VerifySecret(hash, secret string) bool {
	known := hash != ""
	if !known {
		hash = dummyHash
	}
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(secret))
	return err == nil && known && len(secret) <= maxSecretBytes
}

// HashSecret returns the bcrypt hash of secret for the configuration.
func HashSecret(secret string) (string, error) {
	if len(secret) > maxSecretBytes {
		return "", errTooLong
	}
	h, err := bcrypt.GenerateFromPassword([]byte(secret), HashCost)
	return string(h), err
}

type constErr string

func (e constErr) Error() string { return string(e) }

const errTooLong = constErr("longer than 72 bytes, which bcrypt cannot hash")
