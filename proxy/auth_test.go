package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
	"maintproxy/internal/guard"
	"maintproxy/internal/testclock"
	"maintproxy/internal/testkit"
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
	if a.cache.Len() != 1 {
		t.Fatalf("verified credential not cached")
	}
	if _, err := a.Check("resa", "old", "10.0.0.1"); err != nil || a.Stats().CacheHits != 1 {
		t.Fatalf("second check not from the cache: %v, %+v", err, a.Stats())
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

// TestAuthLocksAccountForOneAddress: limits.lockout.failures wrong passwords from one
// address lock the account there, even for the right password; another address is not
// affected; the lock ends after limits.lockout.duration.
func TestAuthLocksAccountForOneAddress(t *testing.T) {
	b := testBroker(t, "right")
	pol := b.Limits.Lockout
	if pol.Failures != 3 || pol.Window != 10*time.Minute || pol.Duration != 10*time.Minute {
		t.Fatalf("defaults are not the manual's 3 in 10 minutes for 10 minutes: %+v", pol)
	}
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	a := NewAuth(func() *config.Broker { return b }, clk.Now)
	// A client retrying the same stale password is not guessing: that counts once.
	for i := range 2 * pol.Failures {
		if _, err := a.Check("resa", "stale", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("stale password %d: %v", i, err)
		}
	}
	for i := range pol.Failures - 1 {
		if _, err := a.Check("resa", fmt.Sprint("wrong", i), "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	checks := a.Stats().Checks
	if _, err := a.Check("resa", "right", "10.0.0.1"); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked pair accepted the right password: %v", err)
	}
	if a.Stats().Checks != checks {
		t.Error("a locked pair still ran bcrypt")
	}
	if _, err := a.Check("resa", "right", "10.0.0.2"); err != nil {
		t.Fatalf("other address: %v", err)
	}
	clk.Add(pol.Duration - time.Second)
	if _, err := a.Check("resa", "right", "10.0.0.1"); !errors.Is(err, ErrLocked) {
		t.Fatalf("lock ended early: %v", err)
	}
	clk.Add(2 * time.Second)
	if _, err := a.Check("resa", "right", "10.0.0.1"); err != nil {
		t.Fatalf("after the lock expired: %v", err)
	}
	if st := a.Stats(); st.PairLockouts != 1 || st.Failures != 8 || st.Locked != 2 {
		t.Errorf("stats: %+v", st)
	}
}

// TestAuthWindowForgetsOldFailures: failures spread wider than the window never lock.
func TestAuthWindowForgetsOldFailures(t *testing.T) {
	b := testBroker(t, "right")
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	a := NewAuth(func() *config.Broker { return b }, clk.Now)
	for i := range 6 {
		if _, err := a.Check("resa", fmt.Sprint("wrong", i), "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: %v", i, err)
		}
		clk.Add(b.Limits.Lockout.Window/2 + time.Second)
	}
}

// TestAuthLocksAccountAcrossAddresses: spraying one account from many addresses, each
// below the per-address threshold, locks the account everywhere. While locked, addresses
// with failures are refused even the right password, a clean address gets one check per
// account_interval, and the owner from a clean address gets in.
func TestAuthLocksAccountAcrossAddresses(t *testing.T) {
	b := testBroker(t, "right")
	pol := b.Limits.Lockout
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	a := NewAuth(func() *config.Broker { return b }, clk.Now)
	addr := func(i int) string { return fmt.Sprintf("198.51.100.%d", i) }
	n := 0
	for i := 0; n < pol.AccountFailures; i++ {
		for range pol.Failures - 1 {
			if n == pol.AccountFailures {
				break
			}
			if _, err := a.Check("resa", fmt.Sprint("guess", n), addr(i)); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("guess %d from %s: %v", n, addr(i), err)
			}
			n++
		}
	}
	if st := a.Stats(); st.AccountLockouts != 1 || st.PairLockouts != 0 {
		t.Fatalf("spray did not lock the account (and only it): %+v", st)
	}
	// An address that guessed is refused, even the right password, without a check.
	checks := a.Stats().Checks
	if _, err := a.Check("resa", "right", addr(0)); !errors.Is(err, ErrLocked) {
		t.Fatalf("sprayer's address with the right password: %v", err)
	}
	if a.Stats().Checks != checks {
		t.Error("a dirty address ran bcrypt on a locked account")
	}
	// The owner, from a clean address, gets in.
	if _, err := a.Check("resa", "right", "203.0.113.7"); err != nil {
		t.Fatalf("owner from a clean address: %v", err)
	}
	// That used the account's one check per interval: the next clean address waits.
	if _, err := a.Check("resa", "guess", "203.0.113.8"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second clean address within the interval: %v", err)
	}
	// The owner's credential is cached for their address and passes without waiting.
	if _, err := a.Check("resa", "right", "203.0.113.7"); err != nil {
		t.Fatalf("owner's cached credential: %v", err)
	}
	clk.Add(pol.AccountInterval)
	if _, err := a.Check("resa", "guess", "203.0.113.8"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("clean address after the interval should be checked: %v", err)
	}
	// Other accounts are not affected.
	if _, err := a.Check("resb", "x", addr(0)); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("another account: %v", err)
	}
	clk.Add(pol.Duration)
	if _, err := a.Check("resa", "right", addr(0)); err != nil {
		t.Fatalf("after the account lock ended: %v", err)
	}
}

