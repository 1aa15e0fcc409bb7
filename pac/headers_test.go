package pac

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSecurityHeaders(t *testing.T) {
	e := newTestEnv(t, "")
	for _, path := range []string{"/com/remoteproxy/proxy.pac", "/com/remoteproxy/access", "/com/remoteproxy/nope"} {
		w := e.get(t, path, "", "")
		for _, h := range []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy", "Strict-Transport-Security"} {
			if w.Header().Get(h) == "" {
				t.Errorf("%s: no %s", path, h)
			}
		}
	}
	r := httptest.NewRequest(http.MethodGet, "http://admin.example.test/", nil)
	w := httptest.NewRecorder()
	SecurityHeaders(http.NotFoundHandler()).ServeHTTP(w, r)
	if w.Header().Get("Strict-Transport-Security") != "" {
		t.Error("HSTS on plain HTTP")
	}
}

func TestAssetsServed(t *testing.T) {
	e := newTestEnv(t, "")
	for path, typ := range map[string]string{"/com/remoteproxy/assets/access.css": "text/css", "/com/remoteproxy/assets/access.js": "text/javascript"} {
		w := e.get(t, path, "", "")
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), typ) {
			t.Errorf("%s: %d %q", path, w.Code, w.Header().Get("Content-Type"))
		}
	}
	if w := e.get(t, "/com/remoteproxy/assets/", "", ""); w.Code != http.StatusNotFound {
		t.Errorf("directory listing: %d", w.Code)
	}
	if w := e.get(t, "/com/remoteproxy/", "", ""); w.Code != http.StatusFound {
		t.Errorf("index: %d", w.Code)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e := newTestEnv(t, "")
	r := httptest.NewRequest(http.MethodPost, "https://admin.example.test/com/remoteproxy/proxy.pac", nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}

func TestRedirect(t *testing.T) {
	for _, tc := range []struct {
		port, method, host, uri string
		code                    int
		loc                     string
	}{
		{"443", "GET", "admin.example.com", "/com/remoteproxy/proxy.pac", 301, "https://admin.example.com/com/remoteproxy/proxy.pac"},
		{"8443", "GET", "admin.example.com:80", "/a?b=c", 301, "https://admin.example.com:8443/a?b=c"},
		{"", "HEAD", "admin.example.com", "/", 301, "https://admin.example.com/"},
		{"443", "POST", "admin.example.com", "/x", 308, "https://admin.example.com/x"},
		{"8443", "GET", "[::1]:80", "/", 301, "https://[::1]:8443/"},
		{"443", "GET", "[::1]", "/", 301, "https://[::1]/"},
		{"443", "GET", "evil.com/x@", "/", 400, ""},
	} {
		r := httptest.NewRequest(tc.method, "http://placeholder"+tc.uri, nil)
		r.Host = tc.host
		w := httptest.NewRecorder()
		Redirect(tc.port).ServeHTTP(w, r)
		if w.Code != tc.code || w.Header().Get("Location") != tc.loc {
			t.Errorf("%+v: %d %q", tc, w.Code, w.Header().Get("Location"))
		}
	}
}
