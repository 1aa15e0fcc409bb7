package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"maintproxy/config"
)

// Description says what the broker's listeners serve and which roots clients must trust:
// what `maintproxy certs show` prints and the operators' page shows.
type Description struct {
	Mode string `json:"mode"`
	// Source is where the certificates come from (data_dir, files, ACME cache).
	Source string   `json:"source"`
	Served []Served `json:"served"`
	// Roots are what clients must trust: the tool bundle's root file and GET /agent/v1/ca.
	Roots    []Cert    `json:"roots"`
	Rollover *Rollover `json:"rollover,omitempty"`
	Warning  string    `json:"warning,omitempty"`
	// At is the time the description refers to.
	At time.Time `json:"at"`
}

// Served is what one listener serves for one server name.
type Served struct {
	Listener string `json:"listener"` // proxy or web
	Address  string `json:"address"`
	Name     string `json:"name"`
	// Chain is the served chain, leaf first; empty when it is not known (Note says why).
	Chain []Cert `json:"chain,omitempty"`
	Note  string `json:"note,omitempty"`
}

// Cert describes one certificate.
type Cert struct {
	Role      string    `json:"role"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	SANs      []string  `json:"sans,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// DaysLeft is whole days until NotAfter at Description.At (negative once expired).
	DaysLeft int `json:"days_left"`
	// SHA256 is the fingerprint of the DER certificate, as `openssl x509 -fingerprint
	// -sha256` prints it.
	SHA256 string `json:"sha256"`
	Serial string `json:"serial"`
}

// Rollover is the schedule of the self-signed identity CA's rollover.
type Rollover struct {
	// RolloverBefore is tls.selfsigned.rollover_before.
	RolloverBefore string `json:"rollover_before"`
	// NextAt is when the next CA will be made; zero once it exists.
	NextAt time.Time `json:"next_at,omitzero"`
	// SwitchAt is when leaves start coming from the next CA; zero without one.
	SwitchAt time.Time `json:"switch_at,omitzero"`
	// PreviousUntil is when the previous CA leaves the published roots; zero without one.
	PreviousUntil time.Time `json:"previous_until,omitzero"`
}

// Describe returns what the running Manager serves now.
func (m *Manager) Describe() *Description {
	now := m.now()
	d := newDescription(m.cfg, now)
	switch s := m.source.(type) {
	case *selfSigned:
		s.mu.RLock()
		leaf := s.leaf.Leaf
		s.mu.RUnlock()
		describeSelfSigned(d, s.current(), leaf, m.cfg, s.store.where())
	case *filesSource:
		s.mu.RLock()
		cur := s.cur
		s.mu.RUnlock()
		describeFiles(d, cur, m.cfg)
	case *acmeSource:
		describeACME(d, s.am.Cache, s.root, m.cfg)
	}
	d.Warning = m.Warning()
	return d
}

// Inspect describes what a broker with cfg serves, from data_dir and the configured files
// alone: it neither starts a broker nor creates or changes anything. The self-signed leaf
// lives only in a running broker's memory, so it is described by what it covers; the
// running broker's Describe has it in full. Errors name the config field.
func Inspect(cfg *config.Broker, now time.Time) (*Description, error) {
	return InspectIn(cfg, nil, now)
}

// InspectIn is Inspect with the identity CAs read from shared (cluster mode), or from
// data_dir when shared is nil.
func InspectIn(cfg *config.Broker, shared CAStore, now time.Time) (*Description, error) {
	d := newDescription(cfg, now)
	switch cfg.TLS.Mode {
	case config.ModeSelfSigned:
		st, place := storeFor(cfg, shared), "data_dir"
		if shared != nil {
			place = "the cluster store"
		}
		set, err := st.load()
		if errors.Is(err, errNoCA) {
			for i := range d.Served {
				d.Served[i].Note = "no identity CA in " + place + " yet: the broker makes one at its first start"
			}
			return d, nil
		}
		if err != nil {
			return nil, err
		}
		describeSelfSigned(d, set, nil, cfg, st.where())
		s := &selfSigned{set: set, rolloverBefore: cfg.TLS.SelfSigned.RolloverBefore}
		d.Warning = s.warning(now)
	case config.ModeFiles:
		lf, err := loadFiles(cfg, now)
		if err != nil {
			return nil, err
		}
		describeFiles(d, lf, cfg)
		d.Warning = (&filesSource{m: &Manager{cfg: cfg}, cur: lf}).warning(now)
	case config.ModeACME:
		root, err := acmeRoot(cfg)
		if err != nil {
			return nil, err
		}
		describeACME(d, autocert.DirCache(acmeCacheDir(cfg)), root, cfg)
	default:
		return nil, fmt.Errorf("tls.mode: %q is not one of selfsigned, acme, files", cfg.TLS.Mode)
	}
	return d, nil
}

