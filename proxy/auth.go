package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maintproxy/config"
	"maintproxy/internal/guard"
	"maintproxy/people"
)

// Authentication errors. A refusal by admission control matches guard.ErrBusy.
var (
	ErrBadCredentials = errors.New("wrong proxy username or password")
	ErrLocked         = errors.New("account temporarily locked after too many wrong passwords")
)

// Authentication tuning.
const (
	// cacheTTL bounds how long a password that was changed elsewhere keeps working on a
	// broker whose configuration did not change (a change drops the entry at once).
	cacheTTL = 5 * time.Minute
	cacheMax = 10000
	// failureMax bounds the failure table (about 150 bytes a record).
	failureMax = 100_000
	// maxUsername is the longest username a configuration accepts; longer ones are refused
	// without a check and never stored.
	maxUsername = 64
	// logBurst refusal records per reason and logEvery go to the log; the rest are counted.
	logBurst = 10
	logEvery = time.Minute
)

// Auth checks proxy account credentials, for the proxy and the web pages alike.
//
// In order: a client address locked for this account is refused; a credential verified
// before from the same address (cached under a SHA-256 of username, password and address,
// tied to the account's current hash) passes without bcrypt and without waiting for
// anything; an account locked everywhere is checked only for addresses without failures on
// it, and at most once per limits.lockout.account_interval; then admission control (a rate
// per client address, a bounded number of bcrypt checks at once) either admits the check or
// refuses it at once with guard.ErrBusy. Identical checks running at the same time share
// one bcrypt. The same wrong password again from the same address counts as one failure:
// a client retrying a stale saved password is not guessing.
//
// Besides the organisations' proxy accounts it knows, when People is set, personal logins
// (a person's username and password, checked the same way) and tokens (username with
// people.TokenUserSuffix, the token as password: a hash look-up in memory, no bcrypt),
// and checks a proxy account against the password its supervisor set at runtime, if any
// (people.Service.AccountHash).
type Auth struct {
	config func() *config.Broker
	now    func() time.Time
	// Log receives sampled refusal records (never a password); nil discards them.
	Log *slog.Logger
	// People, if set, adds personal logins and tokens; set it before the first check.
	People *people.Service

	adm     *guard.Admission
	cache   *guard.Cache
	sampler *guard.Sampler

	mu       sync.Mutex
	lock     *lockout
	inflight map[[32]byte]*check

	checks, cacheHits, failures, lockedOut   atomic.Int64
	pairLockouts, accountLockouts, shortName atomic.Int64
}

// check is one bcrypt check that identical requests arriving meanwhile wait for.
type check struct {
	done chan struct{}
	err  error
}

// Identity is who passed the credential check.
type Identity struct {
	// Account is the organisation's proxy account, whose customers the login reaches; nil
	// for a customer admin, who has no organisation.
	Account *config.Account
	// Principal is the person (Person set) or, for the shared proxy account, the account
	// with the operator role.
	people.Principal
}

// AuthStats are Auth's counters since start (for metrics).
type AuthStats struct {
	Checks          int64 // bcrypt checks run
	CacheHits       int64 // credentials accepted from the cache
	Failures        int64 // wrong username or password
	Locked          int64 // refused because of a lock, without a check
	PairLockouts    int64 // locks of one account for one address
	AccountLockouts int64 // locks of one account everywhere
	Unrecorded      int64 // failures the full table could not record
	Admission       guard.Stats
}

// NewAuth returns an Auth that reads accounts and limits from cfg on every check; now may
// be nil for the real clock.
func NewAuth(cfg func() *config.Broker, now func() time.Time) *Auth {
	if now == nil {
		now = time.Now
	}
	a := &Auth{config: cfg, now: now, lock: newLockout(failureMax), inflight: map[[32]byte]*check{},
		cache: guard.NewCache(cacheTTL, cacheMax), sampler: guard.NewSampler(logBurst, logEvery, now)}
	a.adm = guard.New(func() guard.Settings { return guard.FromConfig(a.config().Limits.Auth) }, now)
	return a
}

// Check verifies username and password for a client at clientIP and returns the account
// the login reaches (for a person, their organisation's). Errors are ErrBadCredentials,
// ErrLocked, people.ErrDisabled, people.ErrBadToken or a guard.ErrBusy refusal; a
// customer admin, who reaches no account, gets people.ErrNotTechnician.
func (a *Auth) Check(username, password, clientIP string) (*config.Account, error) {
	id, err := a.Identify(username, password, clientIP)
	if err == nil && id.Account == nil {
		err = people.ErrNotTechnician
	}
	return id.Account, err
}

