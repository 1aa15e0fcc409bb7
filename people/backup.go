package people

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"maintproxy/config"
)

// backupFormat names the backup file format; a file without it is refused.
const backupFormat = "maintproxy-people-backup"

// backupVersion is the format's version; a newer file is refused.
const backupVersion = 1

// backupFile is a backup: every record of every bucket, values as stored.
type backupFile struct {
	Format  string                                `json:"format"`
	Version int                                   `json:"version"`
	Created time.Time                             `json:"created"`
	Buckets map[string]map[string]json.RawMessage `json:"buckets"`
}

// Backup returns every record, the audit history included, as a JSON document Restore takes.
func (s *Service) Backup(ctx context.Context) ([]byte, error) {
	f := backupFile{Format: backupFormat, Version: backupVersion, Created: s.now().UTC(), Buckets: map[string]map[string]json.RawMessage{}}
	for _, b := range buckets {
		m := map[string]json.RawMessage{}
		err := s.o.Backend.Scan(ctx, b, "", "", func(k string, v []byte) error {
			m[k] = json.RawMessage(v)
			return nil
		})
		if err != nil {
			return nil, err
		}
		f.Buckets[b] = m
	}
	return json.MarshalIndent(&f, "", " ")
}

// Restore replaces every record with those of a Backup. The whole file is checked first
// (format, version, every record); a bad one is refused with ErrBadBackup and the store is
// left untouched.
func (s *Service) Restore(ctx context.Context, data []byte) error {
	kvs, err := checkBackup(data)
	if err != nil {
		return err
	}
	if err := s.o.Backend.Replace(ctx, kvs); err != nil {
		return err
	}
	return s.reload(ctx)
}

// checkBackup decodes and validates a backup into what Backend.Replace takes.
func checkBackup(data []byte) (map[string]map[string][]byte, error) {
	var f backupFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	if f.Format != backupFormat {
		return nil, fmt.Errorf("%w: format is %q, want %q", ErrBadBackup, f.Format, backupFormat)
	}
	if f.Version < 1 || f.Version > backupVersion {
		return nil, fmt.Errorf("%w: version %d; this broker reads version %d", ErrBadBackup, f.Version, backupVersion)
	}
	out := map[string]map[string][]byte{}
	for _, b := range buckets {
		out[b] = map[string][]byte{}
	}
	for name, recs := range f.Buckets {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("%w: unknown bucket %q", ErrBadBackup, name)
		}
		for k, v := range recs {
			if err := checkRecord(name, k, v); err != nil {
				return nil, fmt.Errorf("%w: %s/%s: %v", ErrBadBackup, name, k, err)
			}
			out[name][k] = []byte(v)
		}
	}
	return out, nil
}

func checkRecord(bucket, key string, v json.RawMessage) error {
	strict := func(into any) error { return json.Unmarshal(v, into) }
	switch bucket {
	case bucketPeople:
		var p Person
		if err := strict(&p); err != nil {
			return err
		}
		if p.Username != key || !ValidUsername(key) {
			return fmt.Errorf("username %q does not match its key", p.Username)
		}
		if !(TechnicianRole(p.Role) && p.Org != "") && !(p.Role == RoleCustomerAdmin && p.Customer != "") {
			return fmt.Errorf("role %q with org %q and customer %q", p.Role, p.Org, p.Customer)
		}
		if !config.IsBcrypt(p.PasswordHash) {
			return fmt.Errorf("password_hash is not a bcrypt hash")
		}
	case bucketTokens:
		var t Token
		if err := strict(&t); err != nil {
			return err
		}
		if len(key) != 64 || t.Username == "" {
			return fmt.Errorf("not a token record")
		}
	case bucketModes:
		var m Mode
		if err := strict(&m); err != nil {
			return err
		}
		if key != modeKey(m.Customer, m.System) || (m.Mode != ModeAlways && m.Mode != ModeApproval) {
			return fmt.Errorf("not a mode record")
		}
	case bucketRequests:
		var r Request
		if err := strict(&r); err != nil {
			return err
		}
		if r.ID != key {
			return fmt.Errorf("id %q does not match its key", r.ID)
		}
	case bucketGrants:
		var g Grant
		if err := strict(&g); err != nil {
			return err
		}
		if g.ID != key || !g.Until.After(g.From) {
			return fmt.Errorf("not a grant record")
		}
	case bucketSessions:
		var se Session
		if err := strict(&se); err != nil {
			return err
		}
		if len(key) != 64 || se.Username == "" {
			return fmt.Errorf("not a session record")
		}
	case bucketAccounts:
		var a AccountPassword
		if err := strict(&a); err != nil {
			return err
		}
		if a.Account != key || !config.IsBcrypt(a.PasswordHash) {
			return fmt.Errorf("not a proxy account password record")
		}
	case bucketAudit:
		var r Record
		if err := strict(&r); err != nil {
			return err
		}
	}
	return nil
}
