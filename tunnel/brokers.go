package tunnel

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// failedFor is how long a broker address that failed counts as failed: it is tried after
// the others meanwhile.
const failedFor = time.Minute

// brokerPicker chooses the broker address each of an agent's connections dials: the
// configured broker_addrs, or every address the URL's host resolves to. The order is
// shuffled (a fleet spreads over the brokers), addresses that failed recently go last
// (the most recent last of all), and an address another connection of this agent holds is
// left out, so that each connection reaches a different broker.
type brokerPicker struct {
	static   []string
	host     string // the URL's host, resolved when static is empty
	port     string
	hostPort string // what the HTTP transport asks to dial for the URL

	mu     sync.Mutex
	held   map[string]int // address → connection holding (or dialling) it
	failed map[string]time.Time
}

func newBrokerPicker(static []string, host, port string) *brokerPicker {
	return &brokerPicker{static: static, host: host, port: port, hostPort: net.JoinHostPort(host, port),
		held: map[string]int{}, failed: map[string]time.Time{}}
}

// candidates lists the addresses connection conn may try now, in order (conn -1: any
// address, held or not).
func (p *brokerPicker) candidates(ctx context.Context, conn int) ([]string, error) {
	addrs := p.static
	if len(addrs) == 0 {
		ips, err := net.DefaultResolver.LookupHost(ctx, p.host)
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip, p.port))
		}
	}
	addrs = slices.Clone(addrs)
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var fresh, failed []string
	for _, a := range addrs {
		if c, ok := p.held[a]; ok && c != conn && conn >= 0 {
			continue
		}
		if t, ok := p.failed[a]; ok && now.Sub(t) < failedFor {
			failed = append(failed, a)
		} else {
			fresh = append(fresh, a)
		}
	}
	slices.SortStableFunc(failed, func(a, b string) int { return p.failed[a].Compare(p.failed[b]) })
	if len(fresh)+len(failed) == 0 {
		return nil, fmt.Errorf("every broker address (%d) is held by another of this agent's connections", len(addrs))
	}
	return append(fresh, failed...), nil
}

// claim reserves addr for conn unless another connection took it meanwhile.
func (p *brokerPicker) claim(addr string, conn int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.held[addr]; ok && c != conn {
		return false
	}
	p.held[addr] = conn
	return true
}

// release gives addr back; failed says the connection to it failed or ended.
func (p *brokerPicker) release(addr string, conn int, failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[addr] == conn {
		delete(p.held, addr)
	}
	if failed {
		p.failed[addr] = time.Now()
	}
}

// brokerConn is one of an agent's connections: its own HTTP client, whose dials go to the
// address the picker chooses, and the address it holds.
type brokerConn struct {
	n      int
	picker *brokerPicker
	client *http.Client
	// dialOne dials one address the way the base transport would (batched link socket).
	dialOne func(ctx context.Context, network, addr string) (net.Conn, error)

	mu   sync.Mutex
	addr string // held while a session to it runs
}

// newBrokerConn builds connection n's client on a copy of base (TLS settings, proxy).
func newBrokerConn(n int, p *brokerPicker, base *http.Transport) *brokerConn {
	c := &brokerConn{n: n, picker: p, dialOne: base.DialContext}
	if c.dialOne == nil {
		d := &net.Dialer{Timeout: connectTimeout}
		c.dialOne = d.DialContext
	}
	tr := base.Clone()
	tr.DialContext = c.dial
	// A refused upgrade must not leave a pooled connection behind that the next attempt
	// would reuse: every attempt dials, so it goes where the picker says.
	tr.DisableKeepAlives = true
	c.client = &http.Client{Transport: tr}
	return c
}

// dial connects to the broker: addresses are tried in the picker's order until one
// answers. A dial to anything else (an HTTP proxy from the environment) goes as asked.
func (c *brokerConn) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if addr != c.picker.hostPort {
		return c.dialOne(ctx, network, addr)
	}
	cands, err := c.picker.candidates(ctx, c.n)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range cands {
		if !c.picker.claim(a, c.n) {
			continue
		}
		// Each address gets a share of the time left, so one black hole does not use it all.
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok && len(cands) > 1 {
			dctx, cancel = context.WithTimeout(ctx, max(time.Until(dl)/2, 2*time.Second))
		}
		conn, err := c.dialOne(dctx, network, a)
		cancel()
		if err == nil {
			c.mu.Lock()
			c.addr = a
			c.mu.Unlock()
			return conn, nil
		}
		c.picker.release(a, c.n, true)
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("every broker address is held by another of this agent's connections")
	}
	return nil, errors.Join(errs...)
}

// done releases the address the last session used; failed puts it last for a while.
func (c *brokerConn) done(failed bool) {
	c.mu.Lock()
	a := c.addr
	c.addr = ""
	c.mu.Unlock()
	if a != "" {
		c.picker.release(a, c.n, failed)
	}
}

// current is the address of the broker the connection holds ("" when none).
func (c *brokerConn) current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// fetchClient is an HTTP client for the agent's other requests to the broker (the
// published roots): it dials the broker addresses in the picker's order without holding
// one, so the connections' choices stay as they are.
func fetchClient(p *brokerPicker, base *http.Transport) *http.Client {
	dialOne := base.DialContext
	if dialOne == nil {
		d := &net.Dialer{Timeout: connectTimeout}
		dialOne = d.DialContext
	}
	tr := base.Clone()
	tr.DisableKeepAlives = true
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != p.hostPort {
			return dialOne(ctx, network, addr)
		}
		cands, err := p.candidates(ctx, -1)
		if err != nil {
			return nil, err
		}
		var errs []error
		for _, a := range cands {
			conn, err := dialOne(ctx, network, a)
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return nil, errors.Join(errs...)
	}
	return &http.Client{Transport: tr}
}