// Identify verifies username and password for a client at clientIP and says who it is.
// Errors are those of Check.
func (a *Auth) Identify(username, password, clientIP string) (Identity, error) {
	cfg := a.config()
	now := a.now()
	addr := guard.AddrKey(clientIP)
	if len(username) > maxUsername+len(people.TokenUserSuffix) {
		a.shortName.Add(1)
		a.failures.Add(1)
		a.logRefusal("bad_credentials", "", clientIP, ErrBadCredentials)
		return Identity{}, ErrBadCredentials
	}
	a.mu.Lock()
	locked := a.lock.pairLocked(username, addr, now)
	a.mu.Unlock()
	if locked {
		a.lockedOut.Add(1)
		a.logRefusal("locked", username, clientIP, ErrLocked)
		return Identity{}, ErrLocked
	}
	if user, ok := strings.CutSuffix(username, people.TokenUserSuffix); ok && a.People != nil {
		return a.checkToken(cfg, user, username, password, clientIP, addr)
	}
	id := Identity{Account: cfg.Account(username)}
	hash := ""
	var person people.Person
	switch {
	case id.Account != nil:
		hash = id.Account.PasswordHash
		if a.People != nil {
			// A password the organisation's supervisor set at runtime replaces the file's;
			// the cache and the failure records follow the hash, so the old one stops at once.
			hash = a.People.AccountHash(id.Account)
		}
		id.Principal = people.Principal{Username: username, Org: username, Role: people.RoleOperator}
	case a.People != nil:
		var ok bool
		if person, ok = a.People.Person(username); ok {
			hash = person.PasswordHash
			if person.Locked(now) {
				a.lockedOut.Add(1)
				return Identity{}, ErrLocked
			}
		}
	}
	key := guard.Key(username, password, addr.String())
	fresh, known := a.cache.Lookup(key, hash, now)
	var err error
	if fresh {
		a.cacheHits.Add(1)
	} else {
		err = a.sharedCheck(cfg, hash, username, password, clientIP, addr, key, known)
	}
	if person.Username == "" {
		if err == nil && id.Account == nil {
			err = ErrBadCredentials // no hash matches: unreachable, kept for safety
		}
		return id, err
	}
	// A person: the store counts failures in a row (and locks), and a disabled or
	// locked person is refused even with the right password, cached or not.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if errors.Is(err, ErrBadCredentials) {
		if ferr := a.People.Failed(ctx, username); ferr != nil && a.Log != nil {
			a.Log.Warn("people store: failure not recorded", "username", username, "err", ferr.Error())
		}
		return Identity{}, err
	}
	if err != nil {
		return Identity{}, err
	}
	if !fresh {
		a.People.Succeeded(ctx, username)
	}
	p, perr := a.People.Principal(username)
	if perr != nil {
		return Identity{}, a.personRefused(username, clientIP, perr)
	}
	return Identity{Account: cfg.Account(p.Org), Principal: p}, nil
}

// personRefused logs a refused person (disabled, locked, gone) and returns the error the
// proxy answers with.
func (a *Auth) personRefused(user, clientIP string, err error) error {
	if errors.Is(err, people.ErrLocked) {
		err = ErrLocked
	}
	a.logRefusal("person_refused", user, clientIP, err)
	return err
}

// checkToken verifies a token (a look-up in memory); a wrong one counts as a failure of
// username (with the marker) for the lockout like a wrong password.
func (a *Auth) checkToken(cfg *config.Broker, user, username, token, clientIP string, addr netip.Prefix) (Identity, error) {
	p, err := a.People.VerifyToken(user, token)
	if errors.Is(err, people.ErrBadToken) {
		pol := cfg.Limits.Lockout
		a.mu.Lock()
		pairLock, _ := a.lock.fail(username, addr, guard.Key(username, token, addr.String()), a.now(), pol)
		a.mu.Unlock()
		a.failures.Add(1)
		if pairLock {
			a.pairLockouts.Add(1)
			a.logLock("token user locked for one client address", username, clientIP, pol.Duration)
		}
		a.logRefusal("bad_token", username, clientIP, err)
		return Identity{}, err
	}
	if err != nil {
		return Identity{}, a.personRefused(user, clientIP, err)
	}
	return Identity{Account: cfg.Account(p.Org), Principal: p}, nil
}

