// Package guard keeps floods of credential checks from starving the broker: admission
// control in front of every slow check (a token bucket per client address and a bounded
// number of checks at once, with a short bounded queue), a cache of verified credentials
// so the genuine skip the slow check, and sampling of refusal logs so a flood cannot fill
// the disk. It is shared by the proxy's password checks and the agent endpoint's logins.
package guard

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"maintproxy/config"
)

// ErrBusy means a check was refused before it started: the client's address used up its
// rate, or every slot and the queue were taken. Errors returned by Admit match it with
// errors.Is and carry the wait the client should honour (see Refusal).
var ErrBusy = errors.New("too many credential checks right now")

// Refusal is an admission refusal.
type Refusal struct {
	// Reason is "rate" (this client address checks too often) or "busy" (every slot and
	// the queue are taken), both answered at once, or "timeout" (no slot came free within
	// MaxWait in the queue).
	Reason string
	// Wait is how long the client should wait before trying again.
	Wait time.Duration
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("%v (%s); try again in %d s", ErrBusy, r.Reason, r.RetrySeconds())
}

// Is makes errors.Is(r, ErrBusy) true.
func (r *Refusal) Is(target error) bool { return target == ErrBusy }

// RetryAfter is the wait the client should honour.
func (r *Refusal) RetryAfter() time.Duration { return r.Wait }

// RetrySeconds is Wait in whole seconds, at least 1, for a Retry-After header.
func (r *Refusal) RetrySeconds() int { return max(1, int(math.Ceil(r.Wait.Seconds()))) }

// Settings shape an Admission; zero fields take the defaults in parentheses.
type Settings struct {
	// Rate is how many slow checks per second one client address may start (0.5).
	Rate float64
	// Burst is how many it may start at once after a quiet spell (10).
	Burst int
	// Concurrent bounds the checks running at once (1).
	Concurrent int
	// Queue bounds the checks waiting for a slot (4 × Concurrent); a check beyond it is
	// refused at once.
	Queue int
	// MaxWait bounds how long a queued check waits for a slot (1 s): long enough for a
	// few bcrypt checks ahead of it, short enough that nobody waits behind a flood.
	MaxWait time.Duration
	// MaxAddresses bounds the per-address table (65536; about 200 bytes each). Addresses
	// idle long enough to have a full bucket again go first, then the least recently seen.
	MaxAddresses int
}

func (s Settings) withDefaults() Settings {
	if s.Rate <= 0 {
		s.Rate = 0.5
	}
	s.Burst = max(s.Burst, 1)
	s.Concurrent = max(s.Concurrent, 1)
	if s.Queue <= 0 {
		s.Queue = 4 * s.Concurrent
	}
	if s.MaxWait <= 0 {
		s.MaxWait = time.Second
	}
	if s.MaxAddresses <= 0 {
		s.MaxAddresses = 1 << 16
	}
	return s
}

// FromConfig turns the configuration's limits.auth into Settings.
func FromConfig(l config.AuthLimits) Settings {
	return Settings{Rate: float64(l.PerMinute) / 60, Burst: l.Burst, Concurrent: l.Concurrent}
}

// Stats are an Admission's counters since it was made.
type Stats struct {
	Admitted    int64 // checks that got a slot
	RateLimited int64 // refused: the client address used up its rate
	Shed        int64 // refused: every slot and the queue were taken, or the wait ran out
	Evicted     int64 // addresses dropped from the full table while not idle
	Addresses   int64 // addresses in the table now
	Running     int64 // checks running now
	Waiting     int64 // checks queued now
}

// Admission decides whether a slow credential check may start. Settings are read on each
// call, so a configuration reload applies to the next check.
type Admission struct {
	settings func() Settings
	now      func() time.Time

	mu      sync.Mutex
	addrs   map[netip.Prefix]*list.Element
	lru     list.List // of *addrEntry, least recently used first
	running int
	waiters list.List // of *waiter, first come first served

	admitted, rateLimited, shed, evicted atomic.Int64
}

type addrEntry struct {
	key  netip.Prefix
	lim  *rate.Limiter
	used time.Time
}

type waiter struct {
	ready   chan struct{}
	granted bool
	elem    *list.Element
}

// New returns an Admission; now may be nil for the real clock (it drives the per-address
// rates; the queue's MaxWait is always real time).
func New(settings func() Settings, now func() time.Time) *Admission {
	if now == nil {
		now = time.Now
	}
	return &Admission{settings: settings, now: now, addrs: map[netip.Prefix]*list.Element{}}
}

// Admit asks for one slow check from addr. It returns at once when the address is over its
// rate or the queue is full, and after at most MaxWait otherwise. On success the caller
// must call release when the check is done.
func (a *Admission) Admit(addr netip.Prefix) (release func(), err error) {
	s := a.settings().withDefaults()
	now := a.now()
	a.mu.Lock()
	res := a.limiter(addr, now, s).ReserveN(now, 1)
	if d := res.DelayFrom(now); !res.OK() || d > 0 {
		res.CancelAt(now)
		a.mu.Unlock()
		a.rateLimited.Add(1)
		return nil, &Refusal{Reason: "rate", Wait: d}
	}
	if a.running < s.Concurrent {
		a.running++
		a.mu.Unlock()
		a.admitted.Add(1)
		return a.releaser(), nil
	}
	if a.waiters.Len() >= s.Queue {
		// Nobody waits beyond the queue: give the token back, the check never ran.
		res.CancelAt(now)
		a.mu.Unlock()
		a.shed.Add(1)
		return nil, &Refusal{Reason: "busy", Wait: time.Second}
	}
	w := &waiter{ready: make(chan struct{})}
	w.elem = a.waiters.PushBack(w)
	a.mu.Unlock()

	t := time.NewTimer(s.MaxWait)
	defer t.Stop()
	select {
	case <-w.ready:
	case <-t.C:
		a.mu.Lock()
		granted := w.granted
		if !granted {
			a.waiters.Remove(w.elem)
		}
		a.mu.Unlock()
		if !granted {
			a.shed.Add(1)
			return nil, &Refusal{Reason: "timeout", Wait: time.Second}
		}
	}
	a.admitted.Add(1)
	return a.releaser(), nil
}

