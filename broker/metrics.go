package broker

// The broker's Prometheus metrics: one registry per Broker (several brokers run in one test
// process), served on listen.metrics only. The parts keep plain counters (Stats methods);
// a collector turns them into metrics at each scrape, and the proxy's events (refusals,
// setup latency) arrive through proxy.Observer.

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"maintproxy/internal/guard"
	"maintproxy/internal/refusal"
	"maintproxy/proxy"
)

type metrics struct {
	b     *Broker
	reg   *prometheus.Registry
	setup prometheus.Histogram

	mu       sync.Mutex
	refusals map[refusalKey]uint64
}

// refusalKey is one series of maintproxy_refusals_total.
type refusalKey struct {
	listener string
	reason   refusal.Reason
	status   int
}

func newMetrics(b *Broker) *metrics {
	m := &metrics{b: b, reg: prometheus.NewRegistry(), refusals: map[refusalKey]uint64{}}
	m.setup = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "maintproxy_connect_setup_seconds",
		Help: "Time from a CONNECT's arrival to its 200: credential check, routing and the agent's dial.",
		// From a cached credential on a near agent (milliseconds) to a bcrypt check
		// behind a queue and a target timing out (the agent's dial timeout, 10 s).
		Buckets: []float64{.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.setup,
		statsCollector{m},
	)
	return m
}

// handler serves the registry; errors of collection are answered, never hidden.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// refused counts one refusal.
func (m *metrics) refused(listener string, reason refusal.Reason, status int) {
	m.mu.Lock()
	m.refusals[refusalKey{listener, reason, status}]++
	m.mu.Unlock()
}

// proxyObserver feeds the proxy's events into m.
type proxyObserver struct{ m *metrics }

func (o proxyObserver) Refused(reason refusal.Reason, status int) {
	o.m.refused("proxy", reason, status)
}
func (o proxyObserver) Established(d time.Duration) { o.m.setup.Observe(d.Seconds()) }
func (o proxyObserver) Abandoned()                  {}

// webRefusal counts a refused password on the web pages by its error.
func (m *metrics) webRefusal(err error) {
	switch {
	case errors.Is(err, guard.ErrBusy):
		m.refused("web", refusal.Busy, http.StatusTooManyRequests)
	case errors.Is(err, proxy.ErrLocked):
		m.refused("web", refusal.Locked, http.StatusUnauthorized)
	default:
		m.refused("web", refusal.BadCredentials, http.StatusUnauthorized)
	}
}

