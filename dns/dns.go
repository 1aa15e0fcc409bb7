// Package dns is the broker's optional authoritative name server for the maint.<domain>
// zone (and admin.<domain>), so that the provider can delegate the zone to the broker. The
// zone holds exactly the names of the maintenance grammar (package maintname), and can
// publish _acme-challenge TXT records.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/net/netutil"

	"maintproxy/config"
	"maintproxy/maintname"
)

// Limits and lifetimes of DNS answers.
const (
	dnsTTL         = 300  // A/AAAA/NS: addresses change rarely
	dnsNegativeTTL = 60   // SOA minimum: how long resolvers cache NXDOMAIN/NODATA
	dnsTXTTTL      = 60   // challenge records are short-lived
	dnsMaxUDP      = 1232 // the DNS flag day 2020 EDNS buffer size: no IP fragmentation
	dnsMaxTCPConns = 256
	// dnsMaxBuckets bounds the rate limiter's memory under a spoofed-source flood.
	dnsMaxBuckets = 16384
)

// Server is an authoritative name server for the maint.<domain> zone, so that the
// provider can delegate the zone to the broker (NS maint.<domain> → the broker). It
// answers on UDP and TCP on listen.dns. It also serves admin.<domain> as a zone of one
// name: an ACME CA resolves both names, and the operator may delegate either.
//
//   - each zone's apex: SOA, NS, A/AAAA (dns.addresses); glue for the name servers.
//   - every name of the maintenance grammar (maintname.ParseHost): A/AAAA from
//     dns.addresses, NOERROR with no data (and the SOA) for other types.
//   - names published with SetTXT (_acme-challenge...): their TXT records only.
//   - any other name in a zone (underscores, names below admin.<domain>): NXDOMAIN.
//   - names outside both zones: REFUSED without the AA bit, as authoritative-only
//     servers do; RA is never set and nothing is ever resolved recursively.
//   - ANY: one HINFO "RFC8482" record (RFC 8482), so ANY cannot amplify.
//
// UDP responses are rate limited per client network (IPv4 /24, IPv6 /56) to
// dns.rate_limit per second with a burst of as many: over the limit every second
// response is a truncated empty reply (TC=1, so a real resolver retries over TCP, which a
// spoofed source cannot) and the rest are dropped. TCP is not rate limited.
type Server struct {
	domain  string // the provider domain, lower case
	zone    string // "maint.example.com.": the wildcard zone of the maintenance grammar
	admin   string // "admin.example.com.": a zone of one name
	log     *slog.Logger
	v4, v6  []net.IP
	ns      []string // FQDNs
	serial  uint32
	limiter *rateLimiter

	udp net.PacketConn
	tcp net.Listener

	mu  sync.RWMutex
	txt map[string][]string // lower-case FQDN → values

	queries, refused, nxdomain, dropped, truncated atomic.Uint64
}

// Stats counts what a Server did, for metrics.
type Stats struct {
	Queries   uint64 // every query received
	Refused   uint64 // names outside the zone and unsupported classes
	NXDomain  uint64 // names in the zone that do not exist
	Dropped   uint64 // UDP responses not sent: rate limit
	Truncated uint64 // UDP responses replaced by TC=1 under the rate limit
}

// Options configure a Server.
type Options struct {
	Config *config.Broker // required: domain, listen.dns and dns.*
	Logger *slog.Logger   // default: discard
	// Now returns the current time; tests inject it (default time.Now). It drives the rate
	// limiter's buckets and the zones' serial.
	Now func() time.Time
}

