package people

import (
	"errors"
	"time"
)

// Role is what a person may do.
type Role string

// Roles. Technicians of an organisation have one of the first three, as in the manual;
// a customer admin has RoleCustomerAdmin; RoleAdmin is the broker's operator (the
// maintproxy command on the broker's host), never stored.
const (
	// RoleSupervisor manages the organisation's people and uses tunnels.
	RoleSupervisor Role = "supervisor"
	// RoleOperator uses tunnels and sees access information.
	RoleOperator Role = "operator"
	// RoleReadonly sees status only: no tunnels, no commands, no credentials.
	RoleReadonly Role = "readonly"
	// RoleCustomerAdmin sees one customer's systems and history and answers its access requests.
	RoleCustomerAdmin Role = "customer-admin"
	// RoleAdmin is the broker's operator.
	RoleAdmin Role = "admin"
)

// TechnicianRole reports whether r is a role of an organisation's technician.
func TechnicianRole(r Role) bool {
	return r == RoleSupervisor || r == RoleOperator || r == RoleReadonly
}

// Access modes of a system.
const (
	// ModeAlways lets every technician who reaches the customer in (the default).
	ModeAlways = "always"
	// ModeApproval needs a grant of the customer for a time window.
	ModeApproval = "approval"
)

// TokenUserSuffix marks a Basic-auth username whose password is a token from `maint login`:
// "alice+token". Usernames never contain '+', so the marker cannot be mistaken.
const TokenUserSuffix = "+token"

// TokenPrefix starts every token, so that one is recognisable in a leaked file.
const TokenPrefix = "mpt_"

// Errors. Each names what to do; the proxy and the API map them to statuses.
var (
	ErrNotFound      = errors.New("no such person")
	ErrExists        = errors.New("the username is taken (by a person or a proxy account)")
	ErrBadUsername   = errors.New("username: 1-64 letters, digits, '.', '_', '-' or '@'")
	ErrBadRole       = errors.New("role: must be supervisor, operator or readonly")
	ErrBadPassword   = errors.New("password does not meet the rules")
	ErrWrongPassword = errors.New("wrong username or password")
	ErrDisabled      = errors.New("this login is disabled; ask your supervisor")
	ErrLocked        = errors.New("this login is locked after too many wrong passwords; wait or ask your supervisor")
	ErrBadToken      = errors.New("token not valid (expired or revoked): run maint login again")
	ErrNoSession     = errors.New("not signed in, or signed out after being idle: sign in again")
	ErrReadonly      = errors.New("read-only users may not open tunnels")
	ErrNotTechnician = errors.New("only technicians of an organisation may open tunnels")
	ErrApproval      = errors.New("waiting for the customer's approval")
	ErrGrantEnded    = errors.New("the customer's access grant has ended")
	ErrForbidden     = errors.New("not allowed for this login")
	ErrNoRequest     = errors.New("no such access request")
	ErrBadBackup     = errors.New("not a valid people backup")
	ErrStore         = errors.New("the people store failed")
	ErrStoreBusy     = errors.New("the people store is in use by a running broker: stop it first, or use the broker's API")
)

