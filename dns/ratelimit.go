package dns

import (
	"net/netip"
	"sync"
	"time"
)

// rateVerdict is what the limiter says about one UDP response.
type rateVerdict int

const (
	rateAllow rateVerdict = iota
	rateSlip              // send a truncated empty reply instead
	rateDrop              // send nothing
)

// rateLimiter is a token bucket per client network: rate tokens per second, a burst of
// one second's worth. Keying on the network, not the address, stops a flood spread over
// a victim's neighbours as well (BIND's response-rate-limiting does the same).
type rateLimiter struct {
	rate float64
	now  func() time.Time

	mu      sync.Mutex
	buckets map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
	over   uint64 // responses refused since the bucket last had a token
}

func newRateLimiter(rate float64, now func() time.Time) *rateLimiter {
	return &rateLimiter{rate: rate, now: now, buckets: map[netip.Prefix]*bucket{}}
}

// clientNet is the rate-limited unit for ip: its /24 (IPv4) or /56 (IPv6).
func clientNet(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 56
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p
}

// take spends a token for one response to ip. Without a token, every second response
// slips through truncated and the others are dropped.
func (l *rateLimiter) take(ip netip.Addr) rateVerdict {
	now := l.now()
	key := clientNet(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= dnsMaxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: l.rate, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		b.over = 0
		return rateAllow
	}
	b.over++
	if b.over%2 == 1 {
		return rateSlip
	}
	return rateDrop
}

// prune forgets buckets that have refilled (they hold no state worth keeping); if the
// map is still full, it starts over rather than grow without bound.
func (l *rateLimiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.rate {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= dnsMaxBuckets {
		clear(l.buckets)
	}
}