// sharedCheck runs the slow check, or waits for an identical one already running.
func (a *Auth) sharedCheck(cfg *config.Broker, hash, username, password, clientIP string, addr netip.Prefix, key [32]byte, known bool) error {
	a.mu.Lock()
	if c := a.inflight[key]; c != nil {
		a.mu.Unlock()
		<-c.done
		return c.err
	}
	c := &check{done: make(chan struct{})}
	a.inflight[key] = c
	a.mu.Unlock()
	c.err = a.slowCheck(cfg, hash, username, password, clientIP, addr, key, known)
	a.mu.Lock()
	delete(a.inflight, key)
	a.mu.Unlock()
	close(c.done)
	return c.err
}

// slowCheck runs the account gate, admission control and bcrypt, then records the result.
// A credential known from the cache (right once against this very hash) skips the gate
// and admission: only its owner can present it.
func (a *Auth) slowCheck(cfg *config.Broker, hash, username, password, clientIP string,
	addr netip.Prefix, key [32]byte, known bool) error {
	pol := cfg.Limits.Lockout
	if !known {
		a.mu.Lock()
		open := a.lock.accountGate(username, addr, a.now(), pol, false)
		a.mu.Unlock()
		if !open {
			a.lockedOut.Add(1)
			a.logRefusal("locked", username, clientIP, ErrLocked)
			return ErrLocked
		}
		release, err := a.adm.Admit(addr)
		if err != nil {
			a.logRefusal("busy", username, clientIP, err)
			return err
		}
		defer release()
		// The token is taken only once a slot is held, so a shed check does not spend it.
		a.mu.Lock()
		open = a.lock.accountGate(username, addr, a.now(), pol, true)
		a.mu.Unlock()
		if !open {
			a.lockedOut.Add(1)
			a.logRefusal("locked", username, clientIP, ErrLocked)
			return ErrLocked
		}
	}
	a.checks.Add(1)
	var ok bool
	guard.Background(func() { ok = config.VerifySecret(hash, password) })
	now := a.now()
	a.mu.Lock()
	if ok {
		a.lock.succeed(username, addr)
		a.mu.Unlock()
		a.cache.Add(key, hash, now)
		return nil
	}
	pairLock, accountLock := a.lock.fail(username, addr, key, now, pol)
	a.mu.Unlock()
	a.failures.Add(1)
	if pairLock {
		a.pairLockouts.Add(1)
		a.logLock("account locked for one client address", username, clientIP, pol.Duration)
	}
	if accountLock {
		a.accountLockouts.Add(1)
		a.logLock("account locked for all addresses: checked at most once per account_interval, only for addresses without failures", username, "", pol.Duration)
	}
	a.logRefusal("bad_credentials", username, clientIP, ErrBadCredentials)
	return ErrBadCredentials
}

// Reset drops every cached credential. Entries are tied to the hash they were checked
// against, so a changed or removed account never needs it.
func (a *Auth) Reset() { a.cache.Reset() }

// Stats returns the counters.
func (a *Auth) Stats() AuthStats {
	a.mu.Lock()
	unrecorded := a.lock.unrecorded
	a.mu.Unlock()
	return AuthStats{Checks: a.checks.Load(), CacheHits: a.cacheHits.Load(), Failures: a.failures.Load(),
		Locked: a.lockedOut.Load(), PairLockouts: a.pairLockouts.Load(), AccountLockouts: a.accountLockouts.Load(),
		Unrecorded: unrecorded, Admission: a.adm.Stats()}
}

// logRefusal logs a sampled refusal: the username and address, never the password.
func (a *Auth) logRefusal(reason, username, clientIP string, err error) {
	if a.Log == nil {
		return
	}
	ok, suppressed := a.sampler.Allow(reason)
	if !ok {
		return
	}
	a.Log.Info("login refused", "reason", reason, "username", username, "client", clientIP,
		"err", err.Error(), "suppressed_since_last", suppressed)
}

func (a *Auth) logLock(msg, username, clientIP string, d time.Duration) {
	if a.Log == nil {
		return
	}
	if ok, suppressed := a.sampler.Allow("lock"); ok {
		a.Log.Warn(msg, "username", username, "client", clientIP, "for", d.String(), "suppressed_since_last", suppressed)
	}
}
