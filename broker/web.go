package broker

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"time"

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
	mux.HandleFunc("GET /metrics", b.metrics)
	mux.HandleFunc("GET "+tunnel.AgentCAPath, b.agentCA)
	mux.HandleFunc("GET /certs", b.certsJSON)
	mux.Handle("/com/remoteproxy/", pac.New(pac.Options{
		Config:       b.Config,
		Status:       b.systemStatus,
		Authenticate: b.auth.Check,
		RootPEM:      b.certs.RootPEM,
		CertWarning:  b.certs.Warning,
		ToolsDir:     b.opts.ToolsDir,
		Logger:       b.log,
	}))
	mux.Handle("GET /{$}", http.RedirectHandler("/com/remoteproxy/access", http.StatusFound))
	return securityHeaders(mux)
}

// systemStatus tells the access pages what the registry knows of one system's agent;
// pac.Indicate turns it into the light. In cluster mode a system this broker does not hold
// is online if another broker holds it, with the switches its agent reported there.
// Refused agent logins (LoginFailed, LoginFailure) and secondaries reached through their
// primary (Via) are not known to the registry yet.
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
	p := st.Policy
	s := pac.SystemStatus{
		Online: st.Online, Since: st.Since,
		// An agent reports its policy when it connects; Version 0 means it never did.
		Reported:     p.Version != 0 || st.Online,
		RemoteAccess: p.RemoteAccess, Colocated: p.Colocated, Services: p.Services,
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

// metrics writes the Prometheus text exposition format.
func (b *Broker) metrics(w http.ResponseWriter, r *http.Request) {
	st := b.proxy.Stats()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	for _, m := range []struct {
		name, typ, help string
		v               int64
	}{
		{"maintproxy_tunnels_opened_total", "counter", "Tunnels established.", st.Opened},
		{"maintproxy_tunnels_refused_total", "counter", "Authenticated CONNECTs refused.", st.Refused},
		{"maintproxy_tunnels_active", "gauge", "Tunnels open now.", st.Active},
		{"maintproxy_bytes_up_total", "counter", "Bytes from technicians to targets.", st.BytesUp},
		{"maintproxy_bytes_down_total", "counter", "Bytes from targets to technicians.", st.BytesDown},
		{"maintproxy_agents_online", "gauge", "Systems whose agent is online (in cluster mode: at any broker).", b.systemsOnline()},
		{"maintproxy_agents_local", "gauge", "Agent sessions this broker holds.", int64(b.registry.Len())},
		{"maintproxy_ready", "gauge", "1 while the broker takes agents and tunnels (/readyz).", boolInt(b.Ready())},
		{"maintproxy_ca_expiry_seconds", "gauge", "Expiry of the root technicians trust (Unix time; 0 if not ours).", unixOrZero(b.certs.CAExpiry())},
		{"maintproxy_cert_expiry_seconds", "gauge", "Expiry of the served leaf certificate (Unix time).", unixOrZero(b.certs.CertExpiry())},
		{"maintproxy_cert_warning", "gauge", "1 while a certificate expiry warning is active.", boolInt(b.certs.Warning() != "")},
	} {
		writeMetric(w, m.name, m.typ, m.help, m.v)
	}
	if k := b.cluster; k != nil {
		writeMetric(w, "maintproxy_peer_tunnels_active", "gauge", "Tunnels other brokers forward through this broker's agents.", st.PeerActive)
		writeMetric(w, "maintproxy_cluster_brokers", "gauge", "Live brokers in the cluster directory.", int64(len(k.store.Directory().Brokers())))
		writeMetric(w, "maintproxy_cluster_store_ready", "gauge", "1 while the etcd store is reachable and this broker's lease current.", boolInt(k.store.Ready()))
		writeMetric(w, "maintproxy_cluster_config_revision", "gauge", "Revision of the shared configuration in force (0: file or none).", k.configRev.Load())
	}
	if b.dns != nil {
		d := b.dns.Stats()
		writeMetric(w, "maintproxy_dns_queries_total", "counter", "DNS queries received.", int64(d.Queries))
		writeMetric(w, "maintproxy_dns_refused_total", "counter", "DNS queries refused (outside the zone).", int64(d.Refused))
		writeMetric(w, "maintproxy_dns_ratelimited_total", "counter", "DNS UDP answers dropped or truncated by the rate limit.", int64(d.Dropped+d.Truncated))
	}
}

func writeMetric(w io.Writer, name, typ, help string, v int64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, typ, name, v)
}

// errorLog routes net/http's own messages (TLS handshake failures) to debug level.
func errorLog(l *slog.Logger, component string) *log.Logger {
	return log.New(debugWriter{l, component}, "", 0)
}

type debugWriter struct {
	l         *slog.Logger
	component string
}

func (w debugWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimSpace(string(p)), "component", w.component)
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
