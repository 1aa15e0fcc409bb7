package pac

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"net/http"
	"strings"

	"maintproxy/config"
	"maintproxy/internal/clientaddr"
	"maintproxy/internal/guard"
)

// authenticate checks the request's Basic credentials with the proxy's own check. On
// failure it has already answered 401 and returns nil.
func (h *handler) authenticate(w http.ResponseWriter, r *http.Request, cfg *config.Broker) (*config.Account, string) {
	user, pass, ok := r.BasicAuth()
	msg := "Log in with your proxy account (the username and password you use for the maintenance proxy)."
	if ok {
		acct, err := h.o.Authenticate(user, pass, clientaddr.IP(r.RemoteAddr))
		if err == nil && acct != nil {
			return acct, pass
		}
		// Authenticate logs refusals itself, sampled; a flood must not fill the disk here.
		var busy *guard.Refusal
		if errors.As(err, &busy) {
			w.Header().Set("Cache-Control", "no-store")
			guard.Refuse(w, r, http.StatusTooManyRequests, "Too many logins right now: "+err.Error()+".", busy)
			return nil, ""
		}
		if err != nil {
			msg = "Login failed: " + err.Error() + "."
		}
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Basic realm=%q, charset="UTF-8"`, cfg.WebHost()))
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, http.StatusUnauthorized)
	return nil, ""
}

// view builds the access view for acct with secret standing for the password.
func (h *handler) view(cfg *config.Broker, acct *config.Account, secret string) accessView {
	rootFile := ""
	if len(bytes.TrimSpace(h.o.RootPEM())) > 0 {
		rootFile = rootFileName(cfg)
	}
	warning := ""
	if h.o.CertWarning != nil {
		warning = h.o.CertWarning()
	}
	return buildView(viewInput{cfg: cfg, account: acct, secret: secret, rootFile: rootFile,
		status: h.o.Status, warning: warning, now: h.now()})
}

// serveAccess renders the access-info page, or its JSON variant; the password is masked.
func (h *handler) serveAccess(w http.ResponseWriter, r *http.Request) {
	cfg := h.o.Config()
	acct, _ := h.authenticate(w, r, cfg)
	if acct == nil {
		return
	}
	v := h.view(cfg, acct, passwordMask)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Vary", "Accept, Authorization")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			h.o.Logger.Debug("writing access JSON", "err", err)
		}
		return
	}
	var buf bytes.Buffer
	if err := h.html.ExecuteTemplate(&buf, "access.html", v); err != nil {
		h.o.Logger.Error("rendering access page", "err", err)
		http.Error(w, "could not render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// serveCopy returns one command with the real password filled in, for the copy buttons:
// the password never appears in the page itself.
func (h *handler) serveCopy(w http.ResponseWriter, r *http.Request) {
	cfg := h.o.Config()
	acct, pass := h.authenticate(w, r, cfg)
	if acct == nil {
		return
	}
	cmd, ok := h.view(cfg, acct, pass).find(r.URL.Query().Get("id"))
	if !ok {
		http.Error(w, "no such command for this account", http.StatusNotFound)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(cmd.Text))
}

// wantsJSON reports whether the client prefers JSON (Accept) or asked with ?format=json.
func wantsJSON(r *http.Request) bool {
	if r.URL.Query().Get("format") == "json" {
		return true
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/json":
			return true
		case "text/html", "application/xhtml+xml":
			return false
		}
	}
	return false
}

func htmlFuncs() htmltemplate.FuncMap {
	return htmltemplate.FuncMap{
		"onoff": func(b bool) string {
			if b {
				return "on"
			}
			return "off"
		},
	}
}
