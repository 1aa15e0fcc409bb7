// Package refusal names why the proxy refused a request, in a form clients can act on
// without reading the text meant for people. The proxy sends one Reason in the Header of
// every refusal; the technician's client reads it (a lockout, for instance). The tokens are
// a documented, stable interface: new ones may be added, existing ones keep their meaning.
// It imports only the standard library so that the technician's client can use it.
package refusal

// Header is the response header that carries the Reason of a refused proxy request.
const Header = "Maintproxy-Refusal"

// Reason is one token of the Header; each stands for one row of the proxy's failure table.
type Reason string

// The reasons, with the status each comes with.
const (
	NoCredentials    Reason = "no-credentials"    // 407: no Proxy-Authorization
	BadCredentials   Reason = "bad-credentials"   // 407: wrong username or password
	Locked           Reason = "locked"            // 407: too many wrong passwords; wait, then retry
	NotConnect       Reason = "not-connect"       // 405: only CONNECT is served
	NotMaintenance   Reason = "not-maintenance"   // 403: host is not a maintenance name (never dialled)
	Malformed        Reason = "malformed"         // 400: a maintenance name that breaks the grammar
	UnknownCustomer  Reason = "unknown-customer"  // 403: customer unknown or not managed by the account
	UnknownSystem    Reason = "unknown-system"    // 403: the customer has no such system
	Offline          Reason = "offline"           // 503: the system's agent is not connected
	CustomerSettings Reason = "customer-settings" // 403: the customer's switches on the system refuse it
	TargetFailed     Reason = "target-failed"     // 502: the agent could not connect to the target
	TargetTimeout    Reason = "target-timeout"    // 504: the target did not answer in time
	Limit            Reason = "limit"             // 429: too many open tunnels for the account or system
	Busy             Reason = "busy"              // 429: too many logins from this address right now; honour Retry-After
	TunnelFailed     Reason = "tunnel-failed"     // 502: the tunnel to the agent failed otherwise
	Disabled         Reason = "disabled"          // 407: the personal login is disabled
	Role             Reason = "role"              // 403: the login's role opens no tunnels (read-only, customer admin)
	Approval         Reason = "approval"          // 403: the system needs the customer's approval; a request was recorded
)
