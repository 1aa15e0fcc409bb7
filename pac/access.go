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

// signedIn authenticates the request and gathers the view input for its account. Commands
// show the password masked unless withPassword (the copy endpoint). On false the answer
// (401, 429 or 400) has been written.
func (h *handler) signedIn(w http.ResponseWriter, r *http.Request, withPassword bool) (viewInput, bool) {
	cfg := h.o.Config()
	acct, pass := h.authenticate(w, r, cfg)
	if acct == nil {
		return viewInput{}, false
	}
	if !withPassword {
		pass = passwordMask
	}
	return h.input(w, r, cfg, acct, pass)
}

// pathSystem is signedIn plus the page of the system the path names (404 if the account
// has no such system).
func (h *handler) pathSystem(w http.ResponseWriter, r *http.Request) (systemPage, bool) {
	in, ok := h.signedIn(w, r, false)
	if !ok {
		return systemPage{}, false
	}
	page, ok := buildSystemPage(in, r.PathValue("customer"), r.PathValue("system"))
	if !ok {
		h.notFound(w, r)
	}
	return page, ok
}

// input gathers what the view builders need for one request; secret stands for the
// password. A bad query value is answered with 400 (false).
func (h *handler) input(w http.ResponseWriter, r *http.Request, cfg *config.Broker, acct *config.Account, secret string) (viewInput, bool) {
	params, err := parseParams(r.URL.Query())
	if err != nil {
		h.badRequest(w, r, err)
		return viewInput{}, false
	}
	root := h.o.RootPEM()
	rootFile := ""
	if len(bytes.TrimSpace(root)) > 0 {
		rootFile = rootFileName(cfg)
	}
	warning := ""
	if h.o.CertWarning != nil {
		warning = h.o.CertWarning()
	}
	return viewInput{cfg: cfg, account: acct, secret: secret, rootFile: rootFile, status: h.o.Status,
		warning: warning, certs: h.o.Certificates, params: params, now: h.now(),
		tools: bundleContents(rootFile, toolBinaries(h.o.ToolsDir))}, true
}

func (h *handler) badRequest(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		body := map[string]string{"error": err.Error()}
		var pe paramError
		if errors.As(err, &pe) {
			body["field"] = pe.field
		}
		writeJSON(w, http.StatusBadRequest, body, h)
		return
	}
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// serveOverview renders the account's customers and systems with their lights, or the
// JSON variant.
func (h *handler) serveOverview(w http.ResponseWriter, r *http.Request) {
	in, ok := h.signedIn(w, r, false)
	if !ok {
		return
	}
	h.render(w, r, "overview.html", buildOverview(in))
}

// serveSystem renders one system's page (links, commands, tunnel entries), or its JSON.
func (h *handler) serveSystem(w http.ResponseWriter, r *http.Request) {
	page, ok := h.pathSystem(w, r)
	if !ok {
		return
	}
	h.render(w, r, "system.html", page)
}

// notFound answers the same for a system that does not exist and one of another account.
func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, "no such system for this account", http.StatusNotFound)
}

// render writes v as the HTML template name, or as JSON when the client asks for it.
func (h *handler) render(w http.ResponseWriter, r *http.Request, name string, v any) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Vary", "Accept, Authorization")
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, v, h)
		return
	}
	var buf bytes.Buffer
	if err := h.html.ExecuteTemplate(&buf, name, v); err != nil {
		h.o.Logger.Error("rendering access page", "page", name, "err", err)
		http.Error(w, "could not render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any, h *handler) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		h.o.Logger.Debug("writing access JSON", "err", err)
	}
}

// serveCopy returns one command with the real password filled in, for the copy buttons:
// the password never appears in the pages themselves. The ID names its system
// (customer/system/…), so only that system is built.
func (h *handler) serveCopy(w http.ResponseWriter, r *http.Request) {
	in, ok := h.signedIn(w, r, true)
	if !ok {
		return
	}
	id := r.URL.Query().Get("id")
	parts := strings.SplitN(id, "/", 3)
	if len(parts) == 3 {
		if page, ok := buildSystemPage(in, parts[0], parts[1]); ok {
			if cmd, ok := page.System.find(id); ok {
				w.Header().Set("Cache-Control", "no-store")
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, _ = w.Write([]byte(cmd.Text))
				return
			}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, "no such command for this account", http.StatusNotFound)
}

// serveRDP returns the .rdp file of one RDP target: the RDP client opens the local
// forward of the page's command (127.0.0.1:<port>) and asks for the Windows credentials.
func (h *handler) serveRDP(w http.ResponseWriter, r *http.Request) {
	page, ok := h.pathSystem(w, r)
	if !ok {
		return
	}
	name := r.PathValue("file")
	local, ok := page.System.findRDP(name)
	if !ok {
		h.notFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/x-rdp")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	_, _ = w.Write([]byte(rdpFile(local)))
}

// rdpFile is a minimal .rdp file for the forward on 127.0.0.1:local (CRLF, as mstsc writes).
func rdpFile(local int) string {
	lines := []string{
		fmt.Sprintf("full address:s:127.0.0.1:%d", local),
		"prompt for credentials:i:1",
		"authentication level:i:2",
		"screen mode id:i:2",
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}

// serveSSHConfig returns an ssh_config snippet for the account's systems that offer SSH.
func (h *handler) serveSSHConfig(w http.ResponseWriter, r *http.Request) {
	in, ok := h.signedIn(w, r, false)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="maintproxy-ssh_config"`)
	_, _ = w.Write([]byte(sshConfig(in)))
}

// serveRoot serves the root certificate the proxy's chain ends in, for the trust steps.
func (h *handler) serveRoot(w http.ResponseWriter, r *http.Request) {
	cfg := h.o.Config()
	root := h.o.RootPEM()
	name := r.PathValue("file")
	if len(bytes.TrimSpace(root)) == 0 || name != rootFileName(cfg) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(root)
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
