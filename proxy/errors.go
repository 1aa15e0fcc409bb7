package proxy

import (
	"errors"
	"net/http"

	"maintproxy/internal/guard"
	"maintproxy/internal/refusal"
	"maintproxy/maintname"
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

// statusFor maps every refusal to the status the technician's client sees, the reason its
// software reads (the refusal.Header), and the text the technician reads. It is the only
// place that does so. The text never carries what a lower layer said (addresses of the
// broker, library errors): only the proxy's own words and the agent's message.
func statusFor(err error, domain string) (int, refusal.Reason, string) {
	switch {
	case errors.Is(err, errNoCredentials):
		return http.StatusProxyAuthRequired, refusal.NoCredentials, err.Error() + ": log in with your reseller's proxy account"
	case errors.Is(err, ErrLocked):
		return http.StatusProxyAuthRequired, refusal.Locked, err.Error() + ": log in with your reseller's proxy account"
	case errors.Is(err, ErrBadCredentials):
		return http.StatusProxyAuthRequired, refusal.BadCredentials, err.Error() + ": log in with your reseller's proxy account"
	case errors.Is(err, guard.ErrBusy):
		return http.StatusTooManyRequests, refusal.Busy, err.Error()
	case errors.Is(err, ErrNotConnect):
		return http.StatusMethodNotAllowed, refusal.NotConnect, err.Error()
	case errors.Is(err, maintname.ErrNotMaintenance):
		return http.StatusForbidden, refusal.NotMaintenance, "this proxy only reaches customer systems named " + maintname.GrammarFor(domain) + "; it is not an open proxy"
	case errors.Is(err, maintname.ErrMalformed):
		return http.StatusBadRequest, refusal.Malformed, err.Error() + "; use " + maintname.GrammarFor(domain)
	case errors.Is(err, ErrNotManaged):
		// Same text for unknown and foreign customers: nothing to enumerate.
		return http.StatusForbidden, refusal.UnknownCustomer, "customer not found for this proxy account; check the customer ID, or ask the customer's reseller"
	case errors.Is(err, ErrNoSystem):
		return http.StatusForbidden, refusal.UnknownSystem, err.Error() + "; leave the system name out to reach the primary server"
	case errors.Is(err, ErrOffline):
		return http.StatusServiceUnavailable, refusal.Offline, err.Error()
	case errors.Is(err, tunnel.ErrSessionClosed):
		// What broke underneath (and the broker's addresses in it) is for the audit only.
		return http.StatusServiceUnavailable, refusal.Offline, tunnel.ErrSessionClosed.Error()
	case errors.Is(err, tunnel.ErrRemoteAccessOff), errors.Is(err, tunnel.ErrServiceNotOffered),
		errors.Is(err, tunnel.ErrColocatedOff), errors.Is(err, tunnel.ErrNoTunnelEntry):
		return http.StatusForbidden, refusal.CustomerSettings, "refused by the customer's settings: " + err.Error()
	case errors.Is(err, tunnel.ErrRefused), errors.Is(err, tunnel.ErrUnreachable), errors.Is(err, tunnel.ErrBadRequest):
		return http.StatusBadGateway, refusal.TargetFailed, err.Error()
	case errors.Is(err, tunnel.ErrTimeout):
		return http.StatusGatewayTimeout, refusal.TargetTimeout, err.Error()
	case errors.Is(err, ErrLimit):
		return http.StatusTooManyRequests, refusal.Limit, err.Error() + "; close some sessions and try again"
	default:
		// An unforeseen error says nothing to the client; the audit record has it.
		return http.StatusBadGateway, refusal.TunnelFailed, "tunnel failed; try again"
	}
}