// newDescription lists the listeners and the names each serves.
func newDescription(cfg *config.Broker, now time.Time) *Description {
	d := &Description{Mode: cfg.TLS.Mode, At: now.UTC()}
	d.Served = []Served{
		{Listener: "proxy", Address: cfg.Listen.Proxy, Name: cfg.ProxyHost()},
		{Listener: "web", Address: cfg.Listen.Web, Name: cfg.WebHost()},
	}
	if cfg.TLS.Mode == config.ModeACME {
		for _, n := range cfg.TLS.ACME.ExtraNames {
			if n != cfg.ProxyHost() && n != cfg.WebHost() {
				d.Served = append(d.Served, Served{Listener: "web", Address: cfg.Listen.Web, Name: n})
			}
		}
	}
	return d
}

func describeSelfSigned(d *Description, set *caSet, leaf *x509.Certificate, cfg *config.Broker, where string) {
	d.Source = "identity CA in " + where
	rb := cfg.TLS.SelfSigned.RolloverBefore
	for i := range d.Served {
		if leaf == nil {
			dns, ips := (&Manager{cfg: cfg}).leafNames()
			sans := dns
			for _, ip := range ips {
				sans = append(sans, ip.String())
			}
			d.Served[i].Note = "the running broker serves a leaf from the current identity CA, made in memory at start " +
				"(90 days, renewed 30 days before it expires) for " + strings.Join(sans, ", ")
			continue
		}
		d.Served[i].Chain = []Cert{describeCert("leaf", leaf, d.At), describeCert("identity CA", set.cur.cert, d.At)}
	}
	d.Roots = append(d.Roots, describeCert("identity CA, current: signs the leaves", set.cur.cert, d.At))
	r := &Rollover{RolloverBefore: fmt.Sprintf("%s (%d days)", rb, int(rb.Hours()/24))}
	if set.next != nil {
		r.SwitchAt = switchAt(set.cur, set.next, rb).UTC()
		d.Roots = append(d.Roots, describeCert("identity CA, next: signs the leaves from "+
			r.SwitchAt.Format(time.DateOnly), set.next.cert, d.At))
	} else {
		r.NextAt = set.cur.cert.NotAfter.Add(-rb).UTC()
	}
	if set.prev != nil && d.At.Before(set.prev.cert.NotAfter) {
		r.PreviousUntil = set.prev.cert.NotAfter.UTC()
		d.Roots = append(d.Roots, describeCert("identity CA, previous: published until it expires", set.prev.cert, d.At))
	}
	d.Rollover = r
}

func describeFiles(d *Description, lf *loadedFiles, cfg *config.Broker) {
	if cfg.TLS.Files.PKCS12 != "" {
		d.Source = "tls.files.pkcs12 " + cfg.TLS.Files.PKCS12
	} else {
		d.Source = "tls.files.cert " + cfg.TLS.Files.Cert
	}
	chain := describeChain(lf.cert.Certificate, d.At)
	for i := range d.Served {
		d.Served[i].Chain = chain
	}
	if roots, err := parseCerts(lf.root); err == nil {
		role := "root: the top of the served chain"
		if cfg.TLS.Files.Root != "" {
			role = "root: tls.files.root"
		}
		d.Roots = append(d.Roots, describeCert(role, roots[0], d.At))
	}
}

// acmeReadTimeout bounds reading the ACME cache (a store in cluster mode).
const acmeReadTimeout = 5 * time.Second

func describeACME(d *Description, cache autocert.Cache, root []byte, cfg *config.Broker) {
	d.Source = "ACME " + cfg.TLS.ACME.DirectoryURL
	ctx, cancel := context.WithTimeout(context.Background(), acmeReadTimeout)
	defer cancel()
	for i := range d.Served {
		// autocert caches an ECDSA certificate under the name and an RSA one under name+rsa.
		data, err := cache.Get(ctx, d.Served[i].Name)
		if errors.Is(err, autocert.ErrCacheMiss) {
			data, err = cache.Get(ctx, d.Served[i].Name+"+rsa")
		}
		if err != nil {
			d.Served[i].Note = "no certificate cached yet: the broker obtains one from the ACME CA"
			continue
		}
		certs, err := parseCerts(data)
		if err != nil {
			d.Served[i].Note = "the cached certificate cannot be read: " + err.Error()
			continue
		}
		var ders [][]byte
		for _, c := range certs {
			ders = append(ders, c.Raw)
		}
		d.Served[i].Chain = describeChain(ders, d.At)
	}
	if roots, err := parseCerts(root); err == nil {
		role := "root: ISRG Root X1 (Let's Encrypt)"
		if cfg.TLS.ACME.RootFile != "" {
			role = "root: tls.acme.root_file"
		}
		d.Roots = append(d.Roots, describeCert(role, roots[0], d.At))
	}
}

