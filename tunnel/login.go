package tunnel

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"maintproxy/config"
	"maintproxy/internal/guard"
)

// Agent login tuning.
const (
	// loginCacheTTL: a bcrypt agent secret verified once is trusted for this long without
	// bcrypt; the entry is tied to the configured hash, so a changed secret stops matching.
	loginCacheTTL = time.Hour
	// loginCacheMax covers the largest fleets with room to spare (about 150 bytes each).
	loginCacheMax = 50_000
	loginLogBurst = 10
	loginLogEvery = time.Minute
)

// errWrongSecret and errUnknownSystem are agent login refusals (401); a refusal by
// admission control matches guard.ErrBusy (503 with Retry-After).
var (
	errNoCredentials = errors.New("no credentials")
	errBadUser       = errors.New("user name is not customer/system")
	errUnknownSystem = errors.New("unknown customer/system")
	errWrongSecret   = errors.New("wrong secret")
)

// LoginStats are the agent endpoint's login counters since start (for metrics).
type LoginStats struct {
	OK      int64 // logins accepted with an hmac-sha256 secret
	Cached  int64 // bcrypt secrets accepted from the cache
	Slow    int64 // bcrypt secrets checked (admitted by admission control)
	Refused int64 // wrong secret, unknown system or malformed credentials (401)
	Shed    int64 // refused by admission control (503 with Retry-After)
	Guard   guard.Stats
}

// loginState is the Server's login machinery, made by NewServer.
type loginState struct {
	cache   *guard.Cache
	sampler *guard.Sampler

	ok, cached, slow, refused, shed atomic.Int64
}

func newLoginState() loginState {
	return loginState{cache: guard.NewCache(loginCacheTTL, loginCacheMax), sampler: guard.NewSampler(loginLogBurst, loginLogEvery, nil)}
}

// LoginStats returns the login counters.
func (s *Server) LoginStats() LoginStats {
	l := &s.login
	return LoginStats{OK: l.ok.Load(), Cached: l.cached.Load(), Slow: l.slow.Load(), Refused: l.refused.Load(),
		Shed: l.shed.Load(), Guard: s.admission.Stats()}
}

// authenticate verifies the agent's Basic credentials.
//
// An hmac-sha256 secret (or an unknown system) is checked at once: that costs microseconds,
// less than the TLS handshake before it. Only a wrong secret costs the client address a
// token, and an address out of tokens is refused before any check: the genuine fleet is
// never slowed, a guesser is. A bcrypt secret is looked up in the cache of verified
// secrets first; otherwise it needs a slot from admission control, which refuses at once
// rather than queue without bound.
func (s *Server) authenticate(r *http.Request) (Identity, error) {
	user, secret, ok := r.BasicAuth()
	if !ok {
		return Identity{}, errNoCredentials
	}
	customer, system, ok := strings.Cut(user, "/")
	id := NewIdentity(customer, system)
	if !ok || id.Customer == "" || id.System == "" {
		return id, errBadUser
	}
	addr := guard.AddrKey(remoteIP(r.RemoteAddr))
	hash, known := s.SecretHash(id)
	if !known || config.FastHash(hash) {
		if err := s.admission.Throttled(addr); err != nil {
			return id, err
		}
		if !config.VerifyAgentSecret(hash, secret) {
			s.admission.Charge(addr)
			if !known {
				return id, errUnknownSystem
			}
			return id, errWrongSecret
		}
		s.login.ok.Add(1)
		return id, nil
	}
	key := guard.Key(id.Customer, id.System, secret)
	fresh, seen := s.login.cache.Lookup(key, hash, time.Now())
	if fresh {
		s.login.cached.Add(1)
		return id, nil
	}
	if !seen {
		release, err := s.admission.Admit(addr)
		if err != nil {
			return id, err
		}
		defer release()
	}
	s.login.slow.Add(1)
	var right bool
	guard.Background(func() { right = config.VerifySecret(hash, secret) })
	if !right {
		return id, errWrongSecret
	}
	s.login.cache.Add(key, hash, time.Now())
	return id, nil
}

// LoginRefused is one refused agent login, as the status pages tell it.
type LoginRefused struct {
	ID Identity
	// Known is true when the configuration has the system: only then is the refusal
	// kept on the system's own status.
	Known bool
	// Reason is the manual's words: "Invalid credentials" (wrong secret), "Account
	// temporarily locked" (too many wrong secrets from the agent's address), "Authorization
	// failed" (unknown customer/system or malformed credentials).
	Reason string
	// Detail is the broker's own reason ("wrong secret", "unknown customer/system", …).
	Detail string
	Remote string
	At     time.Time
}

// The refusal reasons of LoginRefused, in the manual's words.
const (
	RefusedInvalid = "Invalid credentials"
	RefusedLocked  = "Account temporarily locked"
	RefusedAuth    = "Authorization failed"
)

// observeRefusal tells the login observer of a refusal that is the agent's doing.
func (s *Server) observeRefusal(r *http.Request, id Identity, err error) {
	if s.onRefused == nil {
		return
	}
	reason := RefusedAuth
	var busy *guard.Refusal
	switch {
	case errors.As(err, &busy):
		if busy.Reason != "rate" {
			return // the broker's load, not the agent's doing
		}
		reason = RefusedLocked
	case errors.Is(err, errWrongSecret):
		reason = RefusedInvalid
	}
	_, known := s.SecretHash(id)
	if id.Customer == "" || id.System == "" {
		known = false
	}
	s.onRefused(LoginRefused{ID: id, Known: known, Reason: reason, Detail: err.Error(), Remote: remoteIP(r.RemoteAddr), At: time.Now()})
}

// refuseLogin answers a refused login: 503 with Retry-After when admission control said
// no, else 401. Log records are sampled so that a flood cannot fill the disk.
func (s *Server) refuseLogin(w http.ResponseWriter, r *http.Request, id Identity, err error) {
	s.observeRefusal(r, id, err)
	var busy *guard.Refusal
	if errors.As(err, &busy) {
		s.login.shed.Add(1)
		s.logRefusal("busy", r, id, err)
		guard.Refuse(w, r, http.StatusServiceUnavailable, "the broker is busy checking agent logins: "+err.Error(), busy)
		return
	}
	s.login.refused.Add(1)
	s.logRefusal("refused", r, id, err)
	w.Header().Set("WWW-Authenticate", `Basic realm="maintagent"`)
	http.Error(w, "agent authentication failed: check customer, system and secret in the agent's configuration", http.StatusUnauthorized)
}

func (s *Server) logRefusal(reason string, r *http.Request, id Identity, err error) {
	ok, suppressed := s.login.sampler.Allow(reason)
	if !ok {
		return
	}
	s.Logger.Warn("agent login refused", "remote", r.RemoteAddr, "identity", id.String(), "reason", err.Error(),
		"suppressed_since_last", suppressed)
}

func remoteIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}
