package broker

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"maintproxy/certs"
)

// describedTTL is how long the access pages reuse a certificate description: with ACME it
// is read from the certificate cache (a store in cluster mode), and every overview shows it.
const describedTTL = 30 * time.Second

// describedCerts is the cached certs.Manager.Describe of the access pages.
type describedCerts struct {
	mu sync.Mutex
	at time.Time
	d  *certs.Description
}

// describeCerts returns what the listeners serve, at most describedTTL old. The result is
// shared: callers must not change it.
func (b *Broker) describeCerts() *certs.Description {
	c := &b.described
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d == nil || time.Since(c.at) > describedTTL {
		c.d, c.at = b.certs.Describe(), time.Now()
	}
	return c.d
}

// agentCA serves tunnel.AgentCAPath: the roots clients must trust, as PEM (during an
// identity CA rollover both the current and the next or previous CA). Agents fetch it
// after each login and keep it beside their ca_file; operators can give it to new agents
// as their ca_file. The roots are public, so it needs no login.
func (b *Broker) agentCA(w http.ResponseWriter, _ *http.Request) {
	root := b.certs.RootPEM()
	if len(root) == 0 {
		http.Error(w, "no root to publish: the served chain does not end in a root the broker knows (tls.files.root)", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(root)
}

// certsJSON serves GET /certs: what each listener serves, the published roots and the
// identity CA's rollover schedule (certs.Manager.Describe), for operators and monitoring.
// Everything in it is public (any TLS client sees the chains); the local paths of the
// source are left out.
func (b *Broker) certsJSON(w http.ResponseWriter, _ *http.Request) {
	d := b.certs.Describe()
	d.Source = ""
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(d)
}
