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

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"

	"maintproxy/config"
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

	logins   chan struct{} // bounds concurrent bcrypt checks of agent logins
	sessions sync.WaitGroup
}

// DefaultMaxConcurrentLogins is how many agent logins are checked at once unless
// WithMaxConcurrentLogins says otherwise.
const DefaultMaxConcurrentLogins = 4

// ServerOption is an optional setting of NewServer.
type ServerOption func(*Server)

// WithMaxConcurrentLogins bounds the bcrypt work of agent logins to n checks at once
// (n < 1 means the default); later logins wait their turn.
func WithMaxConcurrentLogins(n int) ServerOption {
	return func(s *Server) {
		if n >= 1 {
			s.logins = make(chan struct{}, n)
		}
	}
}

// NewServer returns a Server; reg and secretHash are required.
func NewServer(reg *Registry, secretHash func(Identity) (string, bool), logger *slog.Logger, opts ...ServerOption) *Server {
	s := &Server{Registry: reg, SecretHash: secretHash, Logger: logger,
		logins: make(chan struct{}, DefaultMaxConcurrentLogins)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ServeHTTP authenticates one agent and serves its session until it ends. It stays in the
// handler for the whole life of the session.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.sessions.Add(1)
	defer s.sessions.Done()
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "this endpoint is for maintagent websocket connections only", http.StatusUpgradeRequired)
		return
	}
	id, err := s.authenticate(r)
	if err != nil {
		s.Logger.Warn("agent login refused", "remote", r.RemoteAddr, "identity", id.String(), "reason", err.Error())
		w.Header().Set("WWW-Authenticate", `Basic realm="maintagent"`)
		http.Error(w, "agent authentication failed: check customer, system and secret in the agent's configuration", http.StatusUnauthorized)
		return
	}
	hash, _ := s.SecretHash(id)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		s.Logger.Warn("agent websocket upgrade failed", "remote", r.RemoteAddr, "identity", id.String(), "err", err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	mux, err := yamux.Client(wsNetConn(ctx, ws), s.Tuning.muxConfig())
	if err != nil {
		ws.CloseNow()
		return
	}
	defer mux.Close()
	defer ws.CloseNow()
	policy, err := readHello(ctx, mux)
	if err != nil {
		s.Logger.Warn("agent sent no valid hello", "remote", r.RemoteAddr, "identity", id.String(), "err", err)
		return
	}
	sess := &Session{id: id, mux: mux, ws: ws, policy: policy, since: time.Now(), remote: r.RemoteAddr, secretHash: hash}
	if old := s.Registry.register(sess); old != nil {
		s.Logger.Info("agent reconnected; closing its older session", "identity", id.String(), "old_remote", old.remote)
		old.Close()
	}
	s.Logger.Info("agent connected", "identity", id.String(), "customer", id.Customer, "system", id.System,
		"remote", r.RemoteAddr, "remote_access", policy.RemoteAccess, "colocated", policy.Colocated, "agent_version", policy.AgentVersion)
	// The agent has no reason to open streams after its hello; refuse any it opens.
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			break
		}
		st.Close()
	}
	s.Registry.unregister(sess, time.Now())
	s.Logger.Info("agent disconnected", "identity", id.String(), "customer", id.Customer, "system", id.System,
		"remote", r.RemoteAddr, "connected_for", time.Since(sess.since).Round(time.Millisecond).String())
}

func (s *Server) authenticate(r *http.Request) (Identity, error) {
	user, secret, ok := r.BasicAuth()
	if !ok {
		return Identity{}, errors.New("no credentials")
	}
	customer, system, ok := strings.Cut(user, "/")
	id := NewIdentity(customer, system)
	if !ok || id.Customer == "" || id.System == "" {
		return id, errors.New("user name is not customer/system")
	}
	select {
	case s.logins <- struct{}{}:
		defer func() { <-s.logins }()
	case <-r.Context().Done():
		return id, r.Context().Err()
	}
	hash, known := s.SecretHash(id)
	if !config.VerifySecret(hash, secret) {
		if !known {
			return id, errors.New("unknown customer/system")
		}
		return id, errors.New("wrong secret")
	}
	return id, nil
}

// readHello accepts the agent's first stream and decodes its policy.
func readHello(ctx context.Context, mux *yamux.Session) (Policy, error) {
	ctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	st, err := mux.AcceptStreamWithContext(ctx)
	if err != nil {
		return Policy{}, err
	}
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(helloTimeout))
	var p Policy
	if err := json.NewDecoder(io.LimitReader(st, maxHelloBytes)).Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("decoding hello: %w", err)
	}
	if p.Version != Version {
		return Policy{}, fmt.Errorf("agent speaks protocol %d, broker %d", p.Version, Version)
	}
	return p, nil
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
