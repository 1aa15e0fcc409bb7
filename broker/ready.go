package broker

import (
	"context"
	"io"
	"net/http"
	"time"

	"maintproxy/cluster"
	"maintproxy/config"
	"maintproxy/tunnel"
)

// Drain pacing: agents are handed over a few at a time so that the brokers taking them are
// not flooded with logins, and the next batch goes once the last one shows up elsewhere.
const (
	drainBatchMin  = 5
	drainBatchWait = 3 * time.Second
	drainPoll      = 50 * time.Millisecond
	// retryAfterDrain is what a draining broker asks new agents to wait (they try another
	// broker first anyway).
	retryAfterDrain = "2"
)

// readiness says whether the broker takes agents and tunnels now, and why not.
func (b *Broker) readiness() (bool, string) {
	switch {
	case !b.listening.Load():
		return false, "starting"
	case b.draining.Load():
		return false, "shutting down: handing agents to other brokers"
	}
	if k := b.cluster; k != nil {
		if !k.store.Ready() {
			return false, "the cluster store (etcd) cannot be reached or this broker's lease is not current; serving from what it last knew"
		}
		if b.opts.Config.SharedOnly() && k.configRev.Load() == 0 {
			return false, "no configuration in the store yet (maintproxy config push)"
		}
	}
	return true, "ready"
}

// readyChanged logs a change of readiness (the store reports its own from its goroutines).
func (b *Broker) readyChanged() {
	b.readyMu.Lock()
	defer b.readyMu.Unlock()
	r, why := b.readiness()
	if r == b.lastReady {
		return
	}
	b.lastReady = r
	b.log.Info("readiness changed", "ready", r, "why", why)
}

// Ready reports whether the broker takes agents and tunnels (/readyz).
func (b *Broker) Ready() bool {
	r, _ := b.readiness()
	return r
}

// readyz answers 200 when ready and 503 with the reason otherwise; /healthz stays the
// liveness check (the process serves).
func (b *Broker) readyz(w http.ResponseWriter, r *http.Request) {
	ok, why := b.readiness()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, why+"\n")
}

// agentEndpoint is the agent endpoint, closed to new agents while the broker shuts down.
func (b *Broker) agentEndpoint() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.draining.Load() {
			w.Header().Set("Retry-After", retryAfterDrain)
			http.Error(w, "this broker is shutting down; connect to another one", http.StatusServiceUnavailable)
			return
		}
		b.agents.ServeHTTP(w, r)
	})
}

// withoutShared is the configuration in force before the store's arrives when accounts,
// customers and limits come from the store: none at all (any in the file are not used).
func (b *Broker) withoutShared(c *config.Broker) (*config.Broker, error) {
	if !c.SharedOnly() {
		return c, nil
	}
	if len(c.Accounts) > 0 || len(c.Customers) > 0 {
		b.log.Warn("cluster.config is store: the accounts and customers in the file are not used", "accounts", len(c.Accounts), "customers", len(c.Customers))
	}
	e := *c
	e.Accounts, e.Customers = nil, nil
	return config.NewBroker(e)
}

// handOffAgents hands this broker's agents to the other brokers before it exits: it announces
// that it drains, then closes idle agent sessions a batch at a time (their agents
// reconnect elsewhere, trying this broker last) and waits for each batch to show up at
// another broker. Sessions with open tunnels stay until their tunnels end; technicians'
// tunnels through this proxy are let finish. It returns when nothing is left or after
// cluster.drain_timeout.
func (b *Broker) handOffAgents() {
	k := b.cluster
	start := time.Now()
	deadline := start.Add(b.opts.Config.Cluster.DrainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := k.store.UpdateSelf(ctx, func(bi *cluster.BrokerInfo) { bi.Draining = true }); err != nil {
		b.log.Warn("draining not yet published", "err", err.Error())
	}
	cancel()
	total := b.registry.Len()
	b.log.Info("draining: handing agents to other brokers", "agents", total, "timeout", b.opts.Config.Cluster.DrainTimeout.String())
	batch := max(drainBatchMin, total/10)
	moved := 0
	for time.Now().Before(deadline) {
		sessions := b.registry.Sessions()
		st := b.proxy.Stats()
		if len(sessions) == 0 && st.Active == 0 && st.PeerActive == 0 {
			break
		}
		var idle []*tunnel.Session
		for _, s := range sessions {
			if s.Active() == 0 && len(idle) < batch {
				idle = append(idle, s)
			}
		}
		if len(idle) == 0 {
			time.Sleep(drainPoll) // tunnels still open: let them finish
			continue
		}
		for _, s := range idle {
			s.Close()
		}
		moved += len(idle)
		b.awaitElsewhere(idle, min(time.Until(deadline), drainBatchWait))
	}
	b.log.Info("drained", "agents_moved", moved, "agents_left", b.registry.Len(),
		"tunnels_left", b.proxy.Stats().Active+b.proxy.Stats().PeerActive, "took", time.Since(start).Round(time.Millisecond).String())
}

// awaitElsewhere waits until another broker holds each of sessions' systems, or for d.
func (b *Broker) awaitElsewhere(sessions []*tunnel.Session, d time.Duration) {
	self := b.cluster.store.Node()
	p := b.cluster.store.Presence()
	until := time.Now().Add(d)
	for time.Now().Before(until) {
		left := 0
		for _, s := range sessions {
			id := s.Identity()
			elsewhere := false
			for _, h := range p.Holders(id.Customer, id.System) {
				elsewhere = elsewhere || h.Node != self
			}
			if !elsewhere {
				left++
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(drainPoll)
	}
}
