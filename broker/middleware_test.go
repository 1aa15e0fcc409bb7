package broker

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestSecurityHeaders(t *testing.T) {
	h := securityHeaders(http.NotFoundHandler())
	r := httptest.NewRequest(http.MethodGet, "https://admin.example.test/com/remoteproxy/nope", nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	for _, name := range []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy",
		"Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy", "Permissions-Policy", "Strict-Transport-Security"} {
		if w.Header().Get(name) == "" {
			t.Errorf("no %s on a TLS answer", name)
		}
	}
	r = httptest.NewRequest(http.MethodGet, "http://admin.example.test/", nil)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Header().Get("Strict-Transport-Security") != "" {
		t.Error("HSTS on plain HTTP")
	}
	if w.Header().Get("Content-Security-Policy") == "" {
		t.Error("no Content-Security-Policy on plain HTTP")
	}
}

func TestRedirectToHTTPS(t *testing.T) {
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
		redirectToHTTPS(tc.port).ServeHTTP(w, r)
		if w.Code != tc.code || w.Header().Get("Location") != tc.loc {
			t.Errorf("%+v: %d %q", tc, w.Code, w.Header().Get("Location"))
		}
	}
}