// New checks the DNS settings and binds listen.dns on UDP and TCP (the same port, also
// when the port is 0), so that a port in use fails here, naming the field. Serve then
// answers; Close releases the sockets if Serve is never called.
func New(opts Options) (*Server, error) {
	cfg, logger := opts.Config, opts.Logger
	if cfg == nil {
		return nil, errors.New("dns: no config")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if cfg.Listen.DNS == "" {
		return nil, errors.New("listen.dns: required for the DNS server (e.g. :53)")
	}
	if cfg.Domain == "" {
		return nil, errors.New("domain: required")
	}
	s := &Server{
		domain: cfg.Domain,
		zone:   mdns.Fqdn(strings.ToLower(cfg.ProxyHost())),
		admin:  mdns.Fqdn(strings.ToLower(cfg.WebHost())),
		log:    logger,
		txt:    map[string][]string{},
	}
	for i, a := range cfg.DNS.Addresses {
		ip := net.ParseIP(a)
		switch {
		case ip == nil:
			return nil, fmt.Errorf("dns.addresses[%d]: %q is not an IP address", i, a)
		case ip.To4() != nil:
			s.v4 = append(s.v4, ip.To4())
		default:
			s.v6 = append(s.v6, ip)
		}
	}
	if len(s.v4)+len(s.v6) == 0 {
		return nil, errors.New("dns.addresses: at least one address of the broker is required")
	}
	for _, n := range cfg.DNS.NS {
		s.ns = append(s.ns, mdns.Fqdn(strings.ToLower(n)))
	}
	if len(s.ns) == 0 {
		s.ns = []string{"ns." + s.zone}
	}
	s.serial = uint32(opts.Now().Unix()) // a new serial per start: the zones are generated
	rate := cfg.DNS.RateLimit
	if rate <= 0 {
		rate = config.DefaultDNSRate
	}
	s.limiter = newRateLimiter(float64(rate), opts.Now)
	if err := s.listen(cfg.Listen.DNS); err != nil {
		return nil, fmt.Errorf("listen.dns: %w", err)
	}
	return s, nil
}

// listen binds UDP first, then TCP on the UDP port (retrying other ports when the
// address asked for port 0 and TCP's is taken).
func (s *Server) listen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	for range 20 {
		udp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		_, p, _ := net.SplitHostPort(udp.LocalAddr().String())
		tcp, err := net.Listen("tcp", net.JoinHostPort(host, p))
		if err == nil {
			s.udp, s.tcp = udp, netutil.LimitListener(tcp, dnsMaxTCPConns)
			return nil
		}
		udp.Close()
		if port != "0" {
			return err
		}
	}
	return errors.New("no port free on both UDP and TCP")
}

// Addr is the bound address (UDP; TCP uses the same port).
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Close releases the sockets. Serve closes them itself when it returns.
func (s *Server) Close() error {
	return errors.Join(s.udp.Close(), s.tcp.Close())
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{
		Queries: s.queries.Load(), Refused: s.refused.Load(), NXDomain: s.nxdomain.Load(),
		Dropped: s.dropped.Load(), Truncated: s.truncated.Load(),
	}
}

// SetTXT publishes TXT records for name (e.g. _acme-challenge.maint.<domain>, for an
// ACME DNS-01 challenge); no values removes them. Names outside the zones are ignored.
func (s *Server) SetTXT(name string, values []string) {
	name = mdns.Fqdn(strings.ToLower(name))
	if s.zoneOf(name) == "" {
		s.log.Warn("dns: ignoring TXT records outside the zones", "name", name, "zone", s.zone)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(values) == 0 {
		delete(s.txt, name)
		return
	}
	s.txt[name] = append([]string(nil), values...)
}

// Serve answers on UDP and TCP until ctx is done, then shuts both down (in-flight TCP
// connections get up to 2 seconds) and closes the sockets.
func (s *Server) Serve(ctx context.Context) error {
	accept := func(dh mdns.Header) mdns.MsgAcceptAction {
		if dh.Bits&(1<<15) != 0 { // QR: a response, never answer it
			return mdns.MsgIgnore
		}
		return mdns.MsgAccept // everything else is judged, and rate limited, in ServeDNS
	}
	type served struct {
		srv           *mdns.Server
		started, done chan struct{}
		err           error
	}
	var svs []*served
	for _, srv := range []*mdns.Server{
		{PacketConn: s.udp, Handler: s, MsgAcceptFunc: accept},
		{Listener: s.tcp, Handler: s, MsgAcceptFunc: accept, ReadTimeout: 2 * time.Second, MaxTCPQueries: 128},
	} {
		sv := &served{srv: srv, started: make(chan struct{}), done: make(chan struct{})}
		srv.NotifyStartedFunc = func() { close(sv.started) }
		go func() {
			defer close(sv.done)
			sv.err = srv.ActivateAndServe()
		}()
		svs = append(svs, sv)
	}
	// ShutdownContext stops only a started server: wait until each has started or failed.
	for _, sv := range svs {
		select {
		case <-sv.started:
		case <-sv.done:
		}
	}
	select {
	case <-ctx.Done():
	case <-svs[0].done:
	case <-svs[1].done:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, sv := range svs {
		_ = sv.srv.ShutdownContext(sctx) // "not started" for one that failed
	}
	var err error
	for _, sv := range svs {
		<-sv.done
		err = errors.Join(err, sv.err)
	}
	s.Close()
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("dns: %w", err)
	}
	return nil
}

// zoneOf returns the zone fqdn (lower case) belongs to, or "".
func (s *Server) zoneOf(fqdn string) string {
	for _, z := range []string{s.zone, s.admin} {
		if fqdn == z || strings.HasSuffix(fqdn, "."+z) {
			return z
		}
	}
	return ""
}

// soa is zone's SOA record.
func (s *Server) soa(zone string) *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: dnsNegativeTTL},
		Ns:      s.ns[0],
		Mbox:    "hostmaster." + s.zone,
		Serial:  s.serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  dnsNegativeTTL,
	}
}

