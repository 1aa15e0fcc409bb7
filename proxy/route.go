package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"maintproxy/config"
	"maintproxy/internal/relay"
	"maintproxy/tunnel"
)

// Peers is what the proxy needs of a cluster's other brokers to reach an agent that this
// broker does not hold. Nil for a single broker.
type Peers interface {
	// Node names this broker (the audit record's via).
	Node() string
	// Holders lists the brokers holding a session of customer/system, preferred first
	// (every broker orders them alike, so one holder carries all of a system's tunnels and
	// counts them exactly); it may include this broker. It reads memory only.
	Holders(customer, system string) []string
	// Open asks node for a tunnel. A non-nil err is a transport failure (another holder
	// may do); otherwise code and msg are the holder's answer, and with PeerOK conn carries
	// the tunnel's bytes.
	Open(ctx context.Context, node string, req PeerRequest) (conn net.Conn, code PeerCode, msg string, err error)
}

// SharedLimits shares the number of open tunnels per account between brokers, so that
// limits.per_account holds for the cluster. Nil for a single broker.
type SharedLimits interface {
	// RemoteAccountTunnels is the number of tunnels other brokers have open for account.
	RemoteAccountTunnels(account string) int
	// SetAccountTunnels publishes this broker's number; it must not block.
	SetAccountTunnels(account string, n int)
}

// PeerRequest asks the broker holding an agent for one tunnel on behalf of an account
// that the asking broker has authenticated.
type PeerRequest struct {
	Customer, System string
	// IP is the co-located server; the zero Addr means the system itself.
	IP         netip.Addr
	Port       uint16
	Account    string
	ClientAddr string
	// User is who asked: the person's username for a personal login, else the account's.
	User string
	// Session is the tunnel's id, so both brokers' records and the agent's name one tunnel.
	Session [16]byte
	// Through, when set, is the system whose agent carries the tunnel to System (which has
	// no agent of its own).
	Through string
}

// openRequest is one tunnel to open to a system's agent.
type openRequest struct {
	cfg *config.Broker
	// id is the system whose agent carries the tunnel.
	id tunnel.Identity
	// via, when set, is the system of id's network the tunnel goes to (id's agent reaches
	// it; it has no agent of its own).
	via     string
	ip      netip.Addr
	port    uint16
	session [16]byte
	account string
	// user is who asked: the person's username for a personal login, else the account's.
	user   string
	client string
}

// streamUser is what the stream header's user field carries for r, so that the agent's
// audit line names who came in: the person for a personal login, else the account (also
// for a tunnel forwarded by a broker that sends no user).
func streamUser(r openRequest) string { return cmp.Or(r.user, r.account) }

// agentOpener opens a tunnel to the agent of one system: through this broker's own session
// with it (localAgents) or through a broker that holds one (peerAgent). Errors are the
// refusals of the failure table; errTransport marks a holder that could not be asked.
type agentOpener interface {
	openAgent(ctx context.Context, r openRequest) (net.Conn, error)
}

// errTransport wraps a failure to reach a holder broker: presence may be stale, another
// holder may do.
var errTransport = errors.New("the broker holding the agent cannot be reached")

// localAgents opens tunnels through this broker's agent sessions; the per-system limit is
// counted here, for every tunnel through the session, wherever the technician came in.
type localAgents struct{ s *Server }

func (l localAgents) openAgent(ctx context.Context, r openRequest) (net.Conn, error) {
	reg := l.s.opts.Registry
	sess := reg.Get(r.id)
	if sess == nil {
		return nil, fmt.Errorf("%w: %s", ErrOffline, offlineText(r.id, reg.Status(r.id)))
	}
	release, err := l.s.reserveSystem(r.cfg, r.id)
	if err != nil {
		return nil, err
	}
	stream, err := sess.Open(ctx, tunnel.Header{Port: r.port, IP: r.ip, Session: r.session,
		User: streamUser(r), Client: r.client, System: r.via})
	if err != nil {
		release()
		return nil, err
	}
	return &releasingConn{Conn: stream, release: release}, nil
}

// peerAgent opens tunnels through the broker node, which holds the agent.
type peerAgent struct {
	peers Peers
	node  string
}

func (p peerAgent) openAgent(ctx context.Context, r openRequest) (net.Conn, error) {
	req := PeerRequest{
		Customer: r.id.Customer, System: r.id.System, IP: r.ip, Port: r.port,
		Account: r.account, ClientAddr: r.client, User: r.user, Session: r.session,
	}
	if r.via != "" {
		req.System, req.Through = r.via, r.id.System
	}
	conn, code, msg, err := p.peers.Open(ctx, p.node, req)
	if err != nil {
		return nil, fmt.Errorf("%w (%s): %v", errTransport, p.node, err)
	}
	if code != PeerOK {
		return nil, peerErr(code, msg)
	}
	return conn, nil
}