// releaser hands the slot to the first waiter, or frees it; calling it twice is harmless.
func (a *Admission) releaser() func() {
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			return
		}
		concurrent := a.settings().withDefaults().Concurrent
		a.mu.Lock()
		defer a.mu.Unlock()
		if e := a.waiters.Front(); e != nil && a.running <= concurrent {
			w := a.waiters.Remove(e).(*waiter)
			w.granted = true
			close(w.ready)
			return
		}
		a.running--
	}
}

// Throttled returns a Refusal if addr has used up its rate, without taking anything: for
// checks too cheap to need a slot, which Charge only when they fail.
func (a *Admission) Throttled(addr netip.Prefix) error {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.addrs[addr]
	if e == nil {
		return nil
	}
	ent := e.Value.(*addrEntry)
	if tok := ent.lim.TokensAt(now); tok < 1 {
		a.rateLimited.Add(1)
		wait := time.Duration((1 - tok) / float64(ent.lim.Limit()) * float64(time.Second))
		return &Refusal{Reason: "rate", Wait: wait}
	}
	return nil
}

// Charge takes one of addr's tokens, if it has one: a cheap check that failed.
func (a *Admission) Charge(addr netip.Prefix) {
	s := a.settings().withDefaults()
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.limiter(addr, now, s).AllowN(now, 1)
}

// limiter returns addr's bucket, making room in the table for a new one. a.mu is held.
func (a *Admission) limiter(addr netip.Prefix, now time.Time, s Settings) *rate.Limiter {
	if e := a.addrs[addr]; e != nil {
		ent := e.Value.(*addrEntry)
		ent.used = now
		a.lru.MoveToBack(e)
		if ent.lim.Limit() != rate.Limit(s.Rate) || ent.lim.Burst() != s.Burst {
			ent.lim.SetLimitAt(now, rate.Limit(s.Rate))
			ent.lim.SetBurstAt(now, s.Burst)
		}
		return ent.lim
	}
	// An address idle for Burst/Rate has a full bucket again, like a new one: drop it.
	idle := time.Duration(float64(s.Burst) / s.Rate * float64(time.Second))
	for e := a.lru.Front(); e != nil; e = a.lru.Front() {
		ent := e.Value.(*addrEntry)
		if now.Sub(ent.used) < idle && len(a.addrs) < s.MaxAddresses {
			break
		}
		if now.Sub(ent.used) < idle {
			a.evicted.Add(1)
		}
		a.lru.Remove(e)
		delete(a.addrs, ent.key)
	}
	ent := &addrEntry{key: addr, lim: rate.NewLimiter(rate.Limit(s.Rate), s.Burst), used: now}
	a.addrs[addr] = a.lru.PushBack(ent)
	return ent.lim
}

// Stats returns the counters.
func (a *Admission) Stats() Stats {
	a.mu.Lock()
	n, running, waiting := len(a.addrs), a.running, a.waiters.Len()
	a.mu.Unlock()
	return Stats{Admitted: a.admitted.Load(), RateLimited: a.rateLimited.Load(), Shed: a.shed.Load(),
		Evicted: a.evicted.Load(), Addresses: int64(n), Running: int64(running), Waiting: int64(waiting)}
}

// AddrKey is the key a client address is limited under: the address itself for IPv4, its
// /64 for IPv6 (one subscriber's usual allocation). Unparseable input maps to one shared
// key.
func AddrKey(ip string) netip.Prefix {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// maxPause caps Pause: enough to slow a flood down one connection to a trickle, short
// enough not to hold up a shutdown.
const maxPause = 2 * time.Second

// Refuse answers an admission refusal with status (429 or 503), Retry-After and text,
// then pauses the connection (see Pause).
func Refuse(w http.ResponseWriter, r *http.Request, status int, text string, ref *Refusal) {
	h := w.Header()
	h.Set("Retry-After", strconv.Itoa(ref.RetrySeconds()))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(text)+1))
	w.WriteHeader(status)
	io.WriteString(w, text+"\n")
	Pause(w, r, ref.RetryAfter())
}

// Pause holds a refused client's connection before its next request is read, for the
// Retry-After it was given (at most 2 s). The refusal has gone out whole at once (its
// Content-Length must be set, or the end of its body would wait too); a client that
// honours Retry-After never notices, and one that ignores it can send no faster than one
// request per pause down each connection, at the cost of a sleeping goroutine. It returns
// early when the client goes away.
func Pause(w http.ResponseWriter, r *http.Request, d time.Duration) {
	http.NewResponseController(w).Flush()
	t := time.NewTimer(min(d, maxPause))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}
