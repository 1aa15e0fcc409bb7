package tunnel

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"maintproxy/internal/guard"
)

// TestLoginObserverHearsTheAgentsRefusals: each refusal that is the agent's doing reaches
// the observer in the manual's words, known systems marked as such.
func TestLoginObserverHearsTheAgentsRefusals(t *testing.T) {
	srv, fast, _ := loginServer(t, guard.Settings{Rate: 0.5, Burst: 2, Concurrent: 1})
	var got []LoginRefused
	srv.onRefused = func(e LoginRefused) { got = append(got, e) }
	login := func(remote, user, secret string) int {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, loginRequest(remote, user, secret))
		return w.Code
	}
	login("192.0.2.1:1", "12345/se1", "wrong")
	login("192.0.2.2:1", "99999/x", "whatever")
	login("192.0.2.3:1", "no-slash", "whatever")
	login("192.0.2.1:1", "12345/se1", "wrong")
	if code := login("192.0.2.1:1", "12345/se1", fast); code != http.StatusServiceUnavailable {
		t.Fatalf("the throttled address got %d", code)
	}
	want := []LoginRefused{
		{ID: Identity{"12345", "se1"}, Known: true, Reason: RefusedInvalid, Detail: "wrong secret", Remote: "192.0.2.1"},
		{ID: Identity{"99999", "x"}, Reason: RefusedAuth, Detail: "unknown customer/system", Remote: "192.0.2.2"},
		{ID: Identity{"no-slash", ""}, Reason: RefusedAuth, Detail: "user name is not customer/system", Remote: "192.0.2.3"},
		{ID: Identity{"12345", "se1"}, Known: true, Reason: RefusedInvalid, Detail: "wrong secret", Remote: "192.0.2.1"},
		{ID: Identity{"12345", "se1"}, Known: true, Reason: RefusedLocked, Remote: "192.0.2.1"},
	}
	if len(got) != len(want) {
		t.Fatalf("observed %d refusals, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.At.IsZero() {
			t.Errorf("refusal %d has no time", i)
		}
		if w.Detail == "" {
			w.Detail = g.Detail // the throttle's text carries its wait
		}
		g.At = w.At
		if g != w {
			t.Errorf("refusal %d = %+v, want %+v", i, g, w)
		}
	}
}

// TestHelloOfAnotherProtocol: an agent of another protocol version is refused with an
// error the login observer recognises, in the words the log always used.
func TestHelloOfAnotherProtocol(t *testing.T) {
	_, err := decodeHello(strings.NewReader(`{"version": 99, "remote_access": true}`))
	if !errors.As(err, new(protocolError)) || err.Error() != "agent speaks protocol 99, broker 1" {
		t.Errorf("err = %v", err)
	}
	if _, err := decodeHello(strings.NewReader(`{"version": 1}`)); err != nil {
		t.Errorf("a hello of this protocol: %v", err)
	}
}
