package proxy

import (
	"context"
	"time"

	"maintproxy/internal/guard"
)

// SharedLocks shares lockouts between the brokers of a cluster, so that a client address
// locked out of an account on one broker is locked out on all. Nil for a single broker.
type SharedLocks interface {
	// Locked reports whether key is locked, and until when; it must read memory only.
	Locked(key string) (until time.Time, ok bool)
	// PublishLock locks key until the given time on every broker; it takes effect on this
	// one at once.
	PublishLock(ctx context.Context, key string, until time.Time) error
}

// publishTimeout bounds the wait for the store to take a lock; the lock holds on this
// broker at once either way and reaches the others when the store answers.
const publishTimeout = time.Second

// sharedLockKey names the lock of one account for one client address (an IPv6 address
// counts by its /64, as in the local lockout): the pair the local lockout locks, so a
// cluster locks out exactly whom one broker would.
func sharedLockKey(user, clientIP string) string {
	return user + "@" + guard.AddrKey(clientIP).String()
}

// PairLocked reports whether the local lockout has locked username for the client address.
func (a *Auth) PairLocked(username, clientIP string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lock.pairLocked(username, guard.AddrKey(clientIP), a.now())
}

// sharedLocked is the auth path's one look at the cluster's locks: a lock published by
// any broker refuses the pair here before any password check.
func (s *Server) sharedLocked(user, clientIP string) bool {
	if s.opts.SharedLocks == nil {
		return false
	}
	_, ok := s.opts.SharedLocks.Locked(sharedLockKey(user, clientIP))
	return ok
}

// shareLock publishes the lock a failed check has just set on this broker, once; from then
// on sharedLocked refuses the pair everywhere before the local check runs. The softer
// lock of an account for all addresses stays per broker (see README).
func (s *Server) shareLock(user, clientIP string, err error) {
	if s.opts.SharedLocks == nil || err == nil || !s.opts.Auth.PairLocked(user, clientIP) || s.sharedLocked(user, clientIP) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	until := time.Now().Add(s.opts.Config().Limits.Lockout.Duration)
	if perr := s.opts.SharedLocks.PublishLock(ctx, sharedLockKey(user, clientIP), until); perr != nil {
		s.opts.Logger.Warn("lockout holds on this broker; the others learn of it when the store answers", "username", user, "client", clientIP, "err", perr.Error())
	}
}
