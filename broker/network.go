package broker

import (
	"encoding/json"
	"time"

	"maintproxy/tunnel"
)

// agentView is what the broker knows of one system's own agent: here, or in cluster mode
// at any broker.
type agentView struct {
	online bool
	since  time.Time
	policy tunnel.Policy
}

// agentOf looks customer/system's own agent up: this broker's session first, then the
// cluster's presence (the switches its holder published). Offline, it carries what the
// registry remembers.
func (b *Broker) agentOf(customer, system string) (agentView, tunnel.Status) {
	st := b.registry.Status(tunnel.NewIdentity(customer, system))
	if k := b.cluster; k != nil && !st.Online {
		if hs := k.store.Presence().Holders(customer, system); len(hs) > 0 {
			var p tunnel.Policy
			if json.Unmarshal(hs[0].Switches, &p) == nil {
				st.Policy = p
			}
			st.Online, st.Since = true, hs[0].Since
		}
	}
	return agentView{online: st.Online, since: st.Since, policy: st.Policy}, st
}

// carrier names the system whose online agent reaches customer/system for the broker (it
// lists it in network.systems), when system has no agent of its own online; the primary is
// asked first. It returns "" when system has its own agent (which always wins) or nobody
// reaches it.
func (b *Broker) carrier(customer, system string) string {
	name, _ := b.carrierView(customer, system)
	return name
}

// carrierView is carrier with what is known of the carrier's agent.
func (b *Broker) carrierView(customer, system string) (string, agentView) {
	cust := b.Config().Customer(customer)
	if cust == nil {
		return "", agentView{}
	}
	if own, _ := b.agentOf(customer, system); own.online {
		return "", agentView{}
	}
	candidates := make([]string, 0, len(cust.Systems))
	for _, s := range cust.Systems {
		if s.Primary {
			candidates = append([]string{s.Name}, candidates...)
		} else {
			candidates = append(candidates, s.Name)
		}
	}
	for _, name := range candidates {
		if name == system {
			continue
		}
		if v, _ := b.agentOf(customer, name); v.online && v.policy.Reaches(system) {
			return name, v
		}
	}
	return "", agentView{}
}
