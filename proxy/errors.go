package proxy

import (
	"errors"
	"net/http"

	"maintproxy/internal/guard"
	"maintproxy/tunnel"
)

// Refusals decided by the proxy itself (the agent's are tunnel.Err…).
var (
	ErrNotConnect = errors.New("only CONNECT tunnels are supported: HTTPS, SSH/SFTP and RDP; plain HTTP proxying is not")
	ErrNotManaged = errors.New("no such customer for this proxy account")
	ErrNoSystem   = errors.New("no such system for this customer")
	ErrOffline    = errors.New("system offline")
	ErrLimit      = errors.New("too many open tunnels")
)

// statusFor maps every refusal to the status the technician's client sees, and the text
// they read. It is the only place that does so.
func statusFor(err error, domain string) (int, string) {
	switch {
	case errors.Is(err, ErrBadCredentials), errors.Is(err, ErrLocked), errors.Is(err, errNoCredentials):
		return http.StatusProxyAuthRequired, err.Error() + ": log in with your reseller's proxy account"
	case errors.Is(err, guard.ErrBusy):
		return http.StatusTooManyRequests, err.Error()
	case errors.Is(err, ErrNotConnect):
		return http.StatusMethodNotAllowed, err.Error()
	case errors.Is(err, ErrNotMaintenance):
		return http.StatusForbidden, "this proxy only reaches customer systems named " + grammarFor(domain) + "; it is not an open proxy"
	case errors.Is(err, ErrMalformed):
		return http.StatusBadRequest, err.Error() + "; use " + grammarFor(domain)
	case errors.Is(err, ErrNotManaged):
		// Same text for unknown and foreign customers: nothing to enumerate.
		return http.StatusForbidden, "customer not found for this proxy account; check the customer ID, or ask the customer's reseller"
	case errors.Is(err, ErrNoSystem):
		return http.StatusForbidden, err.Error() + "; leave the system name out to reach the primary server"
	case errors.Is(err, ErrOffline), errors.Is(err, tunnel.ErrSessionClosed):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, tunnel.ErrRemoteAccessOff), errors.Is(err, tunnel.ErrServiceNotOffered),
		errors.Is(err, tunnel.ErrColocatedOff), errors.Is(err, tunnel.ErrNoTunnelEntry):
		return http.StatusForbidden, "refused by the customer's settings: " + err.Error()
	case errors.Is(err, tunnel.ErrRefused), errors.Is(err, tunnel.ErrUnreachable), errors.Is(err, tunnel.ErrBadRequest):
		return http.StatusBadGateway, err.Error()
	case errors.Is(err, tunnel.ErrTimeout):
		return http.StatusGatewayTimeout, err.Error()
	case errors.Is(err, ErrLimit):
		return http.StatusTooManyRequests, err.Error() + "; close some sessions and try again"
	default:
		return http.StatusBadGateway, "tunnel failed: " + err.Error()
	}
}

func grammarFor(domain string) string {
	return "<customer-id>[-<system-name>][-<co-located-server-ipv4>].maint." + domain + ":<port>"
}
