package tunnel

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"maintproxy/config"
)

// policyState is the agent's policy in force and the tunnels it serves under it, so that
// a changed policy ends at once the tunnels it no longer allows ("off means off").
type policyState struct {
	mu  sync.Mutex
	cur *config.Agent
	// changed is closed (and replaced) whenever cur changes: the sessions' signal to tell
	// their broker.
	changed chan struct{}
	open    map[*servedTunnel]struct{}
}

// servedTunnel is one tunnel the agent relays.
type servedTunnel struct {
	h    Header
	addr string
	st   *stream
	dst  net.Conn
	// cut holds why a policy change ended the tunnel; empty while it is allowed.
	cut atomic.Pointer[string]
}

func newPolicyState(cfg *config.Agent) *policyState {
	return &policyState{cur: cfg, changed: make(chan struct{}), open: map[*servedTunnel]struct{}{}}
}

// current returns the policy in force and the channel closed at its next change.
func (p *policyState) current() (*config.Agent, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur, p.changed
}

// add registers a tunnel that resolved to t.addr under cfg; false if the policy changed
// since (the caller resolves again).
func (p *policyState) add(t *servedTunnel, cfg *config.Agent) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != cfg {
		return false
	}
	p.open[t] = struct{}{}
	return true
}

func (p *policyState) remove(t *servedTunnel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.open, t)
}

// set puts cfg in force and returns the open tunnels it no longer allows (the header
// is refused now, or resolves to another address), each marked with the reason.
func (p *policyState) set(cfg *config.Agent) []*servedTunnel {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur = cfg
	close(p.changed)
	p.changed = make(chan struct{})
	var cut []*servedTunnel
	for t := range p.open {
		addr, code, msg := resolve(cfg, t.h)
		reason := ""
		switch {
		case code != CodeOK:
			reason = (&RefusedError{code, msg}).Error()
		case addr != t.addr:
			reason = "the service now goes to " + addr
		default:
			continue
		}
		t.cut.Store(&reason)
		delete(p.open, t)
		cut = append(cut, t)
	}
	return cut
}

// RestartFields lists the settings of next that differ from the agent's and that only a
// restart puts in force (the broker, the agent's identity and secret, TLS trust, the
// connections): everything else applies at once through SetConfig.
func RestartFields(cur, next *config.Agent) []string {
	var out []string
	add := func(field string, differ bool) {
		if differ {
			out = append(out, field)
		}
	}
	add("broker", cur.Broker != next.Broker)
	add("broker_addrs", !slices.Equal(cur.BrokerAddrs, next.BrokerAddrs))
	add("connections", cur.Connections != next.Connections)
	add("ca_file", cur.CAFile != next.CAFile)
	add("server_name", cur.ServerName != next.ServerName)
	add("customer", cur.Customer != next.Customer)
	add("system", cur.System != next.System)
	add("secret", cur.Secret != next.Secret) // also a secret_file whose content changed
	add("secret_file", cur.SecretFile != next.SecretFile)
	return out
}

// SetConfig puts the customer's switches, services, tunnel entries, network systems and
// dial/backoff settings of cfg (a validated configuration) in force at once: new tunnel
// requests are decided by it, open tunnels it no longer allows end now, and each connected
// broker that takes policy updates is told the new policy. Settings RestartFields names
// keep their old values until the agent restarts; SetConfig returns them.
func (a *Agent) SetConfig(cfg *config.Agent) []string {
	restart := RestartFields(a.cfg, cfg)
	for _, t := range a.policy.set(cfg) {
		a.log.Info("tunnel ended: the customer's settings no longer allow it", "session", fmt.Sprintf("%x", t.h.Session[:8]),
			"user", t.h.User, "client", t.h.Client, "target", t.addr, "reason", *t.cut.Load())
		t.st.Close()
		t.dst.Close()
	}
	return restart
}

// pushPolicy sends the broker of ws each policy that differs from the last one it got
// (sent, in the hello), as a websocket text message, from the change that changed
// signals until done is closed or the link fails.
func (a *Agent) pushPolicy(ws *wsConn, sent Policy, changed <-chan struct{}, done <-chan struct{}) {
	last, _ := json.Marshal(sent)
	for {
		select {
		case <-done:
			return
		case <-changed:
		}
		var cfg *config.Agent
		cfg, changed = a.policy.current()
		p := PolicyFromConfig(cfg, a.version)
		b, _ := json.Marshal(p)
		// A changed file that leaves the policy as it was (a log level, a comment) is not news.
		if string(b) == string(last) {
			continue
		}
		if err := ws.sendText(b); err != nil {
			return
		}
		last = b
		a.log.Info("policy sent to the broker", "remote_access", p.RemoteAccess, "colocated", p.Colocated)
	}
}

// noteStalePolicy logs each policy change while connection c is to a broker that takes no
// policy updates: the agent applies the change itself, but that broker shows the old
// switches until the next connection.
func (a *Agent) noteStalePolicy(c *brokerConn, done <-chan struct{}) {
	for {
		_, changed := a.policy.current()
		select {
		case <-done:
			return
		case <-changed:
			a.log.Warn("the broker of this connection takes no policy updates (an earlier release): the new settings are in force here, but it shows the old ones until the agent reconnects",
				"connection", c.n+1, "addr", c.current())
		}
	}
}

// hasFeature reports whether a FeaturesHeader value lists feature.
func hasFeature(header, feature string) bool {
	for f := range strings.SplitSeq(header, ",") {
		if strings.EqualFold(strings.TrimSpace(f), feature) {
			return true
		}
	}
	return false
}
