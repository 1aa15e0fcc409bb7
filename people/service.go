package people

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
)

// Options configure a Service. Backend and Config are required.
type Options struct {
	Backend Backend
	// Config returns the configuration in force (organisations, people rules).
	Config func() *config.Broker
	// Now is the clock (nil: time.Now); tests move it to expire tokens and grants.
	Now func() time.Time
	// Node names this broker in audit history keys (cluster mode); empty for a single broker.
	Node string
	// HashCost is the bcrypt cost of new password hashes (0: config.HashCost).
	HashCost int
	// Logger receives store failures; nil discards them.
	Logger *slog.Logger
	// StartUnloaded lets Open succeed when the store does not answer (etcd down while a
	// broker starts): the Service starts empty — no personal login works, nothing is let
	// in that should not be — and loads the records as soon as the store answers.
	StartUnloaded bool
}

// snapshot is the in-memory copy of every record except the audit history.
type snapshot struct {
	people   map[string]*Person
	tokens   map[string]*Token // by id (hex SHA-256 of the token)
	modes    map[string]*Mode  // by customer/system
	requests map[string]*Request
	grants   map[string]*Grant
	sessions map[string]*Session // by id (hex SHA-256 of the cookie's value)
	accounts map[string]*AccountPassword
	// byGrantee indexes grants by customer/system/username: Valid runs for every open
	// tunnel twice a second.
	byGrantee map[string][]*Grant
}

// Service is the people store with its in-memory snapshot. Reads never touch the store.
// Safe for concurrent use.
type Service struct {
	o   Options
	now func() time.Time
	log *slog.Logger

	snap atomic.Pointer[snapshot]

	reloadMu sync.Mutex // one reload at a time, so a newer one is never overwritten by an older
	subMu    sync.Mutex
	subs     []func()

	history chan *Record // pointers: a queue of values would hold ~1 MiB from the start
	dropped atomic.Int64
	seq     atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// historyQueue bounds audit records waiting to be written; beyond it they are dropped
// and counted, so a slow store never holds a tunnel up.
const historyQueue = 4096

// pruneEvery is how often expired history, requests, grants and tokens are removed.
const pruneEvery = time.Hour

// Open loads the records and starts the Service's background work: the history writer,
// hourly pruning and, for etcd, the watch. Close stops it and closes the Backend.
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.Backend == nil || o.Config == nil {
		return nil, errors.New("people: Backend and Config are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HashCost == 0 {
		o.HashCost = config.HashCost
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o, now: o.Now, log: o.Logger, history: make(chan *Record, historyQueue)}
	loadErr := s.reload(ctx)
	if loadErr != nil && !o.StartUnloaded {
		return nil, loadErr
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if loadErr != nil {
		s.snap.Store(&snapshot{})
		s.log.Warn("people store: not loaded; personal logins are refused until it answers", "err", loadErr.Error())
		s.goRun(s.loadLater)
	}
	s.goRun(s.writeHistory)
	s.goRun(s.pruneLoop)
	s.goRun(func() {
		s.o.Backend.Watch(s.ctx, func() {
			if err := s.reload(s.ctx); err != nil && s.ctx.Err() == nil {
				s.log.Warn("people store: reload failed; serving the last snapshot", "err", err.Error())
			}
		})
	})
	return s, nil
}

// loadLater retries the first load every second until it succeeds or Close.
func (s *Service) loadLater() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if s.reload(s.ctx) == nil {
				s.log.Info("people store: loaded")
				return
			}
		}
	}
}

func (s *Service) goRun(f func()) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f() }()
}

// Close writes the queued history, stops the background work and closes the Backend.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	return s.o.Backend.Close()
}

// Subscribe registers f to be called after every change of the records, from this
// process or (etcd) another; f must not block for long.
func (s *Service) Subscribe(f func()) {
	s.subMu.Lock()
	s.subs = append(s.subs, f)
	s.subMu.Unlock()
}

