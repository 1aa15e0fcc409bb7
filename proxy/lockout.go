package proxy

import (
	"container/list"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"maintproxy/config"
)

// lockKey names a failure record: one account from one client address, or (addr zero) one
// account from everywhere.
type lockKey struct {
	user string
	addr netip.Prefix
}

func (k lockKey) account() bool { return !k.addr.IsValid() }

// recentFailures is how many distinct wrong credentials a record remembers: the same
// wrong password again (a stale saved password that a client retries) counts once.
const recentFailures = 3

type lockRecord struct {
	key    lockKey
	recent [][32]byte // the last wrong credentials (hashes), newest last
	count  int        // failures since start
	start  time.Time  // the window the count belongs to began here
	until  time.Time  // locked until; zero when not locked
	slow   *rate.Limiter
	elem   *list.Element
	inLock bool // elem is in lockout.locked, else in lockout.open
}

// lockout is the failure table. Its size is bounded: when full it first drops expired
// locks, then the record that failed least recently; an active lock is never dropped, so
// an attacker cannot clear their own lock by spraying. If the table is full of active
// locks, a new failure is not recorded (and counted), and admission control still limits
// how fast such failures can come.
type lockout struct {
	max     int
	records map[lockKey]*lockRecord
	open    list.List // unlocked records, least recently failed first
	locked  list.List // locked records, in the order they were locked
	// unrecorded counts failures the full table could not take.
	unrecorded int64
}

func newLockout(max int) *lockout {
	return &lockout{max: max, records: map[lockKey]*lockRecord{}}
}

// get returns k's record, dropping it if its lock is over.
func (l *lockout) get(k lockKey, now time.Time) *lockRecord {
	r := l.records[k]
	if r != nil && r.inLock && !now.Before(r.until) {
		l.remove(r)
		return nil
	}
	return r
}

// pairLocked reports whether user is locked for the client address addr.
func (l *lockout) pairLocked(user string, addr netip.Prefix, now time.Time) bool {
	r := l.get(lockKey{user, addr}, now)
	return r != nil && r.inLock
}

// dirty reports whether addr failed for user within the window (locked or not).
func (l *lockout) dirty(user string, addr netip.Prefix, now time.Time, p config.Lockout) bool {
	r := l.get(lockKey{user, addr}, now)
	return r != nil && (r.inLock || (r.count > 0 && now.Sub(r.start) < p.Window))
}

// accountGate decides, for an account locked everywhere, whether a check from addr may
// run: only from an address without failures on it, and only when the account's slow
// bucket has a token (take says whether to take it). An unlocked account always passes.
func (l *lockout) accountGate(user string, addr netip.Prefix, now time.Time, p config.Lockout, take bool) bool {
	r := l.get(lockKey{user: user}, now)
	if r == nil || !r.inLock {
		return true
	}
	if l.dirty(user, addr, now, p) {
		return false
	}
	if take {
		return r.slow.AllowN(now, 1)
	}
	return r.slow.TokensAt(now) >= 1
}

// fail records a wrong password for user from addr (cred is a hash of what was tried), and
// reports which locks it started.
func (l *lockout) fail(user string, addr netip.Prefix, cred [32]byte, now time.Time, p config.Lockout) (pairLock, accountLock bool) {
	pairLock = l.count(lockKey{user, addr}, cred, p.Failures, now, p)
	accountLock = l.count(lockKey{user: user}, cred, p.AccountFailures, now, p)
	return pairLock, accountLock
}

// count adds one failure to k unless cred is among its recent ones, and reports whether
// that started a lock.
func (l *lockout) count(k lockKey, cred [32]byte, threshold int, now time.Time, p config.Lockout) bool {
	r := l.get(k, now)
	if r == nil {
		if r = l.insert(k, now); r == nil {
			l.unrecorded++
			return false
		}
	}
	if r.inLock {
		return false // failures during a lock do not extend it
	}
	if now.Sub(r.start) >= p.Window {
		r.count, r.start, r.recent = 0, now, r.recent[:0]
	}
	if slices.Contains(r.recent, cred) {
		return false
	}
	if len(r.recent) == recentFailures {
		r.recent = append(r.recent[:0], r.recent[1:]...)
	}
	r.recent = append(r.recent, cred)
	r.count++
	if r.count < threshold {
		l.open.MoveToBack(r.elem)
		return false
	}
	l.open.Remove(r.elem)
	r.elem, r.inLock, r.until = l.locked.PushBack(r), true, now.Add(p.Duration)
	if k.account() {
		// Starts with one token: the owner's next login from a clean address goes through.
		r.slow = rate.NewLimiter(rate.Every(p.AccountInterval), 1)
	}
	return true
}

// succeed clears the record of user at addr after a correct password. The account-wide
// record stays: the spraying goes on whether or not the owner logs in.
func (l *lockout) succeed(user string, addr netip.Prefix) {
	if r := l.records[lockKey{user, addr}]; r != nil && !r.inLock {
		l.remove(r)
	}
}

func (l *lockout) insert(k lockKey, now time.Time) *lockRecord {
	if len(l.records) >= l.max {
		l.evict(now)
		if len(l.records) >= l.max {
			return nil
		}
	}
	r := &lockRecord{key: k, start: now}
	r.elem = l.open.PushBack(r)
	l.records[k] = r
	return r
}

// evict makes room: expired locks first (a bounded look at the oldest), then the record
// that failed least recently. Active locks stay.
func (l *lockout) evict(now time.Time) {
	e := l.locked.Front()
	for i := 0; e != nil && i < 64; i++ {
		next := e.Next()
		if r := e.Value.(*lockRecord); !now.Before(r.until) {
			l.remove(r)
		}
		e = next
	}
	if len(l.records) < l.max {
		return
	}
	if e := l.open.Front(); e != nil {
		l.remove(e.Value.(*lockRecord))
	}
}

func (l *lockout) remove(r *lockRecord) {
	if r.inLock {
		l.locked.Remove(r.elem)
	} else {
		l.open.Remove(r.elem)
	}
	delete(l.records, r.key)
}
