package people

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
)

// AccountPassword is an organisation's proxy account password set at runtime by its
// supervisor (or the operator), in place of accounts[].password_hash of the configuration.
//
// It applies while the file still holds the hash it replaced (Replaced): an operator who
// edits the account's password_hash in the file afterwards has decided anew, and the file
// wins (Service.Superseded lists such records; `maintproxy account clear` removes one).
type AccountPassword struct {
	Account string `json:"account"`
	// PasswordHash is bcrypt; History the hashes of the previous passwords, newest first.
	PasswordHash string   `json:"password_hash"`
	History      []string `json:"history,omitempty"`
	// Replaced is the configuration's password_hash when the password was set.
	Replaced string    `json:"replaced"`
	By       string    `json:"by,omitempty"`
	Changed  time.Time `json:"changed"`
}

// AccountHash returns the hash a's password is checked against: the runtime one while it
// is in force (see AccountPassword), else the configuration's. It reads memory only.
func (s *Service) AccountHash(a *config.Account) string {
	if rec := s.snap.Load().accounts[a.Username]; rec != nil && rec.Replaced == a.PasswordHash {
		return rec.PasswordHash
	}
	return a.PasswordHash
}

// AccountPasswordState describes one account's password source, for lists and checks
// (never a hash).
type AccountPasswordState struct {
	Account string `json:"account"`
	// Source is "config" (the file's hash), "store" (set at runtime and in force) or
	// "superseded" (set at runtime, but the file's hash changed since: the file wins).
	Source  string    `json:"source"`
	By      string    `json:"by,omitempty"`
	Changed time.Time `json:"changed,omitzero"`
}

// Password sources of AccountPasswordState.
const (
	SourceConfig     = "config"
	SourceStore      = "store"
	SourceSuperseded = "superseded"
)

// AccountPasswords returns the password source of every account of the configuration and
// of every stored record whose account is gone (Source superseded), by account.
func (s *Service) AccountPasswords() []AccountPasswordState {
	cfg := s.o.Config()
	recs := s.snap.Load().accounts
	var out []AccountPasswordState
	seen := map[string]bool{}
	for i := range cfg.Accounts {
		a := &cfg.Accounts[i]
		seen[a.Username] = true
		st := AccountPasswordState{Account: a.Username, Source: SourceConfig}
		if rec := recs[a.Username]; rec != nil {
			st.By, st.Changed, st.Source = rec.By, rec.Changed, SourceSuperseded
			if rec.Replaced == a.PasswordHash {
				st.Source = SourceStore
			}
		}
		out = append(out, st)
	}
	for name, rec := range recs {
		if !seen[name] {
			out = append(out, AccountPasswordState{Account: name, Source: SourceSuperseded, By: rec.By, Changed: rec.Changed})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out
}

// Superseded returns the accounts whose runtime password no longer applies because the
// configuration's hash changed since it was set (or the account is gone).
func (s *Service) Superseded() []string {
	var out []string
	for _, st := range s.AccountPasswords() {
		if st.Source == SourceSuperseded {
			out = append(out, st.Account)
		}
	}
	return out
}

// SetAccountPassword sets the proxy account's password at runtime, with the rules and
// history of people's passwords (the password in force counts as the newest of its
// history). by names who did it. The old password stops working at once on every broker;
// tunnels already open stay open.
func (s *Service) SetAccountPassword(ctx context.Context, account, password, by string) error {
	cfg := s.o.Config()
	a := cfg.Account(account)
	if a == nil {
		return fmt.Errorf("account: %q is not a proxy account of the configuration: %w", account, ErrNotFound)
	}
	rules := cfg.People.Password
	if err := CheckPassword(rules, password); err != nil {
		return err
	}
	old := s.snap.Load().accounts[a.Username]
	cur, hist := a.PasswordHash, []string(nil)
	if old != nil {
		hist = old.History
		if old.Replaced == a.PasswordHash {
			cur = old.PasswordHash
		} else {
			hist = append([]string{old.PasswordHash}, hist...)
		}
	}
	if reused(password, cur, hist, rules.History) {
		return fmt.Errorf("%w: it was used recently; choose one not among the last %d", ErrBadPassword, rules.History)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.o.HashCost)
	if err != nil {
		return err
	}
	hist = append([]string{cur}, hist...)
	if len(hist) > rules.History {
		hist = hist[:rules.History]
	}
	rec := AccountPassword{Account: a.Username, PasswordHash: string(h), History: hist, Replaced: a.PasswordHash,
		By: by, Changed: s.now().UTC()}
	return s.update(ctx, bucketAccounts, a.Username, func(v []byte) ([]byte, error) {
		if (v == nil) != (old == nil) {
			return nil, errors.New("password: changed meanwhile; try again")
		}
		if v != nil {
			var now AccountPassword
			if err := json.Unmarshal(v, &now); err != nil || now.PasswordHash != old.PasswordHash {
				return nil, errors.New("password: changed meanwhile; try again")
			}
		}
		return json.Marshal(&rec)
	})
}

// ClearAccountPassword removes the runtime password of account: the configuration's
// applies again. It reports whether there was one.
func (s *Service) ClearAccountPassword(ctx context.Context, account string) (bool, error) {
	found := false
	err := s.update(ctx, bucketAccounts, account, func(v []byte) ([]byte, error) {
		found = v != nil
		return nil, nil
	})
	return found, err
}