// TestLockoutEvictionKeepsActiveLocks: a full table drops the least recently failed
// unlocked records and never an active lock, so spraying cannot reset one's own lock.
func TestLockoutEvictionKeepsActiveLocks(t *testing.T) {
	pol := config.Lockout{Failures: 3, Window: time.Minute, Duration: time.Hour, AccountFailures: 1000, AccountInterval: time.Second}
	now := time.Unix(1_800_000_000, 0)
	l := newLockout(8)
	me := netip.MustParsePrefix("192.0.2.1/32")
	for i := range 3 {
		l.fail("victim", me, [32]byte{byte(i)}, now, pol)
	}
	if !l.pairLocked("victim", me, now) {
		t.Fatal("not locked after 3 failures")
	}
	// The attacker sprays other usernames from the same address: many more records than fit.
	for i := range 200 {
		now = now.Add(time.Millisecond)
		l.fail(fmt.Sprint("user", i), me, [32]byte{}, now, pol)
		if len(l.records) > l.max {
			t.Fatalf("table grew to %d > %d", len(l.records), l.max)
		}
	}
	if !l.pairLocked("victim", me, now) {
		t.Fatal("spraying evicted an active lock")
	}
	// The most recent failures are kept, the oldest went first.
	if l.records[lockKey{"user199", me}] == nil || l.records[lockKey{"user0", me}] != nil {
		t.Error("eviction did not take the oldest records first")
	}
	// Fill the table with active locks: new failures are counted as unrecorded, locks stay.
	l2 := newLockout(3)
	for i := range 3 {
		for j := range 3 {
			l2.count(lockKey{fmt.Sprint("u", i), me}, [32]byte{byte(j)}, 3, now, pol)
		}
	}
	l2.count(lockKey{"late", me}, [32]byte{}, 3, now, pol)
	if l2.unrecorded != 1 || len(l2.records) != 3 {
		t.Fatalf("full table of locks: unrecorded %d, records %d", l2.unrecorded, len(l2.records))
	}
	// Once locks expire they make room.
	now = now.Add(pol.Duration)
	l2.count(lockKey{"late", me}, [32]byte{}, 3, now, pol)
	if l2.records[lockKey{"late", me}] == nil {
		t.Fatal("expired locks were not evicted")
	}
}

// TestAuthCachedCredentialSkipsAdmission: when every bcrypt slot and the queue are taken,
// a cached credential still passes at once and a new one is refused at once with
// guard.ErrBusy.
func TestAuthCachedCredentialSkipsAdmission(t *testing.T) {
	b := testBroker(t, "right")
	a := NewAuth(func() *config.Broker { return b }, nil)
	if _, err := a.Check("resa", "right", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	// Take the only slot and fill the queue of one; waiters stay until released.
	a.adm = guard.New(func() guard.Settings {
		return guard.Settings{Rate: 1000, Burst: 1000, Concurrent: 1, Queue: 1, MaxWait: time.Hour}
	}, nil)
	release, err := a.adm.Admit(guard.AddrKey("10.9.9.9"))
	if err != nil {
		t.Fatal(err)
	}
	queued := make(chan error, 1)
	go func() {
		r, err := a.adm.Admit(guard.AddrKey("10.9.9.8"))
		if r != nil {
			r()
		}
		queued <- err
	}()
	testkit.WaitFor(t, 10*time.Second, "one check waiting", func() bool { return a.adm.Stats().Waiting == 1 })

	if _, err := a.Check("resa", "right", "10.0.0.1"); err != nil {
		t.Fatalf("cached credential during a flood: %v", err)
	}
	_, err = a.Check("mallory", "guess", "10.0.0.66")
	var ref *guard.Refusal
	if !errors.Is(err, guard.ErrBusy) || !errors.As(err, &ref) || ref.RetrySeconds() < 1 {
		t.Fatalf("uncached check beyond the queue: %v", err)
	}
	release()
	if err := <-queued; err != nil {
		t.Fatalf("queued check was not handed the slot: %v", err)
	}
}

// TestAuthSharesConcurrentIdenticalChecks: the same credential checked many times at once
// (a browser opening several connections) costs one bcrypt.
func TestAuthSharesConcurrentIdenticalChecks(t *testing.T) {
	b := testBroker(t, "right")
	a := NewAuth(func() *config.Broker { return b }, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := a.Check("resa", "right", "10.0.0.1")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := a.Stats(); st.Checks > 2 {
		t.Errorf("8 identical concurrent checks ran bcrypt %d times", st.Checks)
	}
}
