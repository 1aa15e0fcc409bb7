// Package client is the technician's side of maintproxy: it opens CONNECT tunnels through
// the broker's TLS proxy and bridges them to stdio (ssh/PuTTY proxy commands) or to local
// ports (RDP), and keeps the technician's proxy settings.
package client

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"maintproxy/internal/capool"
	"maintproxy/internal/refusal"
	"maintproxy/internal/relay"
)

// handshakeTimeout bounds the TLS handshake and the proxy's answer to CONNECT (which
// includes the agent dialling the target).
const handshakeTimeout = 45 * time.Second

// Settings say how to reach the proxy.
type Settings struct {
	Proxy    string // host:port of the broker's proxy, e.g. maint.example.com:6443
	Username string
	Password string
	CAFile   string // PEM roots to verify the proxy (default: the system roots)
}

// ProxyError is a CONNECT the proxy refused; Error is the one line for the technician.
// A refusal for a locked account matches ErrLocked (errors.Is).
type ProxyError struct {
	Status  int
	Reason  string         // the first line of the proxy's answer
	Refusal refusal.Reason // the proxy's machine-readable reason; empty from an older broker
}

// ErrLocked means the proxy locked the account for this client after too many wrong
// passwords: retrying now fails even with the right one.
var ErrLocked = errors.New("proxy account temporarily locked after too many wrong passwords; wait a few minutes")

func (e *ProxyError) Error() string {
	switch e.Status {
	case http.StatusProxyAuthRequired:
		if e.Refusal == refusal.Locked {
			return cmp.Or(e.Reason, ErrLocked.Error())
		}
		return "wrong proxy username or password"
	case http.StatusForbidden, http.StatusServiceUnavailable, http.StatusBadRequest,
		http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests, http.StatusMethodNotAllowed:
		if e.Reason != "" {
			return e.Reason
		}
	}
	if e.Reason == "" {
		return fmt.Sprintf("the proxy answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("the proxy answered %d: %s", e.Status, e.Reason)
}

// Is reports a lockout as ErrLocked.
func (e *ProxyError) Is(target error) bool {
	return target == ErrLocked && e.Refusal == refusal.Locked
}

// ErrNoPassword means no password was configured and none could be asked for.
var ErrNoPassword = errors.New("no proxy password: run `maint login`, set MAINT_PROXY_PASSWORD, or run from a terminal")

// Check validates the settings before any connection.
func (s Settings) Check() error {
	if s.Proxy == "" {
		return errors.New("no proxy: give --proxy HOST:PORT or run `maint login`")
	}
	if _, _, err := net.SplitHostPort(s.Proxy); err != nil {
		return fmt.Errorf("proxy %q is not HOST:PORT", s.Proxy)
	}
	if s.Username == "" {
		return errors.New("no proxy username: give -P USER:PASS or run `maint login`")
	}
	if s.Password == "" {
		return ErrNoPassword
	}
	return nil
}

// tlsConfig verifies the proxy by the host it is dialled as, like proxytunnel -C does.
func (s Settings) tlsConfig() (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(s.Proxy)
	cfg := &tls.Config{ServerName: host, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pool, err := capool.Load(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// Dial opens a tunnel to target (HOST:PORT) through the proxy. A refusal is a *ProxyError.
func (s Settings) Dial(ctx context.Context, target string) (net.Conn, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	tlsCfg, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	d := tls.Dialer{Config: tlsCfg}
	raw, err := d.DialContext(ctx, "tcp", s.Proxy)
	if err != nil {
		return nil, fmt.Errorf("connecting to the proxy %s: %w", s.Proxy, err)
	}
	conn := raw.(*tls.Conn)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	cred := base64.StdEncoding.EncodeToString([]byte(s.Username + ":" + s.Password))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Basic " + cred + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, fmt.Errorf("talking to the proxy: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("the proxy did not answer within %v", handshakeTimeout)
		}
		return nil, fmt.Errorf("reading the proxy's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		return nil, &ProxyError{Status: resp.StatusCode, Reason: first, Refusal: refusal.Reason(resp.Header.Get(refusal.Header))}
	}
	if !stop() {
		conn.Close()
		return nil, ctx.Err()
	}
	conn.SetDeadline(time.Time{})
	// Bytes the target sent right behind the 200 are already in br: keep them.
	return relay.WithBuffered(conn, br), nil
}

// CheckCredentials asks the proxy whether it accepts the settings' credentials, without
// reaching any system: it requests a name outside the maintenance zone, which an accepted
// account is refused with 403 and a wrong one with 407.
func (s Settings) CheckCredentials(ctx context.Context) error {
	c, err := s.Dial(ctx, "credential-check.invalid:1")
	if err == nil {
		c.Close()
		return nil
	}
	var pe *ProxyError
	if errors.As(err, &pe) && pe.Status == http.StatusForbidden {
		return nil
	}
	return err
}
