package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"maintproxy/internal/guard"
)

// Server is the broker's agent endpoint (AgentPath): it authenticates agents, runs their
// sessions and keeps them in Registry.
type Server struct {
	Registry *Registry
	// SecretHash returns the bcrypt hash of the agent secret for id, or false if the
	// configuration has no such system.
	SecretHash func(id Identity) (string, bool)
	Logger     *slog.Logger
	Tuning     Tuning
	// admission guards logins: bcrypt checks need a slot, and a client address that sent
	// too many wrong secrets is refused (503, Retry-After) before any check.
	admission *guard.Admission
	// loginDeadline, when set, says by when an agent's session must be registered.
	loginDeadline func(r *http.Request) time.Time

	login    loginState
	sessions sync.WaitGroup
}

// ServerOption is an optional setting of NewServer.
type ServerOption func(*Server)

// WithAdmission makes a the admission control of agent logins (default: one with default
// settings).
func WithAdmission(a *guard.Admission) ServerOption {
	return func(s *Server) { s.admission = a }
}

// WithLoginDeadline bounds each agent's login: the session must be registered (the hello
// read) by deadline(r), e.g. a fixed time after the connection was accepted. Without it,
// the hello is awaited for 10 s after the websocket upgrade.
func WithLoginDeadline(deadline func(r *http.Request) time.Time) ServerOption {
	return func(s *Server) { s.loginDeadline = deadline }
}

// NewServer returns a Server; reg and secretHash are required.
func NewServer(reg *Registry, secretHash func(Identity) (string, bool), logger *slog.Logger, opts ...ServerOption) *Server {
	s := &Server{Registry: reg, SecretHash: secretHash, Logger: logger, login: newLoginState()}
	for _, o := range opts {
		o(s)
	}
	if s.admission == nil {
		s.admission = guard.New(func() guard.Settings { return guard.Settings{} }, nil)
	}
	return s
}

// ServeHTTP authenticates one agent and starts its session. It returns once the session is
// registered (an idle session then costs no handler goroutine); the session unregisters
// itself when it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.sessions.Add(1)
	handedOff := false
	defer func() {
		if !handedOff {
			s.sessions.Done()
		}
	}()
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "this endpoint is for maintagent websocket connections only", http.StatusUpgradeRequired)
		return
	}
	id, err := s.authenticate(r)
	if err != nil {
		s.refuseLogin(w, r, id, err)
		return
	}
	hash, _ := s.SecretHash(id)
	ws, err := acceptWS(w, r, FeaturesHeader+": "+FeaturePolicyUpdates+"\r\n")
	if err != nil {
		s.Logger.Warn("agent websocket upgrade failed", "remote", r.RemoteAddr, "identity", id.String(), "err", err)
		return
	}
	link, err := newMuxLink(ws, true, s.Tuning)
	if err != nil {
		return
	}
	policy, control, err := acceptHello(r.Context(), link.mux, s.helloDeadline(r))
	if err != nil {
		link.close()
		s.Logger.Warn("agent sent no valid hello", "remote", r.RemoteAddr, "identity", id.String(), "err", err)
		return
	}
	sess := &Session{id: id, link: link, since: time.Now(), remote: r.RemoteAddr, secretHash: hash}
	sess.setPolicy(policy)
	remote := r.RemoteAddr
	handedOff = true
	link.ws.onClose(func() {
		s.Registry.unregister(sess, time.Now())
		s.Logger.Info("agent disconnected", "identity", id.String(), "customer", id.Customer, "system", id.System,
			"remote", remote, "connected_for", time.Since(sess.since).Round(time.Millisecond).String())
		s.sessions.Done()
	})
	if old := s.Registry.register(sess); old != nil {
		s.Logger.Info("agent reconnected; closing its older session", "identity", id.String(), "old_remote", old.remote)
		old.Close()
	}
	s.Logger.Info("agent connected", "identity", id.String(), "customer", id.Customer, "system", id.System,
		"remote", r.RemoteAddr, "remote_access", policy.RemoteAccess, "colocated", policy.Colocated, "agent_version", policy.AgentVersion)
	// The hello stream stays the agent's control stream: an agent that knows of policy
	// updates writes each new policy there; one of an earlier release has closed it.
	go s.followPolicy(sess, control)
	// The agent has no reason to open streams after its hello: nothing accepts them, and
	// the broker's small accept backlog (newMuxLink) refuses all but one.
}

