package broker

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"maintproxy/config"
	"maintproxy/tunnel"
)

// webHandler routes the web listener (admin.<domain>).
func (b *Broker) webHandler() http.Handler {
	mux := http.NewServeMux()
	b.agents = tunnel.NewServer(b.registry, b.secretHash, b.log)
	mux.Handle(tunnel.AgentPath, b.agents)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /metrics", b.metrics)
	return mux
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
		{"maintproxy_agents_online", "gauge", "Agent sessions online.", int64(b.registry.Len())},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", m.name, m.help, m.name, m.typ, m.name, m.v)
	}
}

// redirectHandler sends plain-HTTP requests to the web listener over HTTPS.
func redirectHandler(cfg func() *config.Broker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			host = cfg().WebHost()
		}
		if p := cfg().WebPort(); p != "443" {
			host = net.JoinHostPort(host, p)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
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
