// Package web is the people store's self-service pages under /account/ on the broker's web
// listener: sign-in with a session cookie, change of one's own password, a supervisor's
// people (add, disable, enable) and organisation's proxy account password, and a customer admin's systems (access mode), access
// requests (grant, deny), open tunnels (end) and history.
//
// The session cookie is Secure, HttpOnly, SameSite=Strict and __Host- prefixed; its value
// is 256 random bits of which the store keeps only the SHA-256 (people.Service.StartSession),
// so sessions hold on every broker of a cluster and end after people.session_idle unused.
// Every form that changes something carries the session's CSRF token and is refused (403)
// without it. The pages do nothing themselves: each action is a call of the JSON API
// (package api) in this process as the signed-in person, with all of the API's checks.
package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"maintproxy/internal/clientaddr"
	"maintproxy/people"
	"maintproxy/people/api"
)

// Prefix is where the pages are mounted.
const Prefix = "/account/"

// CookieName is the session cookie (the __Host- prefix makes browsers insist on Secure,
// Path=/ and no Domain).
const CookieName = "__Host-maintproxy-session"

// maxForm bounds a form's body.
const maxForm = 16 << 10

// Options configure the pages. All are required but Logger.
type Options struct {
	People *people.Service
	// API is the JSON API's handler (api.New), called in-process for every action.
	API http.Handler
	// Authenticate is the proxy's password check (with its lockout and admission).
	Authenticate func(username, password, clientIP string) (people.Principal, error)
	Logger       *slog.Logger
}

type handler struct {
	o Options
}

// New returns the handler of everything under Prefix.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"signin", h.signinForm)
	mux.HandleFunc("POST "+Prefix+"signin", h.signin)
	mux.HandleFunc("POST "+Prefix+"signout", h.signout)
	mux.HandleFunc("GET "+Prefix+"{$}", h.home)
	mux.HandleFunc("POST "+Prefix+"action", h.action)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// session returns the request's session and principal, or false (not signed in, idle,
// disabled).
func (h *handler) session(r *http.Request) (people.Session, people.Principal, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return people.Session{}, people.Principal{}, false
	}
	se, p, err := h.o.People.Session(r.Context(), c.Value)
	return se, p, err == nil
}

