package proxy

import (
	"crypto/sha256"
	"errors"
	"sync"
	"time"

	"maintproxy/config"
)

// Authentication errors.
var (
	ErrBadCredentials = errors.New("wrong proxy username or password")
	ErrLocked         = errors.New("account temporarily locked after too many wrong passwords")
)

// Authentication tuning.
const (
	// cacheTTL bounds how long a password that was changed elsewhere keeps working on a
	// broker whose configuration did not change (a change drops the entry at once).
	cacheTTL   = 5 * time.Minute
	cacheMax   = 10000
	lockAfter  = 10
	lockFor    = 5 * time.Minute
	failureMax = 10000
)

// Auth checks proxy account credentials. A verified password is cached under a SHA-256 of
// username and password, tied to the account's current hash, so a correct CONNECT does not
// pay bcrypt each time and a changed or removed account stops matching at once. Wrong
// passwords are counted per username and client address; after lockAfter failures that
// pair is locked for lockFor without running bcrypt.
type Auth struct {
	config func() *config.Broker
	now    func() time.Time

	mu       sync.Mutex
	cache    map[[32]byte]cacheEntry
	failures map[failKey]*failure
}

type cacheEntry struct {
	hash    string
	expires time.Time
}

type failKey struct{ user, ip string }

type failure struct {
	count  int
	until  time.Time // locked until
	window time.Time // count resets after this
}

// NewAuth returns an Auth that reads accounts from cfg on every check.
func NewAuth(cfg func() *config.Broker, now func() time.Time) *Auth {
	if now == nil {
		now = time.Now
	}
	return &Auth{config: cfg, now: now, cache: map[[32]byte]cacheEntry{}, failures: map[failKey]*failure{}}
}

// Check verifies username and password for a client at clientIP and returns the account.
func (a *Auth) Check(username, password, clientIP string) (*config.Account, error) {
	cfg := a.config()
	acct := cfg.Account(username)
	key := credKey(username, password)
	now := a.now()
	fk := failKey{username, clientIP}

	a.mu.Lock()
	if f := a.failures[fk]; f != nil && now.Before(f.until) {
		a.mu.Unlock()
		return nil, ErrLocked
	}
	if e, ok := a.cache[key]; ok && acct != nil && e.hash == acct.PasswordHash && now.Before(e.expires) {
		a.mu.Unlock()
		return acct, nil
	}
	a.mu.Unlock()

	hash := ""
	if acct != nil {
		hash = acct.PasswordHash
	}
	ok := config.VerifySecret(hash, password)

	a.mu.Lock()
	defer a.mu.Unlock()
	if !ok {
		a.fail(fk, now)
		return nil, ErrBadCredentials
	}
	delete(a.failures, fk)
	if len(a.cache) >= cacheMax {
		a.sweep(now)
	}
	a.cache[key] = cacheEntry{hash: acct.PasswordHash, expires: now.Add(cacheTTL)}
	return acct, nil
}

// Reset drops every cached credential, e.g. after the accounts changed.
func (a *Auth) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.cache)
}

func (a *Auth) fail(k failKey, now time.Time) {
	f := a.failures[k]
	if f == nil || now.After(f.window) {
		if len(a.failures) >= failureMax {
			a.sweep(now)
		}
		f = &failure{window: now.Add(lockFor)}
		a.failures[k] = f
	}
	f.count++
	if f.count >= lockAfter {
		f.until = now.Add(lockFor)
		f.count = 0
	}
}

// sweep drops expired entries; if the maps are still full it empties them, trading a few
// bcrypt calls for bounded memory.
func (a *Auth) sweep(now time.Time) {
	for k, e := range a.cache {
		if now.After(e.expires) {
			delete(a.cache, k)
		}
	}
	if len(a.cache) >= cacheMax {
		clear(a.cache)
	}
	for k, f := range a.failures {
		if now.After(f.window) && now.After(f.until) {
			delete(a.failures, k)
		}
	}
	if len(a.failures) >= failureMax {
		clear(a.failures)
	}
}

func credKey(user, pass string) [32]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(pass))
	var k [32]byte
	h.Sum(k[:0])
	return k
}
