package guard

import (
	"crypto/sha256"
	"sync"
	"time"
)

// Cache remembers credentials that passed a slow check, under a SHA-256 of what was
// checked, tied to the hash they were checked against: a changed or removed hash stops
// matching at once, and the cache never holds a password.
type Cache struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[[32]byte]cacheEntry
}

type cacheEntry struct {
	hash     string
	verified time.Time
}

// NewCache returns a cache whose entries are fresh for ttl and which holds at most max.
func NewCache(ttl time.Duration, max int) *Cache {
	return &Cache{ttl: ttl, max: max, m: map[[32]byte]cacheEntry{}}
}

// Key is the cache key of the parts of a credential (e.g. username, password and client
// address); parts are length-prefixed so that no two lists share a key.
func Key(parts ...string) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		l := len(p)
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write([]byte(p))
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// Lookup reports whether key was verified against hash within the TTL (fresh), or at all
// while it is still held (known). A known but stale credential was right once against the
// very same hash, so it may skip admission control, though it is checked again.
func (c *Cache) Lookup(key [32]byte, hash string, now time.Time) (fresh, known bool) {
	if hash == "" {
		return false, false
	}
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if !ok || e.hash != hash {
		return false, false
	}
	return now.Sub(e.verified) < c.ttl, true
}

// Add records that key was verified against hash at now.
func (c *Cache) Add(key [32]byte, hash string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		c.evict(now)
	}
	c.m[key] = cacheEntry{hash: hash, verified: now}
}

// evict drops entries long past their TTL, or else the oldest one. Only successful slow
// checks add entries, so this runs at most a few times per second.
func (c *Cache) evict(now time.Time) {
	var oldest [32]byte
	var oldestAt time.Time
	for k, e := range c.m {
		if now.Sub(e.verified) > 12*c.ttl {
			delete(c.m, k)
			continue
		}
		if oldestAt.IsZero() || e.verified.Before(oldestAt) {
			oldest, oldestAt = k, e.verified
		}
	}
	if len(c.m) >= c.max {
		delete(c.m, oldest)
	}
}

// Reset drops every entry, e.g. after the accounts changed.
func (c *Cache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}

// Len is the number of entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
