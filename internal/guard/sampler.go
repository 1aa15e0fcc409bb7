package guard

import (
	"sync"
	"time"
)

// Sampler lets at most N log records per reason through in each interval and counts the
// rest, so that a flood of refusals costs a few lines a minute instead of the disk. Reasons
// are a small fixed set chosen by the caller (never user input), which bounds its memory.
type Sampler struct {
	n     int
	every time.Duration
	now   func() time.Time

	mu sync.Mutex
	m  map[string]*sample
}

type sample struct {
	start      time.Time
	logged     int
	suppressed int
}

// NewSampler lets n records per reason through every interval; now may be nil.
func NewSampler(n int, every time.Duration, now func() time.Time) *Sampler {
	if now == nil {
		now = time.Now
	}
	return &Sampler{n: n, every: every, now: now, m: map[string]*sample{}}
}

// Allow reports whether a record for reason may be logged now. When it may, suppressed is
// how many were held back since the last one that was, for the caller to log with it.
func (s *Sampler) Allow(reason string) (ok bool, suppressed int) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.m[reason]
	if p == nil {
		p = &sample{start: now}
		s.m[reason] = p
	}
	if now.Sub(p.start) >= s.every {
		p.start, p.logged = now, 0
	}
	if p.logged >= s.n {
		p.suppressed++
		return false, 0
	}
	p.logged++
	suppressed, p.suppressed = p.suppressed, 0
	return true, suppressed
}
