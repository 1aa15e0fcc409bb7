package tunnel

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestMaxConcurrentLogins: with WithMaxConcurrentLogins(2), four logins at once reach the
// secret check two at a time; the others wait, and give up when their request ends.
func TestMaxConcurrentLogins(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // also when the test fails early
	var inside, calls atomic.Int32
	s := NewServer(NewRegistry(), func(Identity) (string, bool) {
		calls.Add(1)
		inside.Add(1)
		defer inside.Add(-1)
		<-release
		return string(hash), true
	}, slog.New(slog.DiscardHandler), WithMaxConcurrentLogins(2))

	// waitFor polls cond until it holds, failing the test after 10 seconds.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var done atomic.Int32
	for range 4 {
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, AgentPath, nil)
		r.Header.Set("Upgrade", "websocket")
		r.SetBasicAuth("12345/se1", "wrong")
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != http.StatusUnauthorized {
				t.Errorf("login: %d", w.Code)
			}
			done.Add(1)
		}()
	}
	waitFor("two logins in the secret check", func() bool { return inside.Load() == 2 })
	cancel() // the two waiting for a slot give up; the two inside are not interrupted
	waitFor("the waiting logins to give up", func() bool { return done.Load() == 2 })
	if n := calls.Load(); n != 2 {
		t.Errorf("%d secret checks with a limit of 2", n)
	}
	free()
	wg.Wait()
	if n := calls.Load(); n != 2 {
		t.Errorf("%d secret checks in all, want 2", n)
	}
	if def := NewServer(NewRegistry(), nil, nil); cap(def.logins) != DefaultMaxConcurrentLogins {
		t.Errorf("default limit %d", cap(def.logins))
	}
}
