package proxy

import (
	"context"
	"errors"
	"time"
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

// sharedLockKey names the lock of one account for one client address: the same pair the
// local lockout locks, so a cluster locks out exactly whom one broker would.
func sharedLockKey(user, clientIP string) string { return user + "@" + clientIP }

// sharedLocked is the auth path's one look at the cluster's locks: a lock published by
// any broker refuses the pair here before any password check.
func (s *Server) sharedLocked(user, clientIP string) bool {
	if s.opts.SharedLocks == nil {
		return false
	}
	_, ok := s.opts.SharedLocks.Locked(sharedLockKey(user, clientIP))
	return ok
}

// shareLock publishes a lockout the local check just reported, once: afterwards
// sharedLocked refuses the pair before the local check runs.
func (s *Server) shareLock(user, clientIP string, err error) {
	if s.opts.SharedLocks == nil || !errors.Is(err, ErrLocked) || s.sharedLocked(user, clientIP) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if perr := s.opts.SharedLocks.PublishLock(ctx, sharedLockKey(user, clientIP), time.Now().Add(lockFor)); perr != nil {
		s.opts.Logger.Warn("lockout holds on this broker; the others learn of it when the store answers", "username", user, "client", clientIP, "err", perr.Error())
	}
}
