package tunnel

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// Identity names one customer system; both parts are lower case, System is never empty.
type Identity struct {
	Customer string
	System   string
}

func (id Identity) String() string { return id.Customer + "/" + id.System }

// NewIdentity builds an Identity from names in any case.
func NewIdentity(customer, system string) Identity {
	return Identity{Customer: strings.ToLower(customer), System: strings.ToLower(system)}
}

// Status is what the broker knows about one system's agent.
type Status struct {
	Online bool
	// Since is when the current session started (online) or the last one ended (offline);
	// zero when the system has never connected since the broker started.
	Since time.Time
	// Remote is the agent's address as seen by the broker (online only).
	Remote string
	// Policy is the last policy the agent reported (zero if it never connected).
	Policy Policy
	// Tunnels is the number of open tunnels through the system.
	Tunnels int64
}

// Registry maps each customer system to its one live agent session.
type Registry struct {
	mu      sync.Mutex
	live    map[Identity]*Session
	offline map[Identity]offlineInfo

	// hookMu orders the calls of onChange: a session's "up" always comes before its "down",
	// even when a newer session replaces it at the same moment.
	hookMu   sync.Mutex
	onChange func(s *Session, up bool)
}

// OnChange sets f to be called whenever a session becomes the live session of its system
// (up) and when it stops being it (down: closed, or replaced by a newer one); up is called
// again for the live session when its agent reports a changed policy. Calls are
// made one at a time, in order, outside the registry's lock; f must not block (cluster
// mode publishes presence from it). Set it before serving agents.
func (r *Registry) OnChange(f func(s *Session, up bool)) {
	r.hookMu.Lock()
	defer r.hookMu.Unlock()
	r.onChange = f
}

type offlineInfo struct {
	since  time.Time
	policy Policy
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{live: map[Identity]*Session{}, offline: map[Identity]offlineInfo{}}
}

// Get returns the live session of id, or nil.
func (r *Registry) Get(id Identity) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live[id]
}

// Status reports the state of one system.
func (r *Registry) Status(id Identity) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.live[id]; s != nil {
		return Status{Online: true, Since: s.since, Remote: s.remote, Policy: s.Policy(), Tunnels: s.active.Load()}
	}
	off := r.offline[id]
	return Status{Since: off.since, Policy: off.policy}
}

// register makes s the live session of its identity and returns the one it replaces.
func (r *Registry) register(s *Session) *Session {
	r.hookMu.Lock()
	defer r.hookMu.Unlock()
	r.mu.Lock()
	old := r.live[s.id]
	r.live[s.id] = s
	delete(r.offline, s.id)
	r.mu.Unlock()
	if r.onChange != nil {
		if old != nil {
			r.onChange(old, false)
		}
		r.onChange(s, true)
	}
	return old
}

// policyChanged puts p in force for s and, if s is its system's live session, tells the
// OnChange hook (up again), so that whatever publishes the switches follows.
func (r *Registry) policyChanged(s *Session, p Policy) {
	r.hookMu.Lock()
	defer r.hookMu.Unlock()
	s.setPolicy(p)
	r.mu.Lock()
	live := r.live[s.id] == s
	r.mu.Unlock()
	if live && r.onChange != nil {
		r.onChange(s, true)
	}
}

// unregister removes s if it is still the live session of its identity.
func (r *Registry) unregister(s *Session, at time.Time) {
	r.hookMu.Lock()
	defer r.hookMu.Unlock()
	r.mu.Lock()
	was := r.live[s.id] == s
	if was {
		delete(r.live, s.id)
		r.offline[s.id] = offlineInfo{since: at, policy: s.Policy()}
	}
	r.mu.Unlock()
	if was && r.onChange != nil {
		r.onChange(s, false)
	}
}

// Sessions returns the live sessions (for a broker that hands its agents to others).
func (r *Registry) Sessions() []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Session, 0, len(r.live))
	for _, s := range r.live {
		out = append(out, s)
	}
	return out
}

// Prune closes every live session for which keep returns false, e.g. after a system was
// removed from the configuration or its agent secret changed.
func (r *Registry) Prune(keep func(id Identity, secretHash string) bool) {
	r.mu.Lock()
	var drop []*Session
	for id, s := range r.live {
		if !keep(id, s.secretHash) {
			drop = append(drop, s)
		}
	}
	r.mu.Unlock()
	for _, s := range drop {
		s.Close()
	}
}

// Len returns the number of live sessions.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// Since is when the session was established.
func (s *Session) Since() time.Time { return s.since }

// ID names the session among this broker's sessions of its system (cluster presence keys
// it so): the nanosecond it was established, which two sessions of one system never share.
func (s *Session) ID() string { return strconv.FormatInt(s.since.UnixNano(), 36) }