// Person is one personal login: a technician of an organisation (Org set) or a customer
// admin (Customer set).
type Person struct {
	Username string `json:"username"`
	// Name is the person's full name for display (optional).
	Name     string `json:"name,omitempty"`
	Org      string `json:"org,omitempty"`
	Customer string `json:"customer,omitempty"`
	Role     Role   `json:"role"`
	// PasswordHash is bcrypt; History the hashes of the previous passwords, newest first.
	PasswordHash string   `json:"password_hash"`
	History      []string `json:"history,omitempty"`
	Disabled     bool     `json:"disabled,omitempty"`
	// Failed counts wrong passwords in a row; at people.lock_failures the login is locked
	// until LockedUntil.
	Failed      int       `json:"failed,omitempty"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
	Created     time.Time `json:"created"`
	Changed     time.Time `json:"changed"`
}

// Locked reports whether the login is locked at now.
func (p *Person) Locked(now time.Time) bool { return now.Before(p.LockedUntil) }

// Token is an issued token; the token itself is known only to its holder.
type Token struct {
	Username string    `json:"username"`
	Issued   time.Time `json:"issued"`
	Expires  time.Time `json:"expires"`
}

// Session is a web sign-in (a cookie's); see Service.StartSession.
type Session struct {
	Username string    `json:"username"`
	Started  time.Time `json:"started"`
	// LastSeen is when it was last used, to a minute (it is written at most once a minute,
	// or a quarter of people.session_idle when that is shorter).
	LastSeen time.Time `json:"last_seen"`
	// CSRF is the token a form of this session must carry.
	CSRF string `json:"csrf"`
}

// Mode is a system's access mode.
type Mode struct {
	Customer string    `json:"customer"`
	System   string    `json:"system"`
	Mode     string    `json:"mode"`
	By       string    `json:"by,omitempty"`
	Changed  time.Time `json:"changed"`
}

// Request is a technician's wish to reach a system in approval mode.
type Request struct {
	ID       string    `json:"id"`
	Customer string    `json:"customer"`
	System   string    `json:"system"`
	Username string    `json:"username"`
	Org      string    `json:"org"`
	Target   string    `json:"target,omitempty"`
	At       time.Time `json:"at"`
	// State is pending, granted or denied.
	State string    `json:"state"`
	By    string    `json:"by,omitempty"`
	Done  time.Time `json:"done,omitzero"`
}

// Request states.
const (
	StatePending = "pending"
	StateGranted = "granted"
	StateDenied  = "denied"
)

// Grant lets one technician (Username) reach a system from From until Until.
type Grant struct {
	ID        string    `json:"id"`
	Customer  string    `json:"customer"`
	System    string    `json:"system"`
	Username  string    `json:"username"`
	From      time.Time `json:"from"`
	Until     time.Time `json:"until"`
	By        string    `json:"by"`
	RequestID string    `json:"request_id,omitempty"`
}

// Active reports whether the grant is in force at now.
func (g *Grant) Active(now time.Time) bool { return !now.Before(g.From) && now.Before(g.Until) }

// Principal is who a request comes from, as authentication established it.
type Principal struct {
	// Username is the person's, or the proxy account's for the organisation's shared login.
	Username string `json:"username"`
	// Org is the organisation (its account's username); empty for customer admins and the operator.
	Org string `json:"org,omitempty"`
	// Customer is a customer admin's customer.
	Customer string `json:"customer,omitempty"`
	Role     Role   `json:"role"`
	// Person is set for a personal login; false for the shared proxy account (whose
	// Role is RoleOperator, as before people existed) and the operator.
	Person bool `json:"person"`
	// TokenID and TokenExpires are set when a token authenticated the request.
	TokenID      string    `json:"-"`
	TokenExpires time.Time `json:"-"`
}

// Record is one audit history record: a tunnel, a refusal, or a change made through the
// API or the commands (Kind says which).
type Record struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"` // tunnel, refused, change
	Node     string    `json:"node,omitempty"`
	Session  string    `json:"session,omitempty"`
	Person   string    `json:"person,omitempty"` // who: the person's or the account's username
	Org      string    `json:"org,omitempty"`
	Client   string    `json:"client,omitempty"`
	Customer string    `json:"customer,omitempty"`
	System   string    `json:"system,omitempty"`
	Target   string    `json:"target,omitempty"`
	Result   string    `json:"result,omitempty"`
	Status   int       `json:"status,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	BytesUp  int64     `json:"bytes_up,omitempty"`
	BytesDn  int64     `json:"bytes_down,omitempty"`
	Duration int64     `json:"duration_ms,omitempty"`
}

// TunnelInfo is one open tunnel of a broker, as the API and the pages list it.
type TunnelInfo struct {
	Session string `json:"session"`
	// Account is the organisation's account; Person and Org who opened it (for the
	// shared proxy account, the account's username and itself).
	Account  string    `json:"account"`
	Person   string    `json:"person"`
	Org      string    `json:"org"`
	Customer string    `json:"customer"`
	System   string    `json:"system"`
	Target   string    `json:"target"`
	Client   string    `json:"client"`
	Since    time.Time `json:"since"`
}
