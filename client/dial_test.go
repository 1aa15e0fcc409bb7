package client

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maintproxy/internal/refusal"
)

// stubProxy is a TLS server on loopback that refuses every CONNECT the way the broker's
// proxy does, with the reason and text chosen by the target's host.
func stubProxy(t *testing.T) Settings {
	t.Helper()
	refusals := map[string]struct {
		reason refusal.Reason
		text   string
	}{
		"locked.test":  {refusal.Locked, "account temporarily locked after too many wrong passwords: log in with your reseller's proxy account"},
		"wrong.test":   {refusal.BadCredentials, "wrong proxy username or password: log in with your reseller's proxy account"},
		"oldtext.test": {"", "account locked? the text alone must not count"},
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := strings.TrimSuffix(r.Host, ":1")
		f, ok := refusals[host]
		if r.Method != http.MethodConnect || !ok {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		if f.reason != "" {
			w.Header().Set(refusal.Header, string(f.reason))
		}
		w.Header().Set("Proxy-Authenticate", `Basic realm="maint.example.test"`)
		w.WriteHeader(http.StatusProxyAuthRequired)
		io.WriteString(w, f.text+"\n")
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return Settings{Proxy: srv.Listener.Addr().String(), Username: "resa", Password: "pw", CAFile: ca}
}

// TestLockoutFromRefusalHeader: the proxy's Maintproxy-Refusal header, not its text, tells
// the client that the account is locked.
func TestLockoutFromRefusalHeader(t *testing.T) {
	s := stubProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := s.Dial(ctx, "locked.test:1")
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("locked refusal: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "temporarily locked") || strings.Contains(err.Error(), "\n") {
		t.Errorf("locked refusal reads %q", err)
	}
	var pe *ProxyError
	if !errors.As(err, &pe) || pe.Status != http.StatusProxyAuthRequired || pe.Refusal != refusal.Locked {
		t.Errorf("locked refusal: %#v", pe)
	}

	for _, target := range []string{"wrong.test:1", "oldtext.test:1"} {
		_, err := s.Dial(ctx, target)
		if err == nil || errors.Is(err, ErrLocked) {
			t.Errorf("%s: %v, want a refusal that is not a lockout", target, err)
			continue
		}
		if err.Error() != "wrong proxy username or password" {
			t.Errorf("%s reads %q", target, err)
		}
	}
}
