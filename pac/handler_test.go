package pac

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

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