// openAgent opens the tunnel r through the agent session that should carry it and says
// which broker that is (empty for a single broker). In cluster mode the first holder in
// presence carries it (this broker's own session when that is the one); when a holder
// cannot be reached or no longer has the agent the next is tried, presence is read once
// more, and if none answers the system is reported as reconnecting.
func (s *Server) openAgent(ctx context.Context, r openRequest) (net.Conn, string, error) {
	local := localAgents{s}
	peers := s.opts.Peers
	if peers == nil {
		c, err := local.openAgent(ctx, r)
		return c, "", err
	}
	self := peers.Node()
	tried := map[string]bool{}
	var lastErr error
	unreachable := ""
	var listed [2][]string // the holders of each round, for the log of a refusal
	for round := 0; round < 2; round++ {
		nodes := peers.Holders(r.id.Customer, r.id.System)
		// A session this broker has just accepted may not be in presence yet.
		if s.opts.Registry.Get(r.id) != nil && !contains(nodes, self) {
			nodes = append([]string{self}, nodes...)
		}
		listed[round] = nodes
		for _, node := range nodes {
			if tried[node] {
				continue
			}
			tried[node] = true
			var o agentOpener = peerAgent{peers, node}
			if node == self {
				if s.opts.Registry.Get(r.id) == nil {
					continue // presence is behind: the session just ended
				}
				o = local
			}
			c, err := o.openAgent(ctx, r)
			if err == nil {
				return c, node, nil
			}
			if ctx.Err() != nil {
				return nil, node, err
			}
			switch {
			case errors.Is(err, errTransport):
				unreachable = node
			case errors.Is(err, ErrOffline), errors.Is(err, tunnel.ErrSessionClosed):
				// That holder lost the agent since presence said so: try the next one.
			default:
				return nil, node, err // the holder's answer: what a local tunnel would give
			}
			s.opts.Logger.Info("holder could not carry the tunnel; trying another", "node", node,
				"customer", r.id.Customer, "system", r.id.System, "err", err.Error())
			lastErr = err
		}
	}
	// Worth an operator's eye only when some broker was said to hold the agent; a plain
	// offline system is in the audit record already.
	level := slog.LevelDebug
	if len(listed[0]) > 0 || len(listed[1]) > 0 {
		level = slog.LevelInfo
	}
	s.opts.Logger.Log(ctx, level, "no broker could carry the tunnel", "customer", r.id.Customer, "system", r.id.System,
		"holders", strings.Join(listed[0], ","), "holders_reread", strings.Join(listed[1], ","),
		"unreachable", unreachable, "err", errText(lastErr))
	if unreachable != "" {
		return nil, "", fmt.Errorf("%w: system %s-%s is reconnecting (the broker holding its agent, %s, cannot be reached); try again in a few seconds",
			ErrOffline, r.id.Customer, r.id.System, unreachable)
	}
	if lastErr != nil {
		return nil, "", lastErr
	}
	return nil, "", fmt.Errorf("%w: %s", ErrOffline, offlineText(r.id, s.opts.Registry.Status(r.id)))
}

// errText is err's text, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// releasingConn gives a reservation back once, when the tunnel is closed.
type releasingConn struct {
	net.Conn
	release func()
	once    sync.Once
}

// CloseWrite half-closes the stream (relay.Copy passes a clean end on with it).
func (c *releasingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// ReadMore and WaitReadable pass the stream's on (relay.ReadyReader), so that the relay
// holds no buffer while the tunnel waits.
func (c *releasingConn) ReadMore(p []byte) (int, error) {
	if r, ok := c.Conn.(relay.MoreReader); ok {
		return r.ReadMore(p)
	}
	return 0, errors.ErrUnsupported
}

func (c *releasingConn) WaitReadable() error {
	if r, ok := c.Conn.(relay.ReadyReader); ok {
		return r.WaitReadable()
	}
	return errors.ErrUnsupported
}

// Reset resets the stream (relay tears an erring tunnel down with it) and releases the
// reservation.
func (c *releasingConn) Reset() error {
	if r, ok := c.Conn.(interface{ Reset() error }); ok {
		r.Reset()
	}
	return c.Close()
}

// Close closes the stream and releases the reservation.
func (c *releasingConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