func (h *handler) signinForm(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := h.session(r); ok {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	h.render(w, http.StatusOK, page{Title: "Sign in", SignIn: true, Error: r.URL.Query().Get("error")})
}

func (h *handler) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	user, pass := r.PostFormValue("username"), r.PostFormValue("password")
	p, err := h.o.Authenticate(user, pass, clientaddr.IP(r.RemoteAddr))
	if err == nil && (!p.Person || p.TokenID != "") {
		err = errors.New("sign in with your personal login (a proxy account or a token has no pages)")
	}
	if err != nil {
		h.render(w, http.StatusUnauthorized, page{Title: "Sign in", SignIn: true, Error: err.Error()})
		return
	}
	cookie, _, err := h.o.People.StartSession(r.Context(), p.Username)
	if err != nil {
		h.render(w, http.StatusServiceUnavailable, page{Title: "Sign in", SignIn: true, Error: err.Error()})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: cookie, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (h *handler) signout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	se, _, ok := h.session(r)
	if ok && !se.CheckCSRF(r.PostFormValue("csrf")) {
		http.Error(w, "the form's CSRF token is missing or wrong: reload the page", http.StatusForbidden)
		return
	}
	if c, err := r.Cookie(CookieName); err == nil {
		h.o.People.EndSession(r.Context(), c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

// page is what the template shows.
type page struct {
	Title, Error, Done, CSRF string
	SignIn                   bool
	Me                       people.Principal
	People                   []api.PersonView
	Modes                    []people.Mode
	Requests                 []people.Request
	Grants                   []people.Grant
	Tunnels                  []people.TunnelInfo
	History                  []people.Record
	Supervisor, CustomerAdm  bool
}

func (h *handler) home(w http.ResponseWriter, r *http.Request) {
	se, p, ok := h.session(r)
	if !ok {
		http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
		return
	}
	pg := page{Title: "Account", Me: p, CSRF: se.CSRF, Error: r.URL.Query().Get("error"), Done: r.URL.Query().Get("done"),
		Supervisor: p.Role == people.RoleSupervisor, CustomerAdm: p.Role == people.RoleCustomerAdmin}
	since := url.QueryEscape(time.Now().Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339))
	var errs []error
	get := func(path string, out any) {
		if _, err := h.call(r, p, http.MethodGet, path, nil, out); err != nil {
			errs = append(errs, err)
		}
	}
	if pg.Supervisor {
		get("people", &pg.People)
	}
	if pg.CustomerAdm {
		get("modes", &pg.Modes)
		get("requests", &pg.Requests)
		get("grants", &pg.Grants)
	}
	if p.Role != people.RoleReadonly {
		get("tunnels", &pg.Tunnels)
	}
	get("audit?limit=50&since="+since, &pg.History)
	if len(errs) > 0 && pg.Error == "" {
		pg.Error = errors.Join(errs...).Error()
	}
	h.render(w, http.StatusOK, pg)
}

// action runs one form's action through the API after the session and CSRF checks.
func (h *handler) action(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	se, p, ok := h.session(r)
	if !ok {
		http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
		return
	}
	if !se.CheckCSRF(r.PostFormValue("csrf")) {
		http.Error(w, "the form's CSRF token is missing or wrong: reload the page", http.StatusForbidden)
		return
	}
	f := r.PostFormValue
	seg := url.PathEscape
	var method, path string
	var body any
	switch act := f("action"); act {
	case "password":
		method, path, body = http.MethodPost, "me/password", map[string]string{"current": f("current"), "new": f("new")}
	case "account-password":
		if f("new") != f("repeat") {
			http.Redirect(w, r, Prefix+"?"+url.Values{"error": {"the new password and its repetition differ"}}.Encode(), http.StatusSeeOther)
			return
		}
		method, path, body = http.MethodPost, "accounts/"+seg(p.Org)+"/password", map[string]string{"password": f("new")}
	case "add-person":
		method, path = http.MethodPost, "people"
		body = map[string]string{"username": f("username"), "name": f("name"), "role": f("role"), "password": f("password")}
	case "disable", "enable":
		method, path = http.MethodPost, "people/"+seg(f("username"))+"/"+act
	case "mode":
		method, path, body = http.MethodPut, "modes/"+seg(f("customer"))+"/"+seg(f("system")), map[string]string{"mode": f("mode")}
	case "grant":
		method, path, body = http.MethodPost, "requests/"+seg(f("id"))+"/grant", map[string]string{"duration": f("duration")}
	case "deny":
		method, path = http.MethodPost, "requests/"+seg(f("id"))+"/deny"
	case "end-tunnel":
		method, path = http.MethodDelete, "tunnels/"+seg(f("session"))
	default:
		http.Error(w, "no such action", http.StatusBadRequest)
		return
	}
	q := url.Values{}
	if _, err := h.call(r, p, method, path, body, nil); err != nil {
		q.Set("error", err.Error())
	} else {
		q.Set("done", "done: "+f("action"))
	}
	http.Redirect(w, r, Prefix+"?"+q.Encode(), http.StatusSeeOther)
}

// call runs one API request in this process as p and decodes its answer into out.
func (h *handler) call(r *http.Request, p people.Principal, method, path string, body, out any) (int, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(api.WithPrincipal(context.WithoutCancel(r.Context()), p), method, api.Prefix+path, rd)
	if err != nil {
		return 0, err
	}
	req.RemoteAddr = r.RemoteAddr
	rec := httptest.NewRecorder()
	h.o.API.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(rec.Body.Bytes(), &e)
		return rec.Code, errors.New(strings.TrimSpace(e.Error))
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			return rec.Code, err
		}
	}
	return rec.Code, nil
}

func (h *handler) render(w http.ResponseWriter, status int, pg page) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, pg); err != nil {
		h.o.Logger.Error("account page", "err", err.Error())
		http.Error(w, "page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"when": func(t time.Time) string { return t.Local().Format("2006-01-02 15:04") },
}).Parse(pageHTML))
