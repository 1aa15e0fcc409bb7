package tunnel

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"maintproxy/config"
	"maintproxy/internal/capool"
	"maintproxy/internal/mux"
	"maintproxy/internal/relay"
)

// Agent timeouts.
const (
	connectTimeout = 15 * time.Second
	headerTimeout  = 10 * time.Second
	minBackoff     = 500 * time.Millisecond
	// stableAfter is how long a session must last before the backoff starts over.
	stableAfter = 10 * time.Second
	// maxRetryAfter caps the wait a busy broker may ask for.
	maxRetryAfter = 5 * time.Minute
)

// ErrAgentRejected means the broker refused the agent's credentials.
var ErrAgentRejected = errors.New("the broker refused this agent's customer/system/secret")

// Agent is the customer-site end: it keeps a session to the broker and dials what the
// customer's policy allows.
type Agent struct {
	cfg     *config.Agent // as started: the settings RestartFields names come from here
	policy  *policyState  // the rest, as SetConfig last put in force
	log     *slog.Logger
	version string
	url     string        // wss://… for messages
	httpURL string        // the same as https://…, which the HTTP client dials
	conns   []*brokerConn // one per cfg.Connections, each to a different broker
	http    *http.Client  // other requests to the broker (published roots)
	trust   *capool.Trust // nil without ca_file
	// Tuning may be changed before Run.
	Tuning Tuning
}

// NewAgent prepares an agent from a validated configuration.
func NewAgent(cfg *config.Agent, logger *slog.Logger, version string) (*Agent, error) {
	u, err := url.Parse(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	tlsCfg, trust, err := agentTLS(cfg, u.Hostname())
	if err != nil {
		return nil, err
	}
	u.Scheme = "https"
	u.Path = strings.TrimSuffix(u.Path, "/") + AgentPath
	httpURL := u.String()
	u.Scheme = "wss"
	brokerDialer := &net.Dialer{Timeout: connectTimeout, Control: tuneLinkSocket}
	a := &Agent{
		cfg:     cfg,
		policy:  newPolicyState(cfg),
		log:     logger,
		version: version,
		url:     u.String(),
		httpURL: httpURL,
		trust:   trust,
	}
	base := &http.Transport{
		DialContext: batchDial(brokerDialer),
		// Every handshake dials afresh, so that the link gets its own batchConn (and goes
		// where the broker picker says).
		DisableKeepAlives:   true,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: connectTimeout,
		Proxy:               http.ProxyFromEnvironment,
	}
	picker := newBrokerPicker(cfg.BrokerAddrs, u.Hostname(), cmp.Or(u.Port(), "443"))
	a.http = fetchClient(picker, base)
	for n := range max(cfg.Connections, 1) {
		a.conns = append(a.conns, newBrokerConn(n, picker, base))
	}
	return a, nil
}

// Run keeps the agent connected until ctx is done, reconnecting after any loss with
// capped, jittered exponential backoff; with connections > 1 each connection does so on its
// own, to a broker the others do not hold. It returns nil on cancellation.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, c := range a.conns[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.run(ctx, c)
		}()
	}
	a.run(ctx, a.conns[0])
	wg.Wait()
	return nil
}

