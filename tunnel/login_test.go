package tunnel

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
	"maintproxy/internal/guard"
)

// loginServer is a Server whose systems 12345/se1 (hmac-sha256) and 12345/se2 (bcrypt)
// have the returned secrets.
func loginServer(t *testing.T, s guard.Settings) (srv *Server, fast, slow string) {
	t.Helper()
	fast, fastHash, err := config.NewAgentSecret()
	if err != nil {
		t.Fatal(err)
	}
	slow = "bcrypt-secret"
	h, _ := bcrypt.GenerateFromPassword([]byte(slow), bcrypt.MinCost)
	srv = NewServer(NewRegistry(), func(id Identity) (string, bool) {
		switch id {
		case Identity{"12345", "se1"}:
			return fastHash, true
		case Identity{"12345", "se2"}:
			return string(h), true
		}
		return "", false
	}, slog.New(slog.DiscardHandler), WithAdmission(guard.New(func() guard.Settings { return s }, nil)))
	return srv, fast, slow
}

func loginRequest(remote, user, secret string) *http.Request {
	r := httptest.NewRequest("GET", AgentPath, nil)
	r.RemoteAddr = remote
	r.Header.Set("Upgrade", "websocket")
	r.SetBasicAuth(user, secret)
	return r
}

// TestLoginWrongSecretsThrottleOnlyTheirAddress: hmac-sha256 logins need no slot; each
// wrong secret costs its address a token; an address out of tokens gets 503 with
// Retry-After before any check, while the genuine agent elsewhere is unaffected.
func TestLoginWrongSecretsThrottleOnlyTheirAddress(t *testing.T) {
	srv, fast, _ := loginServer(t, guard.Settings{Rate: 0.5, Burst: 5, Concurrent: 1})
	for i := range 5 {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, loginRequest("192.0.2.66:4000", "12345/se1", "wrong"))
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d: %d", i, w.Code)
		}
	}
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, loginRequest("192.0.2.66:4000", "12345/se1", "wrong"))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("throttled address: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	// Unknown systems are refused as cheaply, and cost a token too.
	w = httptest.NewRecorder()
	srv.ServeHTTP(w, loginRequest("192.0.2.67:4000", "99999/x", "wrong"))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("unknown system: %d", w.Code)
	}
	// Many genuine logins from one address (a fleet behind NAT) are never throttled.
	for i := range 50 {
		if _, err := srv.authenticate(loginRequest("192.0.2.10:5000", "12345/SE1", fast)); err != nil {
			t.Fatalf("genuine login %d: %v", i, err)
		}
	}
	if st := srv.LoginStats(); st.OK != 50 || st.Refused != 6 || st.Shed != 1 || st.Slow != 0 || st.Guard.Admitted != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestLoginBcryptCheckedOnceThenCached: an old bcrypt secret is checked once through
// admission control and then accepted from the cache.
func TestLoginBcryptCheckedOnceThenCached(t *testing.T) {
	srv, _, slow := loginServer(t, guard.Settings{Rate: 0.5, Burst: 5, Concurrent: 1})
	for i := range 3 {
		if _, err := srv.authenticate(loginRequest("192.0.2.10:5000", "12345/se2", slow)); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	if st := srv.LoginStats(); st.Slow != 1 || st.Cached != 2 || st.Guard.Admitted != 1 {
		t.Errorf("stats %+v", st)
	}
	if _, err := srv.authenticate(loginRequest("192.0.2.10:5000", "12345/se2", "nope")); !errors.Is(err, errWrongSecret) {
		t.Errorf("wrong bcrypt secret: %v", err)
	}
}

// TestLoginBcryptShedAtOnce: with every slot and the queue taken, a bcrypt login is
// answered 503 with Retry-After at once, not queued.
func TestLoginBcryptShedAtOnce(t *testing.T) {
	srv, fast, slow := loginServer(t, guard.Settings{Rate: 1000, Burst: 1000, Concurrent: 1, Queue: 1, MaxWait: time.Hour})
	release, err := srv.admission.Admit(guard.AddrKey("10.9.9.9"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer release()
	wg.Go(func() {
		r, err := srv.admission.Admit(guard.AddrKey("10.9.9.8"))
		if err == nil {
			r()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for srv.admission.Stats().Waiting != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, loginRequest("192.0.2.10:5000", "12345/se2", slow))
		done <- w
	}()
	select {
	case w := <-done:
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Fatalf("bcrypt login beyond the queue: %d %v", w.Code, w.Header())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bcrypt login was queued instead of refused at once")
	}
	// hmac-sha256 logins do not need a slot at all.
	if _, err := srv.authenticate(loginRequest("192.0.2.10:5000", "12345/se1", fast)); err != nil {
		t.Fatalf("fast login while slots are taken: %v", err)
	}
}

// TestAgentHonoursRetryAfter: an agent told 503 + Retry-After waits at least that long
// before trying again.
func TestAgentHonoursRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var tries []time.Time
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tries = append(tries, time.Now())
		mu.Unlock()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	cfg, err := config.NewAgent(config.Agent{Broker: srv.URL, Customer: "12345", System: "se1", Secret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	stop := runAgent(t, cfg, func(a *Agent) {
		// Trust the test server; dials still go through the agent's broker picker.
		a.conns[0].client.Transport.(*http.Transport).TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(tries)
		mu.Unlock()
		if n >= 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(tries) < 3 {
		t.Fatalf("only %d tries", len(tries))
	}
	for i := 1; i < len(tries); i++ {
		if gap := tries[i].Sub(tries[i-1]); gap < time.Second {
			t.Errorf("try %d came %v after the one before, despite Retry-After: 1", i, gap)
		}
	}
	if got := retryAfter("7"); got != 7*time.Second {
		t.Errorf("retryAfter(7) = %v", got)
	}
	if got := retryAfter("Wed, 21 Oct 2015 07:28:00 GMT"); got != time.Second {
		t.Errorf("retryAfter(date) = %v", got)
	}
}
