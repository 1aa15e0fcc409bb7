package broker

import (
	"encoding/json"
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

// systemStatus tells the access pages what the registry knows of one system's agent;
// pac.Indicate turns it into the light. In cluster mode a system this broker does not hold
// is online if another broker holds it, with the switches its agent reported there. A
// secondary without an agent of its own that another system's agent reaches (its
// network.systems) has that agent's state and switches, Via naming that system.
// Refused agent logins (LoginFailed, LoginFailure) are not known to the registry yet.
func (b *Broker) systemStatus(customer, system string) pac.SystemStatus {
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
	via := ""
	if !st.Online {
		if name, v := b.carrierView(customer, system); name != "" {
			via, st.Online, st.Since, st.Policy = name, true, v.since, v.policy
		}
	}
	p := st.Policy
	s := pac.SystemStatus{
		Online: st.Online, Since: st.Since,
		// An agent reports its policy when it connects; Version 0 means it never did.
		Reported:     p.Version != 0 || st.Online,
		RemoteAccess: p.RemoteAccess, Colocated: p.Colocated, Services: p.Services,
		Via: via,
	}
	for _, t := range p.Tunnels {
		s.Tunnels = append(s.Tunnels, pac.TunnelEntry{Application: t.Application, IP: t.IP, Port: t.Port})
	}
	return s
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