var (
	descRefusals = prometheus.NewDesc("maintproxy_refusals_total",
		"Requests refused, by listener (proxy, web, agent), reason (the Maintproxy-Refusal token) and status.",
		[]string{"listener", "reason", "status"}, nil)
	descOpened    = counterDesc("maintproxy_tunnels_opened_total", "Tunnels established.")
	descRefused   = counterDesc("maintproxy_tunnels_refused_total", "Authenticated CONNECTs refused.")
	descAbandoned = counterDesc("maintproxy_tunnels_abandoned_total", "CONNECTs whose technician hung up before the tunnel was up.")
	descActive    = gaugeDesc("maintproxy_tunnels_active", "Tunnels open now.")
	descBytesUp   = counterDesc("maintproxy_bytes_up_total", "Bytes from technicians to targets.")
	descBytesDown = counterDesc("maintproxy_bytes_down_total", "Bytes from targets to technicians.")
	descAgents    = gaugeDesc("maintproxy_agents_online", "Systems whose agent is online (in cluster mode: at any broker).")
	descLocal     = gaugeDesc("maintproxy_agents_local", "Agent sessions this broker holds.")
	descReady     = gaugeDesc("maintproxy_ready", "1 while the broker takes agents and tunnels (/readyz).")

	descPeerActive = gaugeDesc("maintproxy_peer_tunnels_active", "Tunnels other brokers forward through this broker's agents.")
	descBrokers    = gaugeDesc("maintproxy_cluster_brokers", "Live brokers in the cluster directory.")
	descStoreReady = gaugeDesc("maintproxy_cluster_store_ready", "1 while the etcd store is reachable and this broker's lease current.")
	descConfigRev  = gaugeDesc("maintproxy_cluster_config_revision", "Revision of the shared configuration in force (0: file or none).")

	descChecks     = counterDesc("maintproxy_password_checks_total", "Password checks run (bcrypt), proxy and web.")
	descCacheHits  = counterDesc("maintproxy_password_cache_hits_total", "Passwords accepted from the verified-credential cache.")
	descAuthFailed = counterDesc("maintproxy_auth_failures_total", "Wrong usernames or passwords, proxy and web.")
	descLockedOut  = counterDesc("maintproxy_auth_locked_total", "Logins refused because of a lock, without a check.")
	descLockouts   = prometheus.NewDesc("maintproxy_lockouts_total", "Locks started: of one account for one address, or of one account everywhere.",
		[]string{"scope"}, nil)
	descUnrecorded = counterDesc("maintproxy_auth_unrecorded_failures_total", "Failures the full lockout table could not record.")
	descAdmission  = prometheus.NewDesc("maintproxy_admission_refused_total",
		"Slow checks refused before they ran: the client address was over its rate, or every slot and the queue were taken (shed).",
		[]string{"check", "reason"}, nil)
	descAdmRunning = prometheus.NewDesc("maintproxy_admission_running", "Slow checks running now.", []string{"check"}, nil)
	descAdmWaiting = prometheus.NewDesc("maintproxy_admission_waiting", "Slow checks queued now.", []string{"check"}, nil)
	descLogins     = prometheus.NewDesc("maintproxy_agent_logins_total",
		"Agent logins: hmac (accepted, hmac-sha256 secret), bcrypt_cached (accepted from the cache), bcrypt_checked (bcrypt run), refused (401), busy (503).",
		[]string{"result"}, nil)

	descConnAccepted = prometheus.NewDesc("maintproxy_connections_accepted_total", "Connections admitted.", []string{"listener"}, nil)
	descConnRefused  = prometheus.NewDesc("maintproxy_connections_refused_total",
		"Connections closed right after accept: their address held limits.connections.per_address, or limits.connections.total were open.",
		[]string{"listener", "reason"}, nil)
	descConnOpen  = prometheus.NewDesc("maintproxy_connections_open", "Connections open now.", []string{"listener"}, nil)
	descHandshake = prometheus.NewDesc("maintproxy_tls_handshake_failures_total",
		"TLS handshakes that failed or did not finish within timeouts.tls_handshake.", []string{"listener", "reason"}, nil)
	descAcceptErr = prometheus.NewDesc("maintproxy_accept_errors_total", "Accepts that failed (e.g. out of file descriptors) and were retried.",
		[]string{"listener"}, nil)

	descCAExpiry     = gaugeDesc("maintproxy_ca_expiry_seconds", "Expiry of the root technicians trust (Unix time; 0 if not ours).")
	descCertExpiry   = gaugeDesc("maintproxy_cert_expiry_seconds", "Expiry of the served leaf certificate (Unix time).")
	descCertWarn     = gaugeDesc("maintproxy_cert_warning", "1 while a certificate expiry warning is active.")
	descStatusWrites = prometheus.NewDesc("maintproxy_status_writes_total",
		"Writes of data_dir/status.json (each system's last seen and refused agent logins): ok, or error (logged; retried with the next change).",
		[]string{"result"}, nil)
	descDNSQueries = counterDesc("maintproxy_dns_queries_total", "DNS queries received.")
	descDNSRefused = counterDesc("maintproxy_dns_refused_total", "DNS queries refused (outside the zone).")
	descDNSLimited = counterDesc("maintproxy_dns_ratelimited_total", "DNS UDP answers dropped or truncated by the rate limit.")
)