// helloDeadline is when the agent's hello must have arrived: the login deadline, or
// helloTimeout from now without one.
func (s *Server) helloDeadline(r *http.Request) time.Time {
	if s.loginDeadline != nil {
		return s.loginDeadline(r)
	}
	return time.Now().Add(helloTimeout)
}

// Agent protocol features a broker offers in its login answer (the websocket upgrade's
// FeaturesHeader, comma separated). An agent uses a feature only where it is offered, so
// agents and brokers of different releases interoperate.
const (
	// FeaturesHeader is the login answer's header that lists the broker's features.
	FeaturesHeader = "Maintproxy-Features"
	// FeaturePolicyUpdates: the broker keeps reading the hello stream, on which the agent
	// writes each changed policy as one more JSON Policy.
	FeaturePolicyUpdates = "policy-updates"
)

// readHello accepts the agent's first stream and decodes its policy, by deadline.
func readHello(ctx context.Context, mux *yamux.Session, deadline time.Time) (Policy, error) {
	p, st, err := acceptHello(ctx, mux, deadline)
	if st != nil {
		st.st.Close()
	}
	return p, err
}

// acceptHello accepts the agent's first stream and decodes its policy, by deadline. The
// stream is returned open, to read the agent's policy updates from.
func acceptHello(ctx context.Context, mux *yamux.Session, deadline time.Time) (Policy, *controlStream, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	st, err := mux.AcceptStreamWithContext(ctx)
	if err != nil {
		return Policy{}, nil, err
	}
	st.SetReadDeadline(deadline)
	c := newControlStream(st)
	p, err := c.next()
	if err != nil {
		st.Close()
		return Policy{}, nil, fmt.Errorf("decoding hello: %w", err)
	}
	st.SetReadDeadline(time.Time{})
	return p, c, nil
}

// controlStream reads the policies an agent writes on its hello stream, each one JSON
// Policy of at most maxHelloBytes.
type controlStream struct {
	st  *yamux.Stream
	lim *budgetReader
	dec *json.Decoder
}

func newControlStream(st *yamux.Stream) *controlStream {
	lim := &budgetReader{r: st}
	return &controlStream{st: st, lim: lim, dec: json.NewDecoder(lim)}
}

// next reads the next policy.
func (c *controlStream) next() (Policy, error) {
	c.lim.left = maxHelloBytes
	var p Policy
	if err := c.dec.Decode(&p); err != nil {
		return Policy{}, err
	}
	if p.Version != Version {
		return Policy{}, fmt.Errorf("agent speaks protocol %d, broker %d", p.Version, Version)
	}
	return p, nil
}

// budgetReader reads at most left more bytes, then fails: one policy cannot be endless.
type budgetReader struct {
	r    io.Reader
	left int
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("policy larger than %d bytes", maxHelloBytes)
	}
	n, err := b.r.Read(p[:min(len(p), b.left)])
	b.left -= n
	return n, err
}

// decodeHello reads one hello from r (for the fuzz target).
func decodeHello(r io.Reader) (Policy, error) {
	var p Policy
	if err := json.NewDecoder(io.LimitReader(r, maxHelloBytes)).Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("decoding hello: %w", err)
	}
	if p.Version != Version {
		return Policy{}, fmt.Errorf("agent speaks protocol %d, broker %d", p.Version, Version)
	}
	return p, nil
}

// followPolicy puts each policy the agent writes on its control stream in force until the
// stream or the session ends. An agent of an earlier release closed the stream after its
// hello, which ends this at once.
func (s *Server) followPolicy(sess *Session, c *controlStream) {
	defer c.st.Close()
	for {
		p, err := c.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, yamux.ErrStreamClosed) && !errors.Is(err, yamux.ErrSessionShutdown) &&
				!errors.Is(err, yamux.ErrConnectionReset) {
				s.Logger.Warn("agent policy update not understood; the control stream is closed", "identity", sess.id.String(), "err", err.Error())
			}
			return
		}
		s.Registry.policyChanged(sess, p)
		s.Logger.Info("agent policy updated", "identity", sess.id.String(), "customer", sess.id.Customer, "system", sess.id.System,
			"remote_access", p.RemoteAccess, "colocated", p.Colocated, "services", len(p.Services), "tunnels", len(p.Tunnels),
			"network", len(p.Network))
	}
}

// Wait blocks until every session handler has returned, or ctx is done.
func (s *Server) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("agent sessions still open: %w", ctx.Err())
	}
}

// CloseAll ends every live session (broker shutdown).
func (r *Registry) CloseAll() {
	r.Prune(func(Identity, string) bool { return false })
}
