package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// loginPath is the broker's token endpoint on its web listener (package people/api).
const (
	loginPath  = "/api/v1/login"
	logoutPath = "/api/v1/logout"
)

// ErrNoToken means the broker issues no token for these credentials: an organisation's
// shared proxy account (tokens are for personal logins), a broker without the API, or a
// web site that cannot be reached.
var ErrNoToken = errors.New("the broker issues no token for this login")

// Token is what the broker's token endpoint answers.
type Token struct {
	// ProxyUsername is the username to give the proxy with the token as password
	// (the person's username with the token marker).
	ProxyUsername string    `json:"proxy_username"`
	Token         string    `json:"token"`
	Expires       time.Time `json:"expires"`
}

// WebAddr guesses the broker's web listener from the proxy address: admin.<domain>:443
// for maint.<domain>, else the proxy's host on port 443.
func WebAddr(proxy string) string {
	host, _, err := net.SplitHostPort(proxy)
	if err != nil {
		return ""
	}
	if rest, ok := strings.CutPrefix(strings.ToLower(host), "maint."); ok {
		host = "admin." + rest
	}
	return net.JoinHostPort(host, "443")
}

// Login asks the broker's web listener at web (HOST:PORT) for a token with the settings'
// username and password. The web listener is verified like the proxy (CAFile, its host).
func (s Settings) Login(ctx context.Context, web string) (Token, error) {
	var t Token
	resp, err := s.webCall(ctx, web, loginPath, s.Username, s.Password)
	if err != nil {
		return t, fmt.Errorf("%w: %v", ErrNoToken, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusForbidden:
		return t, ErrNoToken
	case http.StatusUnauthorized:
		return t, fmt.Errorf("the broker refused the login: %s", apiError(body))
	default:
		return t, fmt.Errorf("the broker answered %s: %s", resp.Status, apiError(body))
	}
	if err := json.Unmarshal(body, &t); err != nil || t.Token == "" || t.ProxyUsername == "" {
		return t, fmt.Errorf("the broker's token answer is not understood: %v", err)
	}
	return t, nil
}

// Logout revokes a token at the broker.
func (s Settings) Logout(ctx context.Context, web, proxyUser, token string) error {
	resp, err := s.webCall(ctx, web, logoutPath, proxyUser, token)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("the broker answered %s: %s", resp.Status, apiError(body))
	}
	return nil
}

func (s Settings) webCall(ctx context.Context, web, path, user, pass string) (*http.Response, error) {
	host, _, err := net.SplitHostPort(web)
	if err != nil {
		return nil, fmt.Errorf("web address %q is not HOST:PORT", web)
	}
	cfg, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	cfg.ServerName = host
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: false, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+web+path, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, pass)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("connecting to the broker's web site %s: %w", web, err)
	}
	// The body is read by the caller before cancel and CloseIdleConnections run.
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(data)))
	return resp, nil
}

func apiError(body []byte) string {
	var e struct{ Error string }
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(body))
}
