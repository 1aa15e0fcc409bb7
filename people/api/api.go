// Package api is the JSON API of the people store under /api/v1/ on the broker's web
// listener: tokens for `maint login`, self-service, a supervisor's management of the
// organisation's people, a customer admin's access modes, requests and grants, the audit
// history, and (for the broker's operator only) backup and restore.
//
// Every request carries Basic credentials: a personal login, a token (username with
// people.TokenUserSuffix) or an organisation's proxy account, checked by the proxy's own
// check with its lockout. No cookie is involved, so there is nothing for a cross-site
// request to ride on and no CSRF token is needed. Answers are JSON; errors are
// {"error": "..."} with a status that says what kind.
//
// Who may do what:
//
//	admin (maintproxy commands)  everything
//	supervisor                   people and proxy account passwords of their organisation and those
//	                             below it; its history
//	operator, readonly           themselves (me, password, login, logout)
//	customer-admin               their customer's modes, requests, grants, history and open tunnels
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"maintproxy/config"
	"maintproxy/internal/clientaddr"
	"maintproxy/people"
)

// Prefix is where the API is mounted.
const Prefix = "/api/v1/"

// maxBody bounds a request body; a restore carries a whole backup.
const (
	maxBody    = 64 << 10
	maxRestore = 256 << 20
)

// Options configure the handler.
type Options struct {
	People *people.Service
	Config func() *config.Broker
	// Authenticate checks Basic credentials (the proxy's check); nil error means valid.
	Authenticate func(username, password, clientIP string) (people.Principal, error)
	// Admin makes every request the broker's operator's, without credentials: only for
	// the maintproxy commands' in-process use, never on a listener.
	Admin bool
	// Tunnels are this broker's open tunnels (the proxy); nil: the tunnel endpoints
	// answer 404.
	Tunnels Tunnels
}

// Tunnels lists and ends the broker's open tunnels (the proxy).
type Tunnels interface {
	Tunnels() []people.TunnelInfo
	End(session, why string) bool
}

type handler struct {
	o   Options
	mux *http.ServeMux
}

// New returns the handler of everything under Prefix.
func New(o Options) http.Handler {
	h := &handler{o: o, mux: http.NewServeMux()}
	routes := []struct {
		pattern string
		fn      func(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error)
	}{
		{"POST /api/v1/login", h.login},
		{"POST /api/v1/logout", h.logout},
		{"GET /api/v1/me", h.me},
		{"POST /api/v1/me/password", h.ownPassword},
		{"GET /api/v1/people", h.listPeople},
		{"POST /api/v1/people", h.addPerson},
		{"GET /api/v1/people/{username}", h.getPerson},
		{"DELETE /api/v1/people/{username}", h.deletePerson},
		{"POST /api/v1/people/{username}/{action}", h.personAction},
		{"GET /api/v1/accounts", h.listAccounts},
		{"POST /api/v1/accounts/{account}/password", h.accountPassword},
		{"DELETE /api/v1/accounts/{account}/password", h.clearAccountPassword},
		{"GET /api/v1/modes", h.listModes},
		{"PUT /api/v1/modes/{customer}/{system}", h.setMode},
		{"GET /api/v1/requests", h.listRequests},
		{"POST /api/v1/requests/{id}/{action}", h.answerRequest},
		{"GET /api/v1/grants", h.listGrants},
		{"POST /api/v1/grants", h.addGrant},
		{"DELETE /api/v1/grants/{id}", h.revokeGrant},
		{"GET /api/v1/audit", h.audit},
		{"GET /api/v1/tunnels", h.listTunnels},
		{"DELETE /api/v1/tunnels/{session}", h.endTunnel},
		{"GET /api/v1/backup", h.backup},
		{"POST /api/v1/restore", h.restore},
	}
	for _, rt := range routes {
		h.mux.HandleFunc(rt.pattern, h.wrap(rt.fn))
	}
	h.mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such API endpoint"})
	})
	return h.mux
}