// reload reads every record but the history into a new snapshot and tells subscribers.
func (s *Service) reload(ctx context.Context) error {
	s.reloadMu.Lock()
	n := &snapshot{people: map[string]*Person{}, tokens: map[string]*Token{}, modes: map[string]*Mode{},
		requests: map[string]*Request{}, grants: map[string]*Grant{}, sessions: map[string]*Session{},
		accounts: map[string]*AccountPassword{}}
	err := errors.Join(
		loadInto(ctx, s.o.Backend, bucketPeople, n.people),
		loadInto(ctx, s.o.Backend, bucketTokens, n.tokens),
		loadInto(ctx, s.o.Backend, bucketModes, n.modes),
		loadInto(ctx, s.o.Backend, bucketRequests, n.requests),
		loadInto(ctx, s.o.Backend, bucketGrants, n.grants),
		loadInto(ctx, s.o.Backend, bucketSessions, n.sessions),
		loadInto(ctx, s.o.Backend, bucketAccounts, n.accounts),
	)
	if err == nil {
		n.byGrantee = make(map[string][]*Grant, len(n.grants))
		for _, g := range n.grants {
			k := grantKey(g.Customer, g.System, g.Username)
			n.byGrantee[k] = append(n.byGrantee[k], g)
		}
		s.snap.Store(n)
	}
	s.reloadMu.Unlock()
	if err != nil {
		return err
	}
	s.subMu.Lock()
	subs := append([]func(){}, s.subs...)
	s.subMu.Unlock()
	for _, f := range subs {
		f()
	}
	return nil
}

func loadInto[T any](ctx context.Context, b Backend, bucket string, m map[string]*T) error {
	return b.Scan(ctx, bucket, "", "", func(k string, v []byte) error {
		var t T
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("people store: %s/%s: %w", bucket, k, err)
		}
		m[k] = &t
		return nil
	})
}

