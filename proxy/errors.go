package proxy

import (
	"errors"
	"fmt"
	"net/http"

	"maintproxy/internal/guard"
	"maintproxy/internal/refusal"
	"maintproxy/maintname"
	"maintproxy/people"
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
	case errors.Is(err, people.ErrBadToken):
		return http.StatusProxyAuthRequired, refusal.BadCredentials, err.Error()
	case errors.Is(err, people.ErrDisabled):
		return http.StatusProxyAuthRequired, refusal.Disabled, err.Error()
	case errors.Is(err, people.ErrReadonly), errors.Is(err, people.ErrNotTechnician):
		return http.StatusForbidden, refusal.Role, err.Error()
	case errors.Is(err, people.ErrApproval):
		return http.StatusForbidden, refusal.Approval, err.Error() + ": your request was recorded; connect again once the customer has granted it"
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
		errors.Is(err, tunnel.ErrColocatedOff), errors.Is(err, tunnel.ErrNoTunnelEntry), errors.Is(err, tunnel.ErrNoSuchSystem):
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

// PeerCode is the answer of the broker holding an agent to a forwarded tunnel. PeerOK
// means the tunnel is open. The agent's own codes (tunnel.Code, 1-31) pass through as they
// are; the proxy's refusals use 32 and up. The peer link keeps 240-255 for itself.
type PeerCode uint8

// Peer codes. peerCode and peerErr map them to the refusals and back, so that a technician
// sees through another broker exactly the status, reason and text a local tunnel gives.
const (
	PeerOK         PeerCode = 0
	peerNotManaged PeerCode = 32 + iota
	peerNoSystem
	peerOffline
	peerLimit
	peerFailed
)

// peerCode is the holder's answer for err (nil: PeerOK): a code and the text to show.
func peerCode(err error) (PeerCode, string) {
	var re *tunnel.RefusedError
	switch {
	case err == nil:
		return PeerOK, ""
	case errors.As(err, &re) && re.Code > 0 && re.Code < 32:
		return PeerCode(re.Code), re.Msg
	case errors.Is(err, tunnel.ErrTimeout):
		return PeerCode(tunnel.CodeTimeout), err.Error()
	case errors.Is(err, ErrNotManaged):
		return peerNotManaged, ""
	case errors.Is(err, ErrNoSystem):
		return peerNoSystem, err.Error()
	case errors.Is(err, tunnel.ErrSessionClosed):
		// Only what statusFor shows: what broke underneath stays in the holder's audit.
		return peerOffline, tunnel.ErrSessionClosed.Error()
	case errors.Is(err, ErrOffline):
		return peerOffline, err.Error()
	case errors.Is(err, ErrLimit):
		return peerLimit, err.Error()
	default:
		return peerFailed, err.Error()
	}
}

// peerErr turns a holder's answer back into the error a local tunnel would have given.
func peerErr(code PeerCode, msg string) error {
	switch {
	case code > 0 && code < 32:
		return &tunnel.RefusedError{Code: tunnel.Code(code), Msg: msg}
	case code == peerNotManaged:
		return ErrNotManaged
	case code == peerNoSystem:
		return &heldError{ErrNoSystem, msg}
	case code == peerOffline:
		return &heldError{ErrOffline, msg}
	case code == peerLimit:
		return &heldError{ErrLimit, msg}
	case code == peerFailed:
		return &heldError{nil, msg}
	default: // the peer link's own codes: the holder did not get to answer
		return &heldError{nil, fmt.Sprintf("the broker holding the agent failed (code %d): %s", code, msg)}
	}
}

// heldError is a refusal decided by the broker holding the agent: its text, with the
// meaning of the sentinel it wraps.
type heldError struct {
	err error
	msg string
}

func (e *heldError) Error() string { return e.msg }
func (e *heldError) Unwrap() error { return e.err }
