package people

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
)

// CheckPassword applies the password rules to pw alone (length and character classes);
// the reuse rule needs the person's history and is applied by the Service.
func CheckPassword(r config.PasswordRules, pw string) error {
	n := utf8.RuneCountInString(pw)
	if n < r.MinLength || n > r.MaxLength || len(pw) > 72 {
		return fmt.Errorf("%w: %d to %d characters", ErrBadPassword, r.MinLength, r.MaxLength)
	}
	var lower, upper, digit, other int
	for _, c := range pw {
		switch {
		case unicode.IsLower(c):
			lower = 1
		case unicode.IsUpper(c):
			upper = 1
		case unicode.IsDigit(c):
			digit = 1
		default:
			other = 1
		}
	}
	if lower+upper+digit+other < r.MinClasses {
		return fmt.Errorf("%w: at least %d of lower case, upper case, digits and other characters", ErrBadPassword, r.MinClasses)
	}
	return nil
}

// reused reports whether pw matches the current hash or one of the last n of history.
func reused(pw, current string, history []string, n int) bool {
	if n == 0 {
		return false
	}
	hashes := append([]string{current}, history...)
	if len(hashes) > n {
		hashes = hashes[:n]
	}
	for _, h := range hashes {
		if h != "" && bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)) == nil {
			return true
		}
	}
	return false
}
