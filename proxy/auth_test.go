package proxy

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
)

func testBroker(t *testing.T, pass string) *config.Broker {
	t.Helper()
	h, _ := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	b, err := config.NewBroker(config.Broker{Domain: "example.com", DataDir: "/tmp",
		Accounts:  []config.Account{{Username: "resa", PasswordHash: string(h), Customers: []string{"12345"}}},
		Customers: []config.Customer{{ID: "12345", Systems: []config.System{{Name: "se1", Primary: true, AgentSecretHash: string(h)}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuthCacheFollowsAccountChanges(t *testing.T) {
	var cfg atomic.Pointer[config.Broker]
	cfg.Store(testBroker(t, "old"))
	a := NewAuth(cfg.Load, nil)
	if _, err := a.Check("resa", "old", "10.0.0.1"); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	if len(a.cache) != 1 {
		t.Fatalf("verified credential not cached")
	}
	// The password changes: the cached entry must stop matching even before Reset.
	cfg.Store(testBroker(t, "new"))
	if _, err := a.Check("resa", "old", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password after change: %v", err)
	}
	if _, err := a.Check("resa", "new", "10.0.0.1"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if _, err := a.Check("nobody", "new", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
}

func TestAuthLocksAfterRepeatedFailures(t *testing.T) {
	b := testBroker(t, "right")
	now := time.Unix(1_800_000_000, 0)
	a := NewAuth(func() *config.Broker { return b }, func() time.Time { return now })
	for i := 0; i < lockAfter; i++ {
		if _, err := a.Check("resa", "wrong", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if _, err := a.Check("resa", "right", "10.0.0.1"); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked pair accepted the right password: %v", err)
	}
	// Another client address is not locked out by the attacker's failures.
	if _, err := a.Check("resa", "right", "10.0.0.2"); err != nil {
		t.Fatalf("other address: %v", err)
	}
	now = now.Add(lockFor + time.Second)
	if _, err := a.Check("resa", "right", "10.0.0.1"); err != nil {
		t.Fatalf("after the lock expired: %v", err)
	}
}