// update changes one record in the store and reloads the snapshot. An error of the
// store (not of fn) is wrapped in ErrStore.
func (s *Service) update(ctx context.Context, bucket, key string, fn func(old []byte) ([]byte, error)) error {
	var fnErr error
	err := s.o.Backend.Update(ctx, bucket, key, func(old []byte) ([]byte, error) {
		v, err := fn(old)
		fnErr = err
		return v, err
	})
	if err != nil {
		if fnErr != nil && errors.Is(err, fnErr) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	if err := s.reload(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	return nil
}

// updatePerson changes one person's record with fn; ErrNotFound if there is none.
func (s *Service) updatePerson(ctx context.Context, username string, fn func(p *Person) error) error {
	return s.update(ctx, bucketPeople, username, func(old []byte) ([]byte, error) {
		if old == nil {
			return nil, ErrNotFound
		}
		var p Person
		if err := json.Unmarshal(old, &p); err != nil {
			return nil, err
		}
		if err := fn(&p); err != nil {
			return nil, err
		}
		p.Changed = s.now().UTC()
		return json.Marshal(&p)
	})
}

// --- reads (snapshot only) ---

// Person returns a copy of the person's record.
func (s *Service) Person(username string) (Person, bool) {
	p := s.snap.Load().people[username]
	if p == nil {
		return Person{}, false
	}
	return *p, true
}

// People returns the people for whom keep is true (nil: everyone), by username.
func (s *Service) People(keep func(*Person) bool) []Person {
	var out []Person
	for _, p := range s.snap.Load().people {
		if keep == nil || keep(p) {
			out = append(out, *p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Username < out[j].Username })
	return out
}

// Mode returns a system's access mode (ModeAlways unless set).
func (s *Service) Mode(customer, system string) string {
	if m := s.snap.Load().modes[modeKey(customer, system)]; m != nil {
		return m.Mode
	}
	return ModeAlways
}

// Modes returns every mode set for customer ("" every customer).
func (s *Service) Modes(customer string) []Mode {
	var out []Mode
	for _, m := range s.snap.Load().modes {
		if customer == "" || m.Customer == customer {
			out = append(out, *m)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return modeKey(out[i].Customer, out[i].System) < modeKey(out[j].Customer, out[j].System)
	})
	return out
}

// Requests returns the access requests for customer ("" every customer), newest first.
func (s *Service) Requests(customer string) []Request {
	var out []Request
	for _, r := range s.snap.Load().requests {
		if customer == "" || r.Customer == customer {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out
}

// Grants returns the grants for customer ("" every customer) not yet ended, soonest end first.
func (s *Service) Grants(customer string) []Grant {
	now := s.now()
	var out []Grant
	for _, g := range s.snap.Load().grants {
		if (customer == "" || g.Customer == customer) && now.Before(g.Until) {
			out = append(out, *g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Until.Before(out[j].Until) })
	return out
}

// Tokens returns how many unexpired tokens username holds.
func (s *Service) Tokens(username string) int {
	now := s.now()
	n := 0
	for _, t := range s.snap.Load().tokens {
		if t.Username == username && now.Before(t.Expires) {
			n++
		}
	}
	return n
}

func modeKey(customer, system string) string { return customer + "/" + system }

// --- people ---

// NewPerson is what AddPerson needs.
type NewPerson struct {
	Username, Name string
	// Org for a technician (an account's username), or Customer for a customer admin.
	Org, Customer string
	// Role of a technician (supervisor, operator, readonly); ignored for a customer admin.
	Role     Role
	Password string
}

// ValidUsername reports whether u may name a person: 1-64 of letters, digits, '.', '_',
// '-' and '@' (never '+', the token marker, nor ':' or spaces, which Basic auth cannot carry).
func ValidUsername(u string) bool {
	if u == "" || len(u) > 64 {
		return false
	}
	for _, c := range u {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-@", c)
		if !ok {
			return false
		}
	}
	return true
}

// AddPerson creates a person. The username must be free among people and proxy accounts,
// the organisation or customer must exist in the configuration, and the password must
// meet the rules.
func (s *Service) AddPerson(ctx context.Context, n NewPerson) (Person, error) {
	cfg := s.o.Config()
	if !ValidUsername(n.Username) {
		return Person{}, ErrBadUsername
	}
	if cfg.Account(n.Username) != nil {
		return Person{}, ErrExists
	}
	p := Person{Username: n.Username, Name: strings.TrimSpace(n.Name), Role: n.Role}
	switch {
	case n.Org != "" && n.Customer != "":
		return Person{}, errors.New("org and customer: a person belongs to an organisation or is a customer's admin, not both")
	case n.Org != "":
		if cfg.Account(n.Org) == nil {
			return Person{}, fmt.Errorf("org: %q is not an organisation (an account of the configuration)", n.Org)
		}
		if !TechnicianRole(n.Role) {
			return Person{}, ErrBadRole
		}
		p.Org = n.Org
	case n.Customer != "":
		c := cfg.Customer(n.Customer)
		if c == nil {
			return Person{}, fmt.Errorf("customer: %q is not a customer of the configuration", n.Customer)
		}
		p.Customer, p.Role = c.ID, RoleCustomerAdmin
	default:
		return Person{}, errors.New("org: required (the organisation's account username), or customer for a customer admin")
	}
	if err := CheckPassword(cfg.People.Password, n.Password); err != nil {
		return Person{}, err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(n.Password), s.o.HashCost)
	if err != nil {
		return Person{}, err
	}
	now := s.now().UTC()
	p.PasswordHash, p.Created, p.Changed = string(h), now, now
	err = s.update(ctx, bucketPeople, p.Username, func(old []byte) ([]byte, error) {
		if old != nil {
			return nil, ErrExists
		}
		return json.Marshal(&p)
	})
	return p, err
}

// SetDisabled disables or enables a login. Disabling revokes its tokens (and, through
// Subscribe, ends its tunnels); enabling also lifts a lock.
func (s *Service) SetDisabled(ctx context.Context, username string, disabled bool) error {
	err := s.updatePerson(ctx, username, func(p *Person) error {
		p.Disabled = disabled
		if !disabled {
			p.Failed, p.LockedUntil = 0, time.Time{}
		}
		return nil
	})
	if err != nil || !disabled {
		return err
	}
	_, err = s.RevokeTokens(ctx, username)
	return err
}

// SetRole changes a technician's role.
func (s *Service) SetRole(ctx context.Context, username string, role Role) error {
	if !TechnicianRole(role) {
		return ErrBadRole
	}
	return s.updatePerson(ctx, username, func(p *Person) error {
		if p.Org == "" {
			return fmt.Errorf("role: %s is a customer admin, not a technician", username)
		}
		p.Role = role
		return nil
	})
}

// SetPassword sets a new password for username (checked against the rules and the last
// people.password.history passwords), lifts a lock and revokes the person's tokens.
func (s *Service) SetPassword(ctx context.Context, username, password string) error {
	rules := s.o.Config().People.Password
	if err := CheckPassword(rules, password); err != nil {
		return err
	}
	cur, ok := s.Person(username)
	if !ok {
		return ErrNotFound
	}
	if reused(password, cur.PasswordHash, cur.History, rules.History) {
		return fmt.Errorf("%w: it was used recently; choose one not among the last %d", ErrBadPassword, rules.History)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.o.HashCost)
	if err != nil {
		return err
	}
	err = s.updatePerson(ctx, username, func(p *Person) error {
		if p.PasswordHash != cur.PasswordHash {
			return errors.New("password: changed meanwhile; try again")
		}
		hist := append([]string{p.PasswordHash}, p.History...)
		if len(hist) > rules.History {
			hist = hist[:rules.History]
		}
		p.PasswordHash, p.History, p.Failed, p.LockedUntil = string(h), hist, 0, time.Time{}
		return nil
	})
	if err != nil {
		return err
	}
	_, err = s.RevokeTokens(ctx, username)
	return err
}

// ChangeOwnPassword is self-service: the current password must be given.
func (s *Service) ChangeOwnPassword(ctx context.Context, username, current, password string) error {
	p, ok := s.Person(username)
	if !ok || bcrypt.CompareHashAndPassword([]byte(p.PasswordHash), []byte(current)) != nil {
		return ErrWrongPassword
	}
	return s.SetPassword(ctx, username, password)
}

// Delete removes a person and their tokens.
func (s *Service) Delete(ctx context.Context, username string) error {
	if _, err := s.RevokeTokens(ctx, username); err != nil {
		return err
	}
	return s.update(ctx, bucketPeople, username, func(old []byte) ([]byte, error) {
		if old == nil {
			return nil, ErrNotFound
		}
		return nil, nil
	})
}

// Failed records a wrong password for username; at people.lock_failures in a row the
// login is locked for people.lock_duration. Unknown names are ignored.
func (s *Service) Failed(ctx context.Context, username string) error {
	if _, ok := s.Person(username); !ok {
		return nil
	}
	pol := s.o.Config().People
	now := s.now()
	return s.updatePerson(ctx, username, func(p *Person) error {
		p.Failed++
		if p.Failed >= pol.LockFailures {
			p.LockedUntil, p.Failed = now.Add(pol.LockDuration).UTC(), 0
		}
		return nil
	})
}

// Succeeded clears the failure count after a right password (a write only if needed).
func (s *Service) Succeeded(ctx context.Context, username string) error {
	if p, ok := s.Person(username); !ok || p.Failed == 0 {
		return nil
	}
	return s.updatePerson(ctx, username, func(p *Person) error { p.Failed = 0; return nil })
}

// Principal returns the principal of a person after their password was verified, or
// ErrDisabled, ErrLocked or ErrNotFound.
func (s *Service) Principal(username string) (Principal, error) {
	p, ok := s.Person(username)
	if !ok {
		return Principal{}, ErrNotFound
	}
	switch {
	case p.Disabled:
		return Principal{}, ErrDisabled
	case p.Locked(s.now()):
		return Principal{}, ErrLocked
	}
	return Principal{Username: p.Username, Org: p.Org, Customer: p.Customer, Role: p.Role, Person: true}, nil
}

// --- tokens ---

func tokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// IssueToken makes a token for username valid for people.token_ttl. Only the holder
// ever sees the token; the store keeps its SHA-256 (a token is 256 random bits, so a fast
// hash protects it as bcrypt protects a password).
func (s *Service) IssueToken(ctx context.Context, username string) (string, time.Time, error) {
	if _, err := s.Principal(username); err != nil {
		return "", time.Time{}, err
	}
	var b [32]byte
	rand.Read(b[:])
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	now := s.now().UTC()
	t := Token{Username: username, Issued: now, Expires: now.Add(s.o.Config().People.TokenTTL)}
	err := s.update(ctx, bucketTokens, tokenID(token), func([]byte) ([]byte, error) { return json.Marshal(&t) })
	return token, t.Expires, err
}

// VerifyToken checks a token presented with the username marker (user is the part before
// TokenUserSuffix) and returns its principal. It reads memory only.
func (s *Service) VerifyToken(user, token string) (Principal, error) {
	id := tokenID(token)
	t := s.snap.Load().tokens[id]
	if t == nil || t.Username != user || !s.now().Before(t.Expires) {
		return Principal{}, ErrBadToken
	}
	p, err := s.Principal(user)
	if err != nil {
		return Principal{}, err
	}
	p.TokenID, p.TokenExpires = id, t.Expires
	return p, nil
}

// RevokeTokens removes every token and web session of username and returns how many
// tokens there were.
func (s *Service) RevokeTokens(ctx context.Context, username string) (int, error) {
	n, changed := 0, false
	del := func(bucket, id string) error {
		changed = true
		if err := s.o.Backend.Update(ctx, bucket, id, func([]byte) ([]byte, error) { return nil, nil }); err != nil {
			return fmt.Errorf("%w: %w", ErrStore, err)
		}
		return nil
	}
	snap := s.snap.Load()
	for id, t := range snap.tokens {
		if t.Username == username {
			if err := del(bucketTokens, id); err != nil {
				return n, err
			}
			n++
		}
	}
	for id, se := range snap.sessions {
		if se.Username == username {
			if err := del(bucketSessions, id); err != nil {
				return n, err
			}
		}
	}
	if !changed {
		return 0, nil
	}
	return n, s.reload(ctx)
}

// RevokeToken removes one token (a logout); an unknown token is no error.
func (s *Service) RevokeToken(ctx context.Context, token string) error {
	return s.update(ctx, bucketTokens, tokenID(token), func([]byte) ([]byte, error) { return nil, nil })
}

// --- access modes, requests and grants ---

// SetMode sets a system's access mode (ModeAlways or ModeApproval); by names who did it.
func (s *Service) SetMode(ctx context.Context, customer, system, mode, by string) error {
	cfg := s.o.Config()
	c := cfg.Customer(customer)
	if c == nil || c.System(system) == nil || system == "" {
		return fmt.Errorf("system: %s-%s is not a system of the configuration", customer, system)
	}
	if mode != ModeAlways && mode != ModeApproval {
		return fmt.Errorf("mode: %q must be %s or %s", mode, ModeAlways, ModeApproval)
	}
	m := Mode{Customer: c.ID, System: c.System(system).Name, Mode: mode, By: by, Changed: s.now().UTC()}
	return s.update(ctx, bucketModes, modeKey(m.Customer, m.System), func([]byte) ([]byte, error) {
		if mode == ModeAlways {
			return nil, nil
		}
		return json.Marshal(&m)
	})
}

// activeGrant returns a grant for username on customer/system in force at now.
func (s *Service) activeGrant(customer, system, username string, now time.Time) *Grant {
	for _, g := range s.snap.Load().byGrantee[grantKey(customer, system, username)] {
		if g.Active(now) {
			return g
		}
	}
	return nil
}

func grantKey(customer, system, username string) string {
	return customer + "/" + system + "/" + username
}

// Authorize decides whether p may open a tunnel to customer/system (names as configured)
// now: ErrReadonly and ErrNotTechnician by role, ErrApproval when the system is in
// approval mode and p holds no grant in force (an access request is then recorded, once
// while one is pending). The organisation's reach is the caller's to check.
func (s *Service) Authorize(ctx context.Context, p Principal, customer, system, target string) error {
	switch {
	case p.Role == RoleReadonly:
		return ErrReadonly
	case p.Org == "" || (p.Role != RoleOperator && p.Role != RoleSupervisor):
		return ErrNotTechnician
	}
	if s.Mode(customer, system) != ModeApproval || s.activeGrant(customer, system, p.Username, s.now()) != nil {
		return nil
	}
	for _, r := range s.snap.Load().requests {
		if r.Customer == customer && r.System == system && r.Username == p.Username && r.State == StatePending {
			return ErrApproval
		}
	}
	var id [8]byte
	rand.Read(id[:])
	r := Request{ID: hex.EncodeToString(id[:]), Customer: customer, System: system, Username: p.Username,
		Org: p.Org, Target: target, At: s.now().UTC(), State: StatePending}
	if err := s.update(ctx, bucketRequests, r.ID, func([]byte) ([]byte, error) { return json.Marshal(&r) }); err != nil {
		s.log.Warn("people store: access request not recorded", "err", err.Error())
	}
	return ErrApproval
}

// Valid re-checks an open tunnel of p to customer/system: the person is still enabled,
// the token not revoked, and in approval mode a grant is still in force.
func (s *Service) Valid(p Principal, customer, system string) error {
	now := s.now()
	if p.Person {
		if _, err := s.Principal(p.Username); err != nil && !errors.Is(err, ErrLocked) {
			return err
		}
		if p.TokenID != "" && now.Before(p.TokenExpires) && s.snap.Load().tokens[p.TokenID] == nil {
			return ErrBadToken
		}
	}
	if s.Mode(customer, system) == ModeApproval && s.activeGrant(customer, system, p.Username, now) == nil {
		return ErrGrantEnded
	}
	return nil
}

// Grant answers a pending request with a grant from now for window (at most
// people.max_grant); by names the customer admin or operator.
func (s *Service) Grant(ctx context.Context, requestID string, window time.Duration, by string) (Grant, error) {
	max := s.o.Config().People.MaxGrant
	if window <= 0 || window > max {
		return Grant{}, fmt.Errorf("window: %v must be positive and at most people.max_grant (%v)", window, max)
	}
	r, err := s.answer(ctx, requestID, StateGranted, by)
	if err != nil {
		return Grant{}, err
	}
	return s.GrantDirect(ctx, r.Customer, r.System, r.Username, window, by, r.ID)
}

// GrantDirect grants username access to customer/system for window from now, without a
// request (requestID may be empty).
func (s *Service) GrantDirect(ctx context.Context, customer, system, username string, window time.Duration, by, requestID string) (Grant, error) {
	now := s.now().UTC()
	var id [8]byte
	rand.Read(id[:])
	g := Grant{ID: hex.EncodeToString(id[:]), Customer: customer, System: system, Username: username,
		From: now, Until: now.Add(window), By: by, RequestID: requestID}
	err := s.update(ctx, bucketGrants, g.ID, func([]byte) ([]byte, error) { return json.Marshal(&g) })
	return g, err
}

// Deny answers a pending request with no.
func (s *Service) Deny(ctx context.Context, requestID, by string) error {
	_, err := s.answer(ctx, requestID, StateDenied, by)
	return err
}

// RevokeGrant ends a grant now (its tunnels are cut through Subscribe).
func (s *Service) RevokeGrant(ctx context.Context, id string) error {
	return s.update(ctx, bucketGrants, id, func(old []byte) ([]byte, error) {
		if old == nil {
			return nil, errors.New("grant: no such grant")
		}
		return nil, nil
	})
}

// Request returns one access request.
func (s *Service) Request(id string) (Request, bool) {
	r := s.snap.Load().requests[id]
	if r == nil {
		return Request{}, false
	}
	return *r, true
}

func (s *Service) answer(ctx context.Context, id, state, by string) (Request, error) {
	var r Request
	err := s.update(ctx, bucketRequests, id, func(old []byte) ([]byte, error) {
		if old == nil {
			return nil, ErrNoRequest
		}
		if err := json.Unmarshal(old, &r); err != nil {
			return nil, err
		}
		if r.State != StatePending {
			return nil, fmt.Errorf("request %s: already %s", id, r.State)
		}
		r.State, r.By, r.Done = state, by, s.now().UTC()
		return json.Marshal(&r)
	})
	return r, err
}