// describeChain describes a served chain, leaf first.
func describeChain(ders [][]byte, now time.Time) []Cert {
	var out []Cert
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			continue
		}
		role := "intermediate"
		switch {
		case i == 0:
			role = "leaf"
		case isSelfSigned(c):
			role = "root"
		}
		out = append(out, describeCert(role, c, now))
	}
	return out
}

func describeCert(role string, c *x509.Certificate, now time.Time) Cert {
	sans := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	return Cert{
		Role: role, Subject: c.Subject.String(), Issuer: c.Issuer.String(), SANs: sans,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		DaysLeft: int(c.NotAfter.Sub(now).Hours() / 24),
		SHA256:   fingerprint(c), Serial: fmt.Sprintf("%X", c.SerialNumber),
	}
}

// fingerprint is c's SHA-256 fingerprint in upper-case hex pairs joined by colons.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	var b strings.Builder
	for i, v := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", v)
	}
	return b.String()
}

// optFingerprint is fingerprint for an optional CA ("" without one).
func optFingerprint(ca *identityCA) string {
	if ca == nil {
		return ""
	}
	return fingerprint(ca.cert)
}

// WriteText writes d for people: one block per listener and name, then the roots, the
// rollover schedule and any warning.
func (d *Description) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "tls.mode %s: %s (as of %s)\n", d.Mode, d.Source, d.At.Format("2006-01-02 15:04 MST"))
	for _, s := range d.Served {
		fmt.Fprintf(&b, "\n%s listener %s serves %s", s.Listener, s.Address, s.Name)
		if s.Listener == "proxy" {
			b.WriteString(" (also to handshakes without a known name)")
		}
		b.WriteString("\n")
		if s.Note != "" {
			fmt.Fprintf(&b, "  %s\n", s.Note)
		}
		for _, c := range s.Chain {
			writeCert(&b, c)
		}
	}
	if len(d.Roots) > 0 {
		b.WriteString("\nroots clients trust (tool bundle, GET /agent/v1/ca)\n")
		for _, c := range d.Roots {
			writeCert(&b, c)
		}
	}
	if r := d.Rollover; r != nil {
		fmt.Fprintf(&b, "\nidentity CA rollover (tls.selfsigned.rollover_before %s)\n", r.RolloverBefore)
		if !r.NextAt.IsZero() {
			fmt.Fprintf(&b, "  next CA made and published  %s\n", r.NextAt.Format(time.DateOnly))
		}
		if !r.SwitchAt.IsZero() {
			fmt.Fprintf(&b, "  leaves switch to the next CA %s\n", r.SwitchAt.Format(time.DateOnly))
		}
		if !r.PreviousUntil.IsZero() {
			fmt.Fprintf(&b, "  previous CA published until %s\n", r.PreviousUntil.Format(time.DateOnly))
		}
	}
	if d.Warning != "" {
		fmt.Fprintf(&b, "\nwarning: %s\n", d.Warning)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeCert(b *strings.Builder, c Cert) {
	left := fmt.Sprintf("%d days left", c.DaysLeft)
	if c.DaysLeft < 0 {
		left = "EXPIRED"
	}
	fmt.Fprintf(b, "  %s\n", c.Role)
	fmt.Fprintf(b, "    subject   %s\n", c.Subject)
	fmt.Fprintf(b, "    issuer    %s\n", c.Issuer)
	if len(c.SANs) > 0 {
		fmt.Fprintf(b, "    SANs      %s\n", strings.Join(c.SANs, ", "))
	}
	fmt.Fprintf(b, "    valid     %s to %s (%s)\n", c.NotBefore.Format("2006-01-02 15:04 MST"),
		c.NotAfter.Format("2006-01-02 15:04 MST"), left)
	fmt.Fprintf(b, "    SHA-256   %s\n", c.SHA256)
	fmt.Fprintf(b, "    serial    %s\n", c.Serial)
}
