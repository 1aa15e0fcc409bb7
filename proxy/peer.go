package proxy

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"time"

	"maintproxy/internal/relay"
	"maintproxy/tunnel"
)

// PeerStream is the holder's end of a tunnel another broker forwards: Reply answers the
// request once; after PeerOK the stream carries the tunnel's bytes.
type PeerStream interface {
	net.Conn
	Reply(code PeerCode, msg string) error
}

// ServePeer serves a tunnel that broker from forwards for an account it authenticated. It
// checks again what the agent's broker decides: the account manages the customer (in this
// broker's configuration), the system exists, this broker holds its agent, the per-system
// limit; then it opens the agent's stream and answers with the agent's code. The
// customer and system come from the request and the agent session must be this broker's
// own for exactly that system, so a tunnel never reaches another customer. It returns when
// the tunnel has ended or ctx (the peer link) is done.
func (s *Server) ServePeer(ctx context.Context, from string, req PeerRequest, st PeerStream) {
	start := time.Now()
	cfg := s.opts.Config()
	rec := []any{"session", hex.EncodeToString(req.Session[:8]), "from", from, "account", req.Account}
	if req.User != "" && req.User != req.Account {
		rec = append(rec, "person", req.User)
	}
	rec = append(rec, "client", req.ClientAddr, "customer", req.Customer, "system", req.System, "port", req.Port)
	if req.Through != "" {
		rec = append(rec, "through", req.Through)
	}
	id, via, err := s.peerRoute(req)
	var stream net.Conn
	if err == nil {
		octx, cancel := context.WithTimeout(ctx, openTimeout)
		stream, err = localAgents{s}.openAgent(octx, openRequest{cfg: cfg, id: id, via: via, ip: req.IP, port: req.Port,
			session: req.Session, account: req.Account, user: req.User, client: req.ClientAddr})
		cancel()
	}
	code, msg := peerCode(err)
	if rerr := st.Reply(code, msg); rerr != nil && err == nil {
		err = rerr
		stream.Close()
	}
	if err != nil {
		s.opts.Audit.Info("peer tunnel", append(rec, "result", "refused", "reason", err.Error())...)
		return
	}
	// The forwarding broker's link ending ends the tunnel at once.
	stop := context.AfterFunc(ctx, func() { st.Close(); stream.Close() })
	defer stop()
	s.count.peerActive.Add(1)
	up, down, rerr := relay.Copy(st, stream)
	s.count.peerActive.Add(-1)
	s.opts.Audit.Info("peer tunnel", append(rec, "result", "ok", "bytes_up", up, "bytes_down", down,
		"duration_ms", time.Since(start).Milliseconds(), "end", cmp.Or(relay.ErrText(rerr), "closed"))...)
}

// peerRoute re-checks a forwarded request against this broker's configuration: it returns
// the system whose agent carries the tunnel and, for a request Through another system's
// agent, the system the tunnel goes to.
func (s *Server) peerRoute(req PeerRequest) (tunnel.Identity, string, error) {
	cfg := s.opts.Config()
	acct := cfg.Account(req.Account)
	cust := cfg.Customer(req.Customer)
	if acct == nil || cust == nil || !acct.Manages(cust.ID) {
		return tunnel.Identity{}, "", ErrNotManaged
	}
	sys := cust.System(req.System)
	if sys == nil || req.System == "" {
		return tunnel.Identity{}, "", fmt.Errorf("%w: customer %s has no system %q", ErrNoSystem, cust.ID, req.System)
	}
	if req.Through == "" {
		return tunnel.NewIdentity(cust.ID, sys.Name), "", nil
	}
	carrier := cust.System(req.Through)
	if carrier == nil {
		return tunnel.Identity{}, "", fmt.Errorf("%w: customer %s has no system %q", ErrNoSystem, cust.ID, req.Through)
	}
	return tunnel.NewIdentity(cust.ID, carrier.Name), sys.Name, nil
}
