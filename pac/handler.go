package pac

import (
	"bytes"
	"embed"
	htmltemplate "html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"text/template"
	"time"

	"maintproxy/certs"
	"maintproxy/config"
)

//go:embed templates assets
var content embed.FS

// Options configures the handler returned by New. Config, Status, Authenticate and RootPEM
// are required.
type Options struct {
	// Config returns the current configuration snapshot (it may change between calls).
	Config func() *config.Broker
	// Status reports the live agent state of one customer system (names as configured).
	Status func(customer, system string) SystemStatus
	// Authenticate is the proxy's own Basic-auth check; a nil error means the account is valid.
	Authenticate func(username, password, clientIP string) (*config.Account, error)
	// RootPEM returns the root certificate the proxy's TLS chain ends in (for the tool bundle).
	RootPEM func() []byte
	// CertWarning, if set and non-empty, is shown as a banner on the access page.
	CertWarning func() string
	// Certificates, if set, describes what each listener serves (issuer, subject, SANs,
	// validity, SHA-256 fingerprints): the overview shows it in a collapsed section. The
	// configuration marks no operators, and the same facts are public (GET /certs, any TLS
	// client), so every signed-in account sees it. Source (local paths) is not shown.
	Certificates func() *certs.Description
	// ToolsDir holds the built clients of the tool bundle (ExpectedClients); New logs a
	// warning naming the ones it lacks, and the pages list only those present.
	ToolsDir string
	// Logger receives request failures; nil discards them.
	Logger *slog.Logger
}

// handler serves /com/remoteproxy/.
type handler struct {
	o     Options
	text  *template.Template
	html  *htmltemplate.Template
	cache artifactCache
	now   func() time.Time
}

// New returns the handler for everything under /com/remoteproxy/: proxy.pac,
// chrome-extension.zip, tools.zip and the root certificate (all without auth), the access
// pages (Basic auth with the proxy account; HTML, or JSON for Accept: application/json or
// ?format=json): access (the overview), access/<customer>/<system> (one system), their
// downloads (.rdp files, ssh_config) and assets. Mount it at /com/remoteproxy/ on the web
// listener's mux.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if missing := MissingClients(o.ToolsDir); len(missing) > 0 {
		o.Logger.Warn("tool bundle: clients missing; tools.zip and the access pages leave them out (make build puts them in bin/clients)",
			"tools_dir", o.ToolsDir, "missing", strings.Join(missing, " "))
	}
	h := &handler{
		o:    o,
		text: template.Must(template.ParseFS(content, "templates/*.txt", "templates/*.tmpl")),
		html: htmltemplate.Must(htmltemplate.New("").Funcs(htmlFuncs()).ParseFS(content, "templates/*.html")),
		now:  time.Now,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /com/remoteproxy/proxy.pac", h.servePAC)
	mux.HandleFunc("GET /com/remoteproxy/chrome-extension.zip", h.serveExtension)
	mux.HandleFunc("GET /com/remoteproxy/tools.zip", h.serveTools)
	mux.HandleFunc("GET /com/remoteproxy/{file}", h.serveRoot)
	mux.HandleFunc("GET /com/remoteproxy/access", h.serveOverview)
	mux.HandleFunc("GET /com/remoteproxy/access/copy", h.serveCopy)
	mux.HandleFunc("GET /com/remoteproxy/access/ssh_config", h.serveSSHConfig)
	mux.HandleFunc("GET /com/remoteproxy/access/{customer}/{system}", h.serveSystem)
	mux.HandleFunc("GET /com/remoteproxy/access/{customer}/{system}/{file}", h.serveRDP)
	assets, _ := fs.Sub(content, "assets")
	mux.Handle("GET /com/remoteproxy/assets/", http.StripPrefix("/com/remoteproxy/assets/", assetServer(assets)))
	mux.Handle("GET /com/remoteproxy/{$}", http.RedirectHandler("/com/remoteproxy/access", http.StatusFound))
	return mux
}

// assetServer serves the embedded CSS and JS; they change only with the binary.
func assetServer(assets fs.FS) http.Handler {
	files := http.FileServerFS(assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

func (h *handler) servePAC(w http.ResponseWriter, r *http.Request) {
	cfg := h.o.Config()
	body := PAC(cfg.Domain, proxyAddr(cfg))
	w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
	// Browsers re-read the PAC file rarely anyway; keep proxies from pinning an old one.
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "proxy.pac", time.Time{}, strings.NewReader(body))
}

func (h *handler) serveExtension(w http.ResponseWriter, r *http.Request) {
	cfg := h.o.Config()
	key := cfg.Domain + "\x00" + proxyAddr(cfg) + "\x00" + webURL(cfg, "")
	h.serveZip(w, r, "chrome-extension.zip", key, func() ([]byte, error) {
		files, err := extensionFiles(cfg, h.text)
		if err != nil {
			return nil, err
		}
		return buildZip(files)
	})
}

func (h *handler) serveTools(w http.ResponseWriter, r *http.Request) {
	cfg := h.o.Config()
	root := h.o.RootPEM()
	bins := toolBinaries(h.o.ToolsDir)
	h.serveZip(w, r, "tools.zip", toolsKey(cfg, root, bins), func() ([]byte, error) {
		files, err := toolsFiles(cfg, root, bins, h.text)
		if err != nil {
			return nil, err
		}
		return buildZip(files)
	})
}

func (h *handler) serveZip(w http.ResponseWriter, r *http.Request, name, key string, build func() ([]byte, error)) {
	a, err := h.cache.get(name, key, build)
	if err != nil {
		h.o.Logger.Error("building download failed", "file", name, "err", err)
		http.Error(w, "could not build "+name, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("ETag", a.etag)
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.data))
}