// run keeps connection c up until ctx is done.
func (a *Agent) run(ctx context.Context, c *brokerConn) {
	backoff := minBackoff
	for {
		start := time.Now()
		err := a.session(ctx, c)
		// The broker this session ended on is tried last next time.
		c.done(ctx.Err() == nil)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > stableAfter {
			backoff = minBackoff
		}
		// Full jitter in [backoff/2, backoff) spreads a fleet reconnecting after a broker restart.
		wait := backoff/2 + rand.N(backoff/2)
		var busy *busyError
		if errors.As(err, &busy) {
			// A busy broker said when to come back; jitter keeps the fleet from coming at once.
			wait = max(wait, busy.wait+rand.N(busy.wait/2+1))
		}
		a.log.Warn("disconnected from broker; reconnecting", "reason", err.Error(), "retry_in", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		cfg, _ := a.policy.current()
		backoff = min(backoff*2, cfg.MaxBackoff)
	}
}

// session runs one session of connection c and returns why it ended.
func (a *Agent) session(ctx context.Context, c *brokerConn) error {
	ws, features, err := a.dial(ctx, c)
	if err != nil {
		return err
	}
	link, err := newMuxLink(ws, false, a.Tuning)
	if err != nil {
		return err
	}
	defer link.close()
	sess := link.mux
	sessCtx, stop := context.WithCancel(ctx)
	defer stop()
	updates := hasFeature(features, FeaturePolicyUpdates)
	cfg, changed := a.policy.current()
	if err := a.hello(sess, cfg); err != nil {
		return fmt.Errorf("sending hello: %w", err)
	}
	a.log.Info("connected to broker", "broker", a.url, "addr", c.current(), "connection", c.n+1, "customer", a.cfg.Customer, "system", a.cfg.System,
		"remote_access", cfg.RemoteAccess.Enabled, "colocated", cfg.Colocated.Enabled, "policy_updates", updates)
	// Cancellation closes the session, which ends AcceptStream below.
	context.AfterFunc(sessCtx, func() { sess.Close() })
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.keepTrustFresh(sessCtx, sess.Done())
	}()
	wg.Add(1)
	if updates {
		go func() {
			defer wg.Done()
			a.pushPolicy(link.ws, PolicyFromConfig(cfg, a.version), changed, sess.Done())
		}()
	} else {
		go func() {
			defer wg.Done()
			a.noteStalePolicy(c, sess.Done())
		}()
	}
	for {
		st, err := sess.Accept(ctx)
		if err != nil {
			if errors.Is(err, mux.ErrSessionShutdown) && ctx.Err() == nil {
				return errors.New("session closed by broker or lost")
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serveStream(sessCtx, st)
		}()
	}
}

// hello opens the session's first stream and writes the policy of cfg on it.
func (a *Agent) hello(sess *mux.Session, cfg *config.Agent) error {
	st, err := sess.Open(context.Background())
	if err != nil {
		return err
	}
	defer st.Close()
	st.SetWriteDeadline(time.Now().Add(helloTimeout))
	return json.NewEncoder(st).Encode(PolicyFromConfig(cfg, a.version))
}

// dial makes the websocket handshake with the broker through the HTTP client (and so
// through a proxy from the environment, if one is set). It returns the features the
// broker offers (FeaturesHeader).
func (a *Agent) dial(ctx context.Context, c *brokerConn) (*wsConn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	slot := &dialSlot{}
	ctx = context.WithValue(ctx, dialSlotKey{}, slot)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.httpURL, nil)
	if err != nil {
		return nil, "", err
	}
	key := clientKey()
	cred := base64.StdEncoding.EncodeToString([]byte(a.cfg.Customer + "/" + a.cfg.System + ":" + a.cfg.Secret))
	req.Header = http.Header{
		"Authorization":         {"Basic " + cred},
		"Connection":            {"Upgrade"},
		"Upgrade":               {"websocket"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {key},
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("connecting to %s: %w", a.url, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return nil, "", ErrAgentRejected
	}
	if resp.StatusCode == http.StatusServiceUnavailable {
		resp.Body.Close()
		return nil, "", &busyError{wait: retryAfter(resp.Header.Get("Retry-After"))}
	}
	rwc, err := checkUpgrade(resp, key)
	if err != nil {
		resp.Body.Close()
		return nil, "", fmt.Errorf("connecting to %s: %w", a.url, err)
	}
	ws := newWSConn(rwc, rwc, nil, slot.conn, true)
	return ws, resp.Header.Get(FeaturesHeader), nil
}

// serveStream answers one tunnel request, relays it, and writes its audit record.
func (a *Agent) serveStream(ctx context.Context, st *stream) {
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(headerTimeout))
	h, err := readHeader(st)
	if err != nil {
		writeReply(st, CodeBadRequest, err.Error())
		a.log.Info("tunnel", "user", h.User, "client", h.Client, "result", CodeBadRequest.String(), "reason", err.Error())
		return
	}
	st.SetReadDeadline(time.Time{})
	start := time.Now()
	rec := []any{"session", fmt.Sprintf("%x", h.Session[:8]), "user", h.User, "client", h.Client}
	if h.System != "" {
		rec = append(rec, "system", strings.ToLower(h.System))
	}
	audit := func(target string, code Code, more ...any) {
		a.log.Info("tunnel", append(append(rec, "target", target, "result", code.String()), more...)...)
	}
	t := &servedTunnel{h: h, st: st}
	var cfg *config.Agent
	for {
		var code Code
		var msg string
		cfg, _ = a.policy.current()
		t.addr, code, msg = resolve(cfg, h)
		if code != CodeOK {
			writeReply(st, code, msg)
			audit(requested(h), code, "reason", (&RefusedError{code, msg}).Error(), "duration_ms", time.Since(start).Milliseconds())
			return
		}
		dialer := net.Dialer{Timeout: cfg.DialTimeout}
		target, err := dialer.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			code := dialCode(err)
			writeReply(st, code, fmt.Sprintf("%s: %s", t.addr, codeErrs[code]))
			audit(t.addr, code, "reason", err.Error(), "duration_ms", time.Since(start).Milliseconds())
			return
		}
		t.dst = target
		if a.policy.add(t, cfg) {
			break
		}
		// The policy changed during the dial: decide again under the new one.
		target.Close()
	}
	defer a.policy.remove(t)
	if err := writeReply(st, CodeOK, ""); err != nil {
		t.dst.Close()
		return
	}
	up, down, err := relay.Copy(st, t.dst)
	end := cmp.Or(relay.ErrText(err), "closed")
	if r := t.cut.Load(); r != nil {
		end = "ended by policy change: " + *r
	}
	audit(t.addr, CodeOK, "bytes_to_target", up, "bytes_from_target", down,
		"duration_ms", time.Since(start).Milliseconds(), "end", end)
}

// requested names what a header asked for, for the audit of a refusal.
func requested(h Header) string {
	port := strconv.Itoa(int(h.Port))
	switch {
	case h.IP.IsValid():
		return net.JoinHostPort(h.IP.String(), port)
	case h.System != "":
		return net.JoinHostPort(strings.ToLower(h.System), port)
	}
	return "port " + port
}

// dialCode maps a dial error to the reply code the technician will see.
func dialCode(err error) Code {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return CodeRefused
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout
	default:
		return CodeUnreachable
	}
}

// busyError is the broker's 503: too many logins right now, come back after wait.
type busyError struct{ wait time.Duration }

func (e *busyError) Error() string {
	return fmt.Sprintf("the broker is busy with agent logins; it asked to retry in %v", e.wait)
}

// retryAfter reads a Retry-After in seconds, capped at maxRetryAfter; 1 s if absent.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return time.Second
	}
	return min(time.Duration(n)*time.Second, maxRetryAfter)
}