// ServeDNS answers one query; it implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	s.queries.Add(1)
	udp := w.LocalAddr().Network() == "udp"
	if udp {
		var ip netip.Addr
		if ua, ok := w.RemoteAddr().(*net.UDPAddr); ok {
			ip, _ = netip.AddrFromSlice(ua.IP)
		}
		switch s.limiter.take(ip) {
		case rateDrop:
			s.dropped.Add(1)
			return
		case rateSlip:
			s.truncated.Add(1)
			m := new(mdns.Msg)
			m.SetReply(r)
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
	}
	m := s.answer(r)
	if udp {
		size := mdns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = max(mdns.MinMsgSize, min(int(opt.UDPSize()), dnsMaxUDP))
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answer builds the response to r according to the policy at the top of this file.
func (s *Server) answer(r *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	switch {
	case r.Opcode != mdns.OpcodeQuery:
		return m.SetRcode(r, mdns.RcodeNotImplemented)
	case len(r.Question) != 1:
		return m.SetRcode(r, mdns.RcodeFormatError)
	}
	m.SetReply(r)
	m.RecursionAvailable = false
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(dnsMaxUDP, false)
		if opt.Version() != 0 {
			m.Rcode = mdns.RcodeBadVers
			return m
		}
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	zone := s.zoneOf(name)
	if (q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY) || zone == "" {
		s.refused.Add(1)
		m.Rcode = mdns.RcodeRefused
		return m
	}
	m.Authoritative = true
	s.mu.RLock()
	txt, hasTXT := s.txt[name]
	s.mu.RUnlock()
	exists := name == zone || hasTXT || zone == s.zone && s.inGrammar(name)
	if !exists {
		s.nxdomain.Add(1)
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{s.soa(zone)}
		return m
	}
	hdr := func(t uint16, ttl uint32) mdns.RR_Header {
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: ttl}
	}
	switch {
	case q.Qtype == mdns.TypeANY:
		m.Answer = append(m.Answer, &mdns.HINFO{Hdr: hdr(mdns.TypeHINFO, dnsTTL), Cpu: "RFC8482"})
	case q.Qtype == mdns.TypeTXT && hasTXT:
		m.Answer = append(m.Answer, &mdns.TXT{Hdr: hdr(mdns.TypeTXT, dnsTXTTTL), Txt: txt})
	case hasTXT:
		// an _acme-challenge name holds only its TXT records
	case q.Qtype == mdns.TypeA:
		for _, ip := range s.v4 {
			m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(mdns.TypeA, dnsTTL), A: ip})
		}
	case q.Qtype == mdns.TypeAAAA:
		for _, ip := range s.v6 {
			m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA, dnsTTL), AAAA: ip})
		}
	case q.Qtype == mdns.TypeSOA && name == zone:
		soa := s.soa(zone)
		soa.Hdr.Name = q.Name
		m.Answer = append(m.Answer, soa)
	case q.Qtype == mdns.TypeNS && name == zone:
		for _, ns := range s.ns {
			m.Answer = append(m.Answer, &mdns.NS{Hdr: hdr(mdns.TypeNS, dnsTTL), Ns: ns})
		}
		m.Extra = append(m.Extra, s.glue()...)
	}
	if len(m.Answer) == 0 {
		m.Ns = []mdns.RR{s.soa(zone)} // NODATA: the SOA tells resolvers how long to cache it
	}
	return m
}

// glue are the addresses of the name servers inside our zones.
func (s *Server) glue() []mdns.RR {
	var rrs []mdns.RR
	for _, ns := range s.ns {
		if s.zoneOf(ns) == "" {
			continue
		}
		for _, ip := range s.v4 {
			rrs = append(rrs, &mdns.A{Hdr: mdns.RR_Header{Name: ns, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: dnsTTL}, A: ip})
		}
		for _, ip := range s.v6 {
			rrs = append(rrs, &mdns.AAAA{Hdr: mdns.RR_Header{Name: ns, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: dnsTTL}, AAAA: ip})
		}
	}
	return rrs
}

// inGrammar reports whether fqdn (lower case) is a name the proxy would accept, so the zone
// answers exactly the names of the maintenance grammar, and name servers named after it.
func (s *Server) inGrammar(fqdn string) bool {
	_, err := maintname.ParseHost(strings.TrimSuffix(fqdn, "."), s.domain)
	return err == nil
}