func counterDesc(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
func gaugeDesc(name, help string) *prometheus.Desc   { return prometheus.NewDesc(name, help, nil, nil) }

// statsCollector reads the parts' counters at each scrape.
type statsCollector struct{ m *metrics }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRefusals, descOpened, descRefused, descAbandoned, descActive, descBytesUp, descBytesDown,
		descAgents, descLocal, descReady, descPeerActive, descBrokers, descStoreReady, descConfigRev, descChecks, descCacheHits, descAuthFailed, descLockedOut, descLockouts, descUnrecorded, descAdmission,
		descAdmRunning, descAdmWaiting, descLogins, descConnAccepted, descConnRefused, descConnOpen, descHandshake, descAcceptErr,
		descCAExpiry, descCertExpiry, descCertWarn, descStatusWrites, descDNSQueries, descDNSRefused, descDNSLimited} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.m.b
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}

	p := b.proxy.Stats()
	counter(descOpened, p.Opened)
	counter(descRefused, p.Refused)
	counter(descAbandoned, p.Abandoned)
	gauge(descActive, p.Active)
	counter(descBytesUp, p.BytesUp)
	counter(descBytesDown, p.BytesDown)
	gauge(descAgents, b.systemsOnline())
	gauge(descLocal, int64(b.registry.Len()))
	gauge(descReady, boolInt(b.Ready()))
	if k := b.cluster; k != nil {
		gauge(descPeerActive, p.PeerActive)
		gauge(descBrokers, int64(len(k.store.Directory().Brokers())))
		gauge(descStoreReady, boolInt(k.store.Ready()))
		gauge(descConfigRev, k.configRev.Load())
	}

	a := b.auth.Stats()
	counter(descChecks, a.Checks)
	counter(descCacheHits, a.CacheHits)
	counter(descAuthFailed, a.Failures)
	counter(descLockedOut, a.Locked)
	counter(descLockouts, a.PairLockouts, "address")
	counter(descLockouts, a.AccountLockouts, "account")
	counter(descUnrecorded, a.Unrecorded)
	l := b.agents.LoginStats()
	for check, s := range map[string]guard.Stats{"password": a.Admission, "agent": l.Guard} {
		counter(descAdmission, s.RateLimited, check, "rate")
		counter(descAdmission, s.Shed, check, "shed")
		gauge(descAdmRunning, s.Running, check)
		gauge(descAdmWaiting, s.Waiting, check)
	}
	counter(descLogins, l.OK, "hmac")
	counter(descLogins, l.Cached, "bcrypt_cached")
	counter(descLogins, l.Slow, "bcrypt_checked")
	counter(descLogins, l.Refused, "refused")
	counter(descLogins, l.Shed, "busy")

	refusals := map[refusalKey]uint64{
		{"agent", refusal.BadCredentials, http.StatusUnauthorized}: uint64(l.Refused),
		{"agent", refusal.Busy, http.StatusServiceUnavailable}:     uint64(l.Shed),
	}
	c.m.mu.Lock()
	for k, v := range c.m.refusals {
		refusals[k] = v
	}
	c.m.mu.Unlock()
	for k, v := range refusals {
		counter(descRefusals, int64(v), k.listener, string(k.reason), strconv.Itoa(k.status))
	}

	for name, s := range b.gate.Stats() {
		counter(descConnAccepted, s.Accepted, name)
		counter(descConnRefused, s.RefusedPerAddress, name, "per_address")
		counter(descConnRefused, s.RefusedTotal, name, "total")
		gauge(descConnOpen, s.Open, name)
		counter(descHandshake, s.HandshakeTimeouts, name, "timeout")
		counter(descHandshake, s.HandshakeErrors, name, "error")
		counter(descAcceptErr, s.AcceptErrors, name)
	}

	gauge(descCAExpiry, unixOrZero(b.certs.CAExpiry()))
	gauge(descCertExpiry, unixOrZero(b.certs.CertExpiry()))
	gauge(descCertWarn, boolInt(b.certs.Warning() != ""))
	counter(descStatusWrites, b.status.writes.Load(), "ok")
	counter(descStatusWrites, b.status.writeErrors.Load(), "error")
	if b.dns != nil {
		d := b.dns.Stats()
		counter(descDNSQueries, int64(d.Queries))
		counter(descDNSRefused, int64(d.Refused))
		counter(descDNSLimited, int64(d.Dropped+d.Truncated))
	}
}
