package broker

// Middleware of the broker's web listeners: what every answer of the web site carries,
// and the plain-HTTP listener's redirect.

import (
	"net"
	"net/http"
	"strings"
)

// securityHeaders sets conservative security headers on every response of h: no sniffing,
// no framing, no referrer, a same-origin-only content security policy (the pages use only
// embedded assets), and HSTS on TLS connections. Handlers may still override them.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
			"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

// redirectToHTTPS answers every plain-HTTP request with a redirect to the same host and
// path over HTTPS on webPort (omitted when it is 443 or empty): 301 for GET and HEAD, 308
// otherwise so that a method and body are kept. It is the plain listener's only answer
// besides ACME HTTP-01 challenges, which certs.Manager.HTTPHandler routes before it.
func redirectToHTTPS(webPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if !validRedirectHost(host) {
			http.Error(w, "bad Host header", http.StatusBadRequest)
			return
		}
		if webPort != "" && webPort != "443" {
			host = net.JoinHostPort(host, webPort)
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		code := http.StatusPermanentRedirect
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			code = http.StatusMovedPermanently
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), code)
	})
}

// validRedirectHost accepts DNS names and IP addresses only, so a crafted Host header
// cannot turn the redirect into something else (userinfo, paths, CRLF).
func validRedirectHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
