package tunnel

import (
	"bytes"
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

	"maintproxy/internal/mux"

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
	// onRefused, when set, hears of each refused agent login (the broker's status).
	onRefused func(LoginRefused)

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

// WithLoginObserver makes f hear of every agent login refused for the agent's own reasons
// (wrong secret, unknown system, locked out); refusals for the broker's load do not count.
// f is called on the login path: it must not block.
func WithLoginObserver(f func(LoginRefused)) ServerOption {
	return func(s *Server) { s.onRefused = f }
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
	// Policy updates come as text messages, read by the link's own reader: an idle session
	// costs no goroutine for them.
	inbox := &policyInbox{s: s, id: id}
	ws.onText = inbox.receive
	link, err := newMuxLink(ws, true, s.Tuning)
	if err != nil {
		return
	}
	policy, err := readHello(r.Context(), link.mux, s.helloDeadline(r))
	if err != nil {
		link.close()
		s.Logger.Warn("agent sent no valid hello", "remote", r.RemoteAddr, "identity", id.String(), "err", err)
		if errors.As(err, new(protocolError)) {
			s.observeRefusal(r, id, err) // an agent that cannot work with this broker until updated
		}
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
		"remote", r.RemoteAddr, "remote_access", policy.RemoteAccess, "colocated", policy.Colocated, "network", len(policy.Network),
		"agent_version", policy.AgentVersion)
	inbox.attach(sess)
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
	// FeaturePolicyUpdates: after its hello the agent may send each changed policy as one
	// websocket text message (one JSON Policy, at most 64 KiB).
	FeaturePolicyUpdates = "policy-updates"
)

// readHello accepts the agent's first stream and decodes its policy, by deadline.
func readHello(ctx context.Context, sess *mux.Session, deadline time.Time) (Policy, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	st, err := sess.Accept(ctx)
	if err != nil {
		return Policy{}, err
	}
	defer st.Close()
	st.SetReadDeadline(deadline)
	return decodeHello(st)
}

// decodeHello reads the agent's hello: one JSON Policy of at most maxHelloBytes.
func decodeHello(r io.Reader) (Policy, error) {
	var p Policy
	if err := json.NewDecoder(io.LimitReader(r, maxHelloBytes)).Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("decoding hello: %w", err)
	}
	if p.Version != Version {
		return Policy{}, protocolError{p.Version}
	}
	return p, nil
}

// protocolError is a hello of another protocol version than the broker's.
type protocolError struct{ version int }

func (e protocolError) Error() string {
	return fmt.Sprintf("agent speaks protocol %d, broker %d", e.version, Version)
}

// policyInbox takes an agent's policy updates (websocket text messages) for its session.
// An update may overtake the hello (it does not queue behind the hello's stream data); it
// waits here until the session is registered, and the newest one then wins.
type policyInbox struct {
	s       *Server
	id      Identity
	mu      sync.Mutex
	sess    *Session
	pending *Policy
	// logged is when an update was last logged; suppressed counts those not logged since.
	logged     time.Time
	suppressed int
}

// receive handles one text message, in the link's reader goroutine (it must not block:
// the registry's change hook does not).
func (in *policyInbox) receive(msg []byte) {
	p, err := decodeHello(bytes.NewReader(msg))
	if err != nil {
		in.s.Logger.Warn("agent policy update not understood; the previous policy stays", "identity", in.id.String(), "err", err.Error())
		return
	}
	in.mu.Lock()
	sess := in.sess
	if sess == nil {
		in.pending = &p
	}
	in.mu.Unlock()
	if sess != nil {
		in.apply(sess, p)
	}
}

// attach makes sess the inbox's session and applies an update that came before it.
func (in *policyInbox) attach(sess *Session) {
	in.mu.Lock()
	in.sess = sess
	p := in.pending
	in.pending = nil
	in.mu.Unlock()
	if p != nil {
		in.apply(sess, *p)
	}
}

// apply puts p in force. The agent sends only real changes, a few a minute at most; one
// that sends more gets one log record a second (every update still applies).
func (in *policyInbox) apply(sess *Session, p Policy) {
	in.s.Registry.policyChanged(sess, p)
	in.mu.Lock()
	now := time.Now()
	quiet := now.Sub(in.logged) < time.Second
	if quiet {
		in.suppressed++
	} else {
		in.logged = now
	}
	suppressed := in.suppressed
	if !quiet {
		in.suppressed = 0
	}
	in.mu.Unlock()
	if quiet {
		return
	}
	in.s.Logger.Info("agent policy updated", "identity", in.id.String(), "customer", in.id.Customer, "system", in.id.System,
		"remote_access", p.RemoteAccess, "colocated", p.Colocated, "services", len(p.Services), "tunnels", len(p.Tunnels),
		"network", len(p.Network), "suppressed_since_last", suppressed)
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
