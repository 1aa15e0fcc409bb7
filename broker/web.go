package broker

import (
	"io"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"maintproxy/config"
	"maintproxy/internal/gate"
	"maintproxy/pac"
	"maintproxy/tunnel"
)

// webHandler routes the web listener (admin.<domain>).
func (b *Broker) webHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(tunnel.AgentPath, b.agentEndpoint())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", b.readyz)
	mux.HandleFunc("GET "+tunnel.AgentCAPath, b.agentCA)
	mux.HandleFunc("GET /certs", b.certsJSON)
	mux.Handle("/com/remoteproxy/", pac.New(pac.Options{
		Config:       b.Config,
		Status:       b.systemStatus,
		Authenticate: b.webAuth,
		RootPEM:      b.certs.RootPEM,
		CertWarning:  b.certs.Warning,
		Certificates: b.describeCerts,
		ToolsDir:     b.opts.ToolsDir,
		Logger:       b.log,
	}))
	mux.Handle("GET /{$}", http.RedirectHandler("/com/remoteproxy/access", http.StatusFound))
	return gate.Recover(securityHeaders(mux), b.log)
}

// webAuth is the password check of the web pages: the proxy's own, with its refusals
// counted for the web listener.
func (b *Broker) webAuth(username, password, clientIP string) (*config.Account, error) {
	acct, err := b.auth.Check(username, password, clientIP)
	if err != nil {
		b.metrics.webRefusal(err)
	}
	return acct, err
}

// systemStatus tells the access pages what the broker knows of one system's agent;
// pac.Indicate turns it into the light. In cluster mode a system this broker does not hold
// is online if another broker holds it, with the switches its agent reported there. A
// system not seen since this broker started is offline since the last time the status
// file saw it (so a restart does not turn it into "waiting for first connection"), with
// the switches it reported then. Refused agent logins come from the status file too. A
// secondary without an agent of its own that another system's agent reaches (its
// network.systems) has that agent's state and switches, Via naming that system.
func (b *Broker) systemStatus(customer, system string) pac.SystemStatus {
	id := tunnel.NewIdentity(customer, system)
	_, st := b.agentOf(customer, system)
	via := ""
	if !st.Online {
		if name, v := b.carrierView(customer, system); name != "" {
			via, st.Online, st.Since, st.Policy = name, true, v.since, v.policy
		}
	}
	rec, remembered := b.status.get(id)
	if remembered && !st.Online && st.Since.IsZero() {
		st.Since = rec.lastSeen()
		if rec.Policy != nil {
			st.Policy = *rec.Policy
		}
	}
	p := st.Policy
	s := pac.SystemStatus{
		Online: st.Online, Since: st.Since,
		// An agent reports its policy when it connects; Version 0 means it never did.
		Reported:     p.Version != 0 || st.Online,
		RemoteAccess: p.RemoteAccess, Colocated: p.Colocated, Services: p.Services,
		LoginFailed: rec.LoginFailed, LoginFailure: rec.LoginFailure,
		Via: via,
	}
	for _, t := range p.Tunnels {
		s.Tunnels = append(s.Tunnels, pac.TunnelEntry{Application: t.Application, IP: t.IP, Port: t.Port})
	}
	return s
}

// sessionChanged is the registry's hook: the status file records each session's start
// and end (and, in cluster mode, the cluster's presence follows). It must not block: the
// status store only changes memory.
func (b *Broker) sessionChanged(s *tunnel.Session, up bool) {
	if up {
		b.status.connected(s.Identity(), s.Since(), s.Policy())
	} else {
		// The registry's own offline time, so that the pages say the same before and
		// after a restart; a session replaced by a newer one ends now.
		at := time.Now()
		if st := b.registry.Status(s.Identity()); !st.Online && !st.Since.IsZero() {
			at = st.Since
		}
		b.status.disconnected(s.Identity(), at, s.Policy())
	}
	if b.cluster != nil {
		b.cluster.publishSession(s, up)
	}
}

// liveSystems lists the systems with a session at this broker and their switches now
// (the status heartbeat).
func (b *Broker) liveSystems() []liveSystem {
	sessions := b.registry.Sessions()
	out := make([]liveSystem, 0, len(sessions))
	for _, s := range sessions {
		out = append(out, liveSystem{id: s.Identity(), policy: s.Policy()})
	}
	return out
}

// configured reports whether the configuration in force has the system id.
func (b *Broker) configured(id tunnel.Identity) bool {
	_, ok := b.secretHash(id)
	return ok
}

// systemsOnline counts the configured systems whose agent is online, here or, in cluster
// mode, at any broker.
func (b *Broker) systemsOnline() int64 {
	if b.cluster == nil {
		return int64(b.registry.Len())
	}
	n := int64(0)
	p := b.cluster.store.Presence()
	for _, c := range b.Config().Customers {
		for _, s := range c.Systems {
			if b.registry.Get(tunnel.NewIdentity(c.ID, s.Name)) != nil || p.Online(c.ID, s.Name) {
				n++
			}
		}
	}
	return n
}

// secretHash looks an agent's secret hash up in the configuration in force.
func (b *Broker) secretHash(id tunnel.Identity) (string, bool) {
	cust := b.Config().Customer(id.Customer)
	if cust == nil {
		return "", false
	}
	sys := cust.System(id.System)
	if sys == nil {
		return "", false
	}
	return sys.AgentSecretHash, true
}

// errorLog routes net/http's own messages to debug level. TLS handshakes are the gate's,
// panics Recover's; only the first line of anything else is kept, so a stack trace that
// got here anyway stays out of the log.
func errorLog(l *slog.Logger, component string) *log.Logger {
	return log.New(debugWriter{l, component}, "", 0)
}

type debugWriter struct {
	l         *slog.Logger
	component string
}

func (w debugWriter) Write(p []byte) (int, error) {
	line, _, _ := strings.Cut(strings.TrimSpace(string(p)), "\n")
	w.l.Debug(line, "component", w.component)
	return len(p), nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
