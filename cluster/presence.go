package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// AgentInfo is what a broker publishes about one agent session it holds.
type AgentInfo struct {
	// Since is when the session was established.
	Since time.Time `json:"since"`
	// Switches is the agent's reported policy (remote access, services, tunnels), opaque here.
	Switches json.RawMessage `json:"switches,omitempty"`
}

// Holder is one broker's session with an agent.
type Holder struct {
	Node string
	// PeerAddr is where to reach Node over the peer link; empty if the directory does not
	// know it (yet).
	PeerAddr  string
	SessionID string
	Since     time.Time
	Switches  json.RawMessage
}

// presenceValue is the stored form.
type presenceValue struct {
	Node     string          `json:"node"`
	Session  string          `json:"session"`
	Since    time.Time       `json:"since"`
	Switches json.RawMessage `json:"switches,omitempty"`
}

// Presence is the cluster's view of which broker holds which agent session.
type Presence struct {
	s  *Store
	mu sync.RWMutex
	// systems maps "customer/system" → "node/session" → entry.
	systems map[string]map[string]presenceValue
}

func newPresence(s *Store) *Presence {
	return &Presence{s: s, systems: map[string]map[string]presenceValue{}}
}

// Presence returns the agent presence registry.
func (s *Store) Presence() *Presence { return s.presence }

func normID(customer, system, session string) (string, string, error) {
	customer, system = strings.ToLower(customer), strings.ToLower(system)
	if customer == "" || system == "" || session == "" {
		return "", "", errors.New("cluster: presence needs a customer, a system and a session id")
	}
	return customer, system, nil
}

// Add publishes that this broker holds an agent session, under the broker's lease, and waits
// until etcd has it or ctx ends. An error leaves the session published as soon as the store
// answers again (no retry needed); it only says the others do not see it yet.
func (p *Presence) Add(ctx context.Context, customer, system, sessionID string, info AgentInfo) error {
	customer, system, err := normID(customer, system, sessionID)
	if err != nil {
		return err
	}
	if len(info.Switches) > 0 && !json.Valid(info.Switches) {
		return errors.New("cluster: presence switches must be JSON")
	}
	val, err := json.Marshal(presenceValue{Node: p.s.opts.Node, Session: sessionID, Since: info.Since, Switches: info.Switches})
	if err != nil {
		return err
	}
	if len(val) > maxOwnedValue {
		return fmt.Errorf("%w: presence of %d bytes (at most %d)", ErrTooLarge, len(val), maxOwnedValue)
	}
	key := p.s.keys.presenceKey(customer, system, p.s.opts.Node, sessionID)
	return p.s.owned.wait(ctx, p.s.owned.set(key, string(val), false))
}

// Remove withdraws a session published with Add, like Add waiting until etcd has it.
func (p *Presence) Remove(ctx context.Context, customer, system, sessionID string) error {
	customer, system, err := normID(customer, system, sessionID)
	if err != nil {
		return err
	}
	key := p.s.keys.presenceKey(customer, system, p.s.opts.Node, sessionID)
	return p.s.owned.wait(ctx, p.s.owned.set(key, "", true))
}

// Holders lists the sessions the cluster knows for customer/system, oldest first, this
// broker's own included (Node == Store.Node()). It reads memory only.
func (p *Presence) Holders(customer, system string) []Holder {
	p.mu.RLock()
	m := p.systems[strings.ToLower(customer)+"/"+strings.ToLower(system)]
	out := make([]Holder, 0, len(m))
	for _, v := range m {
		out = append(out, Holder{Node: v.Node, SessionID: v.Session, Since: v.Since, Switches: v.Switches})
	}
	p.mu.RUnlock()
	for i := range out {
		if b, ok := p.s.dir.Lookup(out[i].Node); ok {
			out[i].PeerAddr = b.PeerAddr
		}
	}
	slices.SortFunc(out, func(a, b Holder) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Node+"/"+a.SessionID, b.Node+"/"+b.SessionID)
	})
	return out
}

// Online reports whether any broker holds customer/system.
func (p *Presence) Online(customer, system string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.systems[strings.ToLower(customer)+"/"+strings.ToLower(system)]) > 0
}

// Systems returns the online systems of customer with their holders (for the access page).
func (p *Presence) Systems(customer string) map[string][]Holder {
	prefix := strings.ToLower(customer) + "/"
	p.mu.RLock()
	var names []string
	for k := range p.systems {
		if sys, ok := strings.CutPrefix(k, prefix); ok && len(p.systems[k]) > 0 {
			names = append(names, sys)
		}
	}
	p.mu.RUnlock()
	out := make(map[string][]Holder, len(names))
	for _, sys := range names {
		if h := p.Holders(customer, sys); len(h) > 0 {
			out[sys] = h
		}
	}
	return out
}

// Counts returns the number of agent sessions each broker holds.
func (p *Presence) Counts() map[string]int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := map[string]int{}
	for _, m := range p.systems {
		for _, v := range m {
			out[v.Node]++
		}
	}
	return out
}

func (p *Presence) watch() *watch {
	prefix := p.s.keys.presence()
	return &watch{name: "presence", key: prefix, prefix: true,
		reset: func(kvs []*mvccpb.KeyValue, _ int64) {
			systems := map[string]map[string]presenceValue{}
			for _, kv := range kvs {
				if sys, id, v, ok := decodePresence(prefix, kv); ok {
					if systems[sys] == nil {
						systems[sys] = map[string]presenceValue{}
					}
					systems[sys][id] = v
				}
			}
			p.mu.Lock()
			p.systems = systems
			p.mu.Unlock()
		},
		event: func(ev *clientv3.Event) {
			sys, id, v, ok := decodePresence(prefix, ev.Kv)
			if !ok {
				return
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if ev.Type == clientv3.EventTypeDelete {
				delete(p.systems[sys], id)
				if len(p.systems[sys]) == 0 {
					delete(p.systems, sys)
				}
				return
			}
			if p.systems[sys] == nil {
				p.systems[sys] = map[string]presenceValue{}
			}
			p.systems[sys][id] = v
		},
	}
}

// decodePresence parses a presence key (and value, when there is one). Node and session
// come from the key, so a delete event, which has no value, still says what went away.
func decodePresence(prefix string, kv *mvccpb.KeyValue) (sys, id string, v presenceValue, ok bool) {
	parts, ok := split(string(kv.Key), prefix, 4)
	if !ok {
		return "", "", v, false
	}
	if len(kv.Value) > 0 && json.Unmarshal(kv.Value, &v) != nil {
		return "", "", v, false
	}
	v.Node, v.Session = parts[2], parts[3]
	return parts[0] + "/" + parts[1], parts[2] + "/" + parts[3], v, true
}
