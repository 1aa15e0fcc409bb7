package client

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maintproxy/internal/refusal"
)

func TestStoreIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "maint", "config.json")
	want := Stored{Proxy: "maint.example.com:6443", Username: "resa", CAFile: "/ca.pem", Password: "s3cret"}
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	dir, _ := os.Stat(filepath.Dir(path))
	if st.Mode().Perm() != 0o600 || dir.Mode().Perm() != 0o700 {
		t.Fatalf("modes %v %v", st.Mode(), dir.Mode())
	}
	got, err := Load(path)
	if err != nil || got != want {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	os.Chmod(path, 0o644)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable file was accepted: %v", err)
	}
	if s, err := Load(filepath.Join(t.TempDir(), "none.json")); err != nil || s != (Stored{}) {
		t.Fatalf("missing file: %+v %v", s, err)
	}
}

func TestResolvePrecedence(t *testing.T) {
	stored := Stored{Proxy: "stored:1", Username: "resa", CAFile: "/stored.pem", Password: "stored-pw"}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	s, src := Resolve(Settings{}, getenv, stored)
	if s.Proxy != "stored:1" || s.Password != "stored-pw" || src != "stored by maint login" {
		t.Errorf("stored only: %+v %q", s, src)
	}
	env[EnvPassword], env[EnvProxy] = "env-pw", "env:2"
	s, src = Resolve(Settings{}, getenv, stored)
	if s.Proxy != "env:2" || s.Password != "env-pw" || src != EnvPassword || s.CAFile != "/stored.pem" {
		t.Errorf("env over stored: %+v %q", s, src)
	}
	s, src = Resolve(Settings{Proxy: "flag:3", Username: "resa", Password: "flag-pw"}, getenv, stored)
	if s.Proxy != "flag:3" || s.Password != "flag-pw" || src != "command line" {
		t.Errorf("flags over env: %+v %q", s, src)
	}
	// A stored password belongs to the stored user only.
	delete(env, EnvPassword)
	s, src = Resolve(Settings{Username: "other"}, getenv, stored)
	if s.Password != "" || src != "" {
		t.Errorf("stored password used for another user: %+v %q", s, src)
	}
}

func TestProxyErrorMessages(t *testing.T) {
	for _, c := range []struct {
		e    ProxyError
		want string
	}{
		{ProxyError{Status: http.StatusProxyAuthRequired, Reason: "wrong proxy username or password: log in…", Refusal: refusal.BadCredentials}, "wrong proxy username or password"},
		{ProxyError{Status: http.StatusProxyAuthRequired, Reason: "account temporarily locked after too many wrong passwords: …", Refusal: refusal.Locked}, "account temporarily locked"},
		{ProxyError{Status: http.StatusProxyAuthRequired, Refusal: refusal.Locked}, "temporarily locked"},
		// The text alone does not make a lockout: only the proxy's reason does.
		{ProxyError{Status: http.StatusProxyAuthRequired, Reason: "locked out? no: wrong proxy username or password"}, "wrong proxy username or password"},
		{ProxyError{Status: http.StatusForbidden, Reason: "refused by the customer's settings: remote access is disabled on this system"}, "remote access is disabled"},
		{ProxyError{Status: http.StatusServiceUnavailable, Reason: "system offline: system 12345-se1 offline since 2026-11-23 00:15:58 UTC (3m ago)"}, "offline since"},
		{ProxyError{Status: http.StatusTeapot}, "418"},
	} {
		if got := c.e.Error(); !strings.Contains(got, c.want) || strings.Contains(got, "\n") {
			t.Errorf("%d: %q, want one line with %q", c.e.Status, got, c.want)
		}
	}
}

func TestSettingsCheck(t *testing.T) {
	for _, c := range []struct {
		s    Settings
		want string
	}{
		{Settings{}, "no proxy"},
		{Settings{Proxy: "nohostport"}, "HOST:PORT"},
		{Settings{Proxy: "h:1"}, "username"},
		{Settings{Proxy: "h:1", Username: "u"}, "maint login"},
	} {
		if err := c.s.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v", c.s, err)
		}
	}
}