// wrap authenticates the request and writes the answer.
func (h *handler) wrap(fn func(http.ResponseWriter, *http.Request, people.Principal) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		p, inProcess := r.Context().Value(principalKey{}).(people.Principal)
		switch {
		case inProcess:
		case h.o.Admin:
			p = people.Principal{Username: "operator", Role: people.RoleAdmin}
		default:
			user, pass, ok := r.BasicAuth()
			if !ok {
				w.Header().Set("WWW-Authenticate", `Basic realm="`+h.o.Config().WebHost()+`", charset="UTF-8"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "credentials required (Basic auth: a personal login, a token or the proxy account)"})
				return
			}
			var err error
			if p, err = h.o.Authenticate(user, pass, clientaddr.IP(r.RemoteAddr)); err != nil {
				w.Header().Set("WWW-Authenticate", `Basic realm="`+h.o.Config().WebHost()+`", charset="UTF-8"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
				return
			}
		}
		if r.URL.Path != Prefix+"restore" {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		v, err := fn(w, r, p)
		if err != nil {
			writeJSON(w, statusOf(err), map[string]string{"error": err.Error()})
			return
		}
		if v == nil {
			v = map[string]bool{"ok": true}
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// principalKey carries the principal of an in-process request (WithPrincipal).
type principalKey struct{}

// WithPrincipal marks a request made in this process as p's, so that the API serves it
// without credentials: for the web pages, which have checked their session and CSRF token
// and then call the API for everything, with every check of the API. A request from the
// network cannot carry it.
func WithPrincipal(ctx context.Context, p people.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// errBadRequest marks a malformed request body or parameter.
var errBadRequest = errors.New("bad request")

// statusOf maps an error to its status: the one place that does.
func statusOf(err error) int {
	switch {
	case errors.Is(err, people.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, people.ErrNotFound), errors.Is(err, people.ErrNoRequest):
		return http.StatusNotFound
	case errors.Is(err, people.ErrExists):
		return http.StatusConflict
	case errors.Is(err, people.ErrWrongPassword):
		return http.StatusForbidden
	case errors.Is(err, people.ErrStore), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	enc.Encode(v)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.Join(errBadRequest, errors.New("body: "+err.Error()))
	}
	return nil
}

// --- who may see whom ---

// manages reports whether p may manage the person q.
func (h *handler) manages(p people.Principal, q *people.Person) bool {
	switch {
	case p.Role == people.RoleAdmin:
		return true
	case p.Role == people.RoleSupervisor && q.Org != "":
		return h.o.Config().Under(q.Org, p.Org)
	}
	return false
}

// forCustomer reports whether p may see and answer customer's access matters.
func forCustomer(p people.Principal, customer string) bool {
	return p.Role == people.RoleAdmin || (p.Role == people.RoleCustomerAdmin && strings.EqualFold(p.Customer, customer))
}

// PersonView is a person as the API shows it: never a password hash.
type PersonView struct {
	Username    string      `json:"username"`
	Name        string      `json:"name,omitempty"`
	Org         string      `json:"org,omitempty"`
	Customer    string      `json:"customer,omitempty"`
	Role        people.Role `json:"role"`
	Disabled    bool        `json:"disabled"`
	LockedUntil *time.Time  `json:"locked_until,omitempty"`
	Tokens      int         `json:"tokens"`
	Created     time.Time   `json:"created"`
	Changed     time.Time   `json:"changed"`
}

func (h *handler) view(p people.Person) PersonView {
	v := PersonView{Username: p.Username, Name: p.Name, Org: p.Org, Customer: p.Customer, Role: p.Role,
		Disabled: p.Disabled, Tokens: h.o.People.Tokens(p.Username), Created: p.Created, Changed: p.Changed}
	if !p.LockedUntil.IsZero() {
		v.LockedUntil = &p.LockedUntil
	}
	return v
}

// --- self-service ---

// LoginAnswer is POST /api/v1/login's answer.
type LoginAnswer struct {
	Username string    `json:"username"`
	Token    string    `json:"token"`
	Expires  time.Time `json:"expires"`
	// ProxyUsername is the username to give the proxy with the token as password.
	ProxyUsername string `json:"proxy_username"`
}

func (h *handler) login(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	if !p.Person || p.TokenID != "" {
		return nil, errors.Join(people.ErrForbidden, errors.New("a token is issued for a personal login with its password"))
	}
	tok, exp, err := h.o.People.IssueToken(r.Context(), p.Username)
	if err != nil {
		return nil, err
	}
	return LoginAnswer{Username: p.Username, Token: tok, Expires: exp, ProxyUsername: p.Username + people.TokenUserSuffix}, nil
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	_, tok, _ := r.BasicAuth()
	if p.TokenID == "" {
		return nil, errors.Join(errBadRequest, errors.New("logout ends a token: authenticate with the token"))
	}
	return nil, h.o.People.RevokeToken(r.Context(), tok)
}

func (h *handler) me(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	out := map[string]any{"principal": p}
	if p.Person {
		if q, ok := h.o.People.Person(p.Username); ok {
			out["person"] = h.view(q)
		}
	}
	return out, nil
}

func (h *handler) ownPassword(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	var body struct{ Current, New string }
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if !p.Person {
		return nil, errors.Join(people.ErrForbidden, errors.New("a supervisor changes the proxy account's password (POST /api/v1/accounts/{account}/password)"))
	}
	return nil, h.o.People.ChangeOwnPassword(r.Context(), p.Username, body.Current, body.New)
}

// --- people ---

func (h *handler) listPeople(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	if p.Role != people.RoleAdmin && p.Role != people.RoleSupervisor {
		return nil, people.ErrForbidden
	}
	org := r.URL.Query().Get("org")
	out := []PersonView{}
	for _, q := range h.o.People.People(func(q *people.Person) bool {
		return h.manages(p, q) && (org == "" || q.Org == org)
	}) {
		out = append(out, h.view(q))
	}
	return out, nil
}

func (h *handler) addPerson(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	var body struct {
		Username, Name, Org, Customer, Password string
		Role                                    people.Role
	}
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	n := people.NewPerson{Username: body.Username, Name: body.Name, Org: body.Org, Customer: body.Customer, Role: body.Role, Password: body.Password}
	if p.Role == people.RoleSupervisor && n.Org == "" && n.Customer == "" {
		n.Org = p.Org
	}
	probe := people.Person{Org: n.Org}
	if p.Role != people.RoleAdmin && (n.Customer != "" || !h.manages(p, &probe)) {
		return nil, errors.Join(people.ErrForbidden, errors.New("a supervisor adds people to their organisation or one below it"))
	}
	q, err := h.o.People.AddPerson(r.Context(), n)
	if err != nil {
		return nil, err
	}
	h.change(p, "added "+q.Username+" ("+string(q.Role)+")")
	return h.view(q), nil
}

// target returns the person named in the path if p may manage them; the same 404 for
// an unknown one and one of another organisation.
func (h *handler) target(r *http.Request, p people.Principal) (people.Person, error) {
	q, ok := h.o.People.Person(r.PathValue("username"))
	if !ok || !h.manages(p, &q) {
		return people.Person{}, people.ErrNotFound
	}
	return q, nil
}

func (h *handler) getPerson(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	q, err := h.target(r, p)
	if err != nil {
		return nil, err
	}
	return h.view(q), nil
}

func (h *handler) deletePerson(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	q, err := h.target(r, p)
	if err != nil {
		return nil, err
	}
	if err := h.o.People.Delete(r.Context(), q.Username); err != nil {
		return nil, err
	}
	h.change(p, "deleted "+q.Username)
	return nil, nil
}

func (h *handler) personAction(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	q, err := h.target(r, p)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	action := r.PathValue("action")
	switch action {
	case "disable", "enable":
		if q.Username == p.Username {
			return nil, errors.Join(errBadRequest, errors.New("you cannot disable or enable yourself"))
		}
		err = h.o.People.SetDisabled(ctx, q.Username, action == "disable")
	case "password":
		var body struct{ Password string }
		if err = decode(r, &body); err == nil {
			err = h.o.People.SetPassword(ctx, q.Username, body.Password)
		}
	case "role":
		var body struct{ Role people.Role }
		if err = decode(r, &body); err == nil {
			err = h.o.People.SetRole(ctx, q.Username, body.Role)
		}
	case "revoke-tokens":
		var n int
		if n, err = h.o.People.RevokeTokens(ctx, q.Username); err == nil {
			h.change(p, "revoked the tokens of "+q.Username)
			return map[string]int{"revoked": n}, nil
		}
	default:
		return nil, errors.Join(people.ErrNotFound, errors.New("no such action: disable, enable, password, role or revoke-tokens"))
	}
	if err != nil {
		return nil, err
	}
	h.change(p, action+" "+q.Username)
	q, _ = h.o.People.Person(q.Username)
	return h.view(q), nil
}

// change records a change in the audit history.
func (h *handler) change(p people.Principal, what string) {
	h.o.People.Record(people.Record{Kind: "change", Person: p.Username, Org: p.Org, Customer: p.Customer, Detail: what})
}

// --- proxy account passwords ---

// managesAccount reports whether p may change the proxy account's password: the operator,
// or a supervisor of the organisation or one above it.
func (h *handler) managesAccount(p people.Principal, account string) bool {
	switch p.Role {
	case people.RoleAdmin:
		return true
	case people.RoleSupervisor:
		return p.Person && p.Org != "" && h.o.Config().Under(account, p.Org)
	}
	return false
}

func (h *handler) listAccounts(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	if p.Role != people.RoleAdmin && p.Role != people.RoleSupervisor {
		return nil, people.ErrForbidden
	}
	out := []people.AccountPasswordState{}
	for _, st := range h.o.People.AccountPasswords() {
		if h.managesAccount(p, st.Account) {
			out = append(out, st)
		}
	}
	return out, nil
}

func (h *handler) accountPassword(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	account := r.PathValue("account")
	if !h.managesAccount(p, account) {
		return nil, errors.Join(people.ErrForbidden, errors.New("only a supervisor of the organisation changes its proxy account password"))
	}
	var body struct{ Password string }
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if err := h.o.People.SetAccountPassword(r.Context(), account, body.Password, p.Username); err != nil {
		return nil, err
	}
	h.change(p, "changed the proxy account password of "+account)
	return nil, nil
}

func (h *handler) clearAccountPassword(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	if p.Role != people.RoleAdmin {
		return nil, errors.Join(people.ErrForbidden, errors.New("only the operator returns an account to the configuration's password"))
	}
	account := r.PathValue("account")
	found, err := h.o.People.ClearAccountPassword(r.Context(), account)
	if err != nil {
		return nil, err
	}
	if found {
		h.change(p, "cleared the runtime proxy account password of "+account)
	}
	return map[string]bool{"cleared": found}, nil
}

// --- access modes, requests, grants ---

// customerScope is the customer p's lists are limited to ("" for the operator: all).
func customerScope(p people.Principal) (string, error) {
	switch p.Role {
	case people.RoleAdmin:
		return "", nil
	case people.RoleCustomerAdmin:
		return p.Customer, nil
	}
	return "", people.ErrForbidden
}

func (h *handler) listModes(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	c, err := customerScope(p)
	if err != nil {
		return nil, err
	}
	return nonNil(h.o.People.Modes(c)), nil
}

func (h *handler) setMode(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	var body struct{ Mode string }
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	cust := r.PathValue("customer")
	if !forCustomer(p, cust) {
		return nil, people.ErrForbidden
	}
	if err := h.o.People.SetMode(r.Context(), cust, r.PathValue("system"), body.Mode, p.Username); err != nil {
		return nil, err
	}
	h.change(p, "mode of "+cust+"-"+r.PathValue("system")+": "+body.Mode)
	return nil, nil
}

func (h *handler) listRequests(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	c, err := customerScope(p)
	if err != nil {
		return nil, err
	}
	return nonNil(h.o.People.Requests(c)), nil
}

func (h *handler) answerRequest(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	req, ok := h.o.People.Request(r.PathValue("id"))
	if !ok || !forCustomer(p, req.Customer) {
		return nil, people.ErrNoRequest
	}
	switch r.PathValue("action") {
	case "grant":
		var body struct{ Duration string }
		if err := decode(r, &body); err != nil {
			return nil, err
		}
		d, err := time.ParseDuration(body.Duration)
		if err != nil {
			return nil, errors.Join(errBadRequest, errors.New("duration: e.g. 4h or 90m"))
		}
		g, err := h.o.People.Grant(r.Context(), req.ID, d, p.Username)
		if err != nil {
			return nil, err
		}
		h.change(p, "granted "+req.Username+" "+req.Customer+"-"+req.System+" for "+d.String())
		return g, nil
	case "deny":
		if err := h.o.People.Deny(r.Context(), req.ID, p.Username); err != nil {
			return nil, err
		}
		h.change(p, "denied "+req.Username+" "+req.Customer+"-"+req.System)
		return nil, nil
	}
	return nil, errors.Join(people.ErrNotFound, errors.New("no such action: grant or deny"))
}

func (h *handler) listGrants(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	c, err := customerScope(p)
	if err != nil {
		return nil, err
	}
	return nonNil(h.o.People.Grants(c)), nil
}

func (h *handler) addGrant(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	var body struct{ Customer, System, Username, Duration string }
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if !forCustomer(p, body.Customer) {
		return nil, people.ErrForbidden
	}
	cfg := h.o.Config()
	c := cfg.Customer(body.Customer)
	if c == nil || body.System == "" || c.System(body.System) == nil {
		return nil, errors.Join(errBadRequest, errors.New("system: not a system of the configuration"))
	}
	d, err := time.ParseDuration(body.Duration)
	if err != nil || d <= 0 || d > cfg.People.MaxGrant {
		return nil, errors.Join(errBadRequest, errors.New("duration: e.g. 4h, at most people.max_grant"))
	}
	g, err := h.o.People.GrantDirect(r.Context(), c.ID, c.System(body.System).Name, body.Username, d, p.Username, "")
	if err != nil {
		return nil, err
	}
	h.change(p, "granted "+body.Username+" "+g.Customer+"-"+g.System+" for "+d.String())
	return g, nil
}

func (h *handler) revokeGrant(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	id := r.PathValue("id")
	var found *people.Grant
	for _, g := range h.o.People.Grants("") {
		if g.ID == id {
			found = &g
			break
		}
	}
	if found == nil || !forCustomer(p, found.Customer) {
		return nil, errors.Join(people.ErrNotFound, errors.New("no such grant"))
	}
	if err := h.o.People.RevokeGrant(r.Context(), id); err != nil {
		return nil, err
	}
	h.change(p, "revoked the grant of "+found.Username+" on "+found.Customer+"-"+found.System)
	return nil, nil
}

// --- open tunnels ---

// seesTunnel reports whether p may see (and end) t: the operator all, a customer admin
// its customer's, a supervisor its organisations', anyone else their own.
func (h *handler) seesTunnel(p people.Principal, t *people.TunnelInfo) bool {
	switch p.Role {
	case people.RoleAdmin:
		return true
	case people.RoleCustomerAdmin:
		return strings.EqualFold(t.Customer, p.Customer)
	case people.RoleSupervisor:
		return h.o.Config().Under(t.Org, p.Org)
	}
	return t.Person == p.Username
}

func (h *handler) listTunnels(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	if h.o.Tunnels == nil {
		return nil, errors.Join(people.ErrNotFound, errors.New("no tunnels here"))
	}
	out := []people.TunnelInfo{}
	for _, t := range h.o.Tunnels.Tunnels() {
		if h.seesTunnel(p, &t) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (h *handler) endTunnel(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	if h.o.Tunnels == nil {
		return nil, errors.Join(people.ErrNotFound, errors.New("no tunnels here"))
	}
	id := r.PathValue("session")
	for _, t := range h.o.Tunnels.Tunnels() {
		if t.Session == id && h.seesTunnel(p, &t) {
			h.o.Tunnels.End(id, "ended by "+p.Username)
			h.change(p, "ended the tunnel "+id+" of "+t.Person+" to "+t.Target)
			return nil, nil
		}
	}
	return nil, errors.Join(people.ErrNotFound, errors.New("no such open tunnel on this broker"))
}

// --- history, backup ---

func (h *handler) audit(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	q := people.Query{}
	v := r.URL.Query()
	for _, f := range []struct {
		name string
		into *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return nil, errors.Join(errBadRequest, errors.New(f.name+": an RFC 3339 time"))
			}
			*f.into = t
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			return nil, errors.Join(errBadRequest, errors.New("limit: 1-10000"))
		}
		q.Limit = n
	}
	cfg := h.o.Config()
	switch p.Role {
	case people.RoleAdmin:
	case people.RoleCustomerAdmin:
		q.Keep = func(rec *people.Record) bool { return strings.EqualFold(rec.Customer, p.Customer) }
	case people.RoleSupervisor:
		q.Keep = func(rec *people.Record) bool { return rec.Org != "" && cfg.Under(rec.Org, p.Org) }
	default:
		q.Keep = func(rec *people.Record) bool { return rec.Person == p.Username }
	}
	recs, err := h.o.People.History(r.Context(), q)
	if err != nil {
		return nil, err
	}
	return nonNil(recs), nil
}

func (h *handler) backup(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	if p.Role != people.RoleAdmin {
		return nil, people.ErrForbidden
	}
	data, err := h.o.People.Backup(r.Context())
	if err != nil {
		return nil, err
	}
	return json.RawMessage(data), nil
}

func (h *handler) restore(w http.ResponseWriter, r *http.Request, p people.Principal) (any, error) {
	if p.Role != people.RoleAdmin {
		return nil, people.ErrForbidden
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRestore))
	if err != nil {
		return nil, errors.Join(errBadRequest, err)
	}
	if err := h.o.People.Restore(r.Context(), data); err != nil {
		return nil, err
	}
	return nil, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
