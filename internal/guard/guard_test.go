package guard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"maintproxy/internal/testclock"
	"maintproxy/internal/testkit"
)

func fixed(s Settings) func() Settings { return func() Settings { return s } }

func addr(s string) netip.Prefix { return AddrKey(s) }

// TestAdmissionRatePerAddress: an address gets its burst, then one check per 1/Rate; other
// addresses are not affected; the refusal says how long to wait.
func TestAdmissionRatePerAddress(t *testing.T) {
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	a := New(fixed(Settings{Rate: 0.5, Burst: 3, Concurrent: 100}), clk.Now)
	for i := range 3 {
		release, err := a.Admit(addr("192.0.2.1"))
		if err != nil {
			t.Fatalf("burst check %d: %v", i, err)
		}
		release()
	}
	_, err := a.Admit(addr("192.0.2.1"))
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Reason != "rate" || ref.RetrySeconds() != 2 || !errors.Is(err, ErrBusy) {
		t.Fatalf("over the rate: %v", err)
	}
	if r, err := a.Admit(addr("192.0.2.2")); err != nil {
		t.Fatalf("other address: %v", err)
	} else {
		r()
	}
	clk.Add(2 * time.Second)
	if r, err := a.Admit(addr("192.0.2.1")); err != nil {
		t.Fatalf("after the wait: %v", err)
	} else {
		r()
	}
	if st := a.Stats(); st.Admitted != 5 || st.RateLimited != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestAdmissionShedsAtOnceAndBoundsConcurrency: never more than Concurrent checks run;
// beyond the queue a check is refused at once (here a queued one would wait an hour); a
// released slot goes to the first waiter.
func TestAdmissionShedsAtOnceAndBoundsConcurrency(t *testing.T) {
	a := New(fixed(Settings{Rate: 1e6, Burst: 1e6, Concurrent: 2, Queue: 3, MaxWait: time.Hour}), nil)
	var releases []func()
	for i := range 2 {
		r, err := a.Admit(addr(fmt.Sprint("10.0.0.", i)))
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	got := make(chan func(), 3)
	for i := range 3 {
		go func() {
			r, err := a.Admit(addr(fmt.Sprint("10.0.1.", i)))
			if err != nil {
				t.Error(err)
			}
			got <- r
		}()
	}
	testkit.WaitFor(t, 10*time.Second, "three checks waiting", func() bool { return a.Stats().Waiting == 3 })
	shed := make(chan error, 1)
	go func() {
		_, err := a.Admit(addr("10.0.2.1"))
		shed <- err
	}()
	select {
	case err := <-shed:
		var ref *Refusal
		if !errors.As(err, &ref) || ref.Reason != "busy" {
			t.Fatalf("beyond the queue: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a check beyond the queue was not refused at once")
	}
	if st := a.Stats(); st.Running != 2 || st.Shed != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Each release hands its slot on; running never exceeds 2.
	for range 3 {
		releases[0]()
		releases = append(releases[1:], <-got)
		if st := a.Stats(); st.Running != 2 {
			t.Fatalf("running %d after a hand-over", st.Running)
		}
	}
	releases[0]()
	releases[0]() // twice is harmless
	releases[1]()
	if st := a.Stats(); st.Running != 0 || st.Waiting != 0 {
		t.Fatalf("after all released: %+v", st)
	}
}

// TestAdmissionQueueWaitIsBounded: a queued check gives up after MaxWait.
func TestAdmissionQueueWaitIsBounded(t *testing.T) {
	a := New(fixed(Settings{Rate: 1e6, Burst: 1e6, Concurrent: 1, Queue: 1, MaxWait: 20 * time.Millisecond}), nil)
	r, err := a.Admit(addr("10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer r()
	var ref *Refusal
	if _, err := a.Admit(addr("10.0.0.2")); !errors.As(err, &ref) || ref.Reason != "timeout" {
		t.Fatalf("queued past MaxWait: %v", err)
	}
	if st := a.Stats(); st.Waiting != 0 || st.Shed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAdmissionTableIsBounded: the per-address table never exceeds MaxAddresses; idle
// addresses are dropped without counting as evictions.
func TestAdmissionTableIsBounded(t *testing.T) {
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	a := New(fixed(Settings{Rate: 1, Burst: 2, Concurrent: 1, MaxAddresses: 50}), clk.Now)
	for i := range 500 {
		a.Charge(addr(fmt.Sprintf("10.1.%d.%d", i/250, i%250)))
		if n := a.Stats().Addresses; n > 50 {
			t.Fatalf("table holds %d addresses", n)
		}
	}
	if a.Stats().Evicted == 0 {
		t.Error("busy addresses were dropped without being counted")
	}
	clk.Add(3 * time.Second) // everyone's bucket is full again
	before := a.Stats().Evicted
	a.Charge(addr("10.2.0.1"))
	if st := a.Stats(); st.Addresses != 1 || st.Evicted != before {
		t.Errorf("idle addresses not dropped as idle: %+v", st)
	}
}

// TestThrottledAndCharge: cheap checks only cost a token when they fail; an address out of
// tokens is throttled until they come back.
func TestThrottledAndCharge(t *testing.T) {
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	a := New(fixed(Settings{Rate: 1, Burst: 2}), clk.Now)
	me := addr("192.0.2.9")
	for range 2 {
		if err := a.Throttled(me); err != nil {
			t.Fatal(err)
		}
		a.Charge(me)
	}
	if err := a.Throttled(me); !errors.Is(err, ErrBusy) {
		t.Fatalf("after the burst of failures: %v", err)
	}
	clk.Add(time.Second)
	if err := a.Throttled(me); err != nil {
		t.Fatalf("after a second: %v", err)
	}
}

func TestAddrKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::9", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not-an-ip", "invalid Prefix"},
	} {
		if got := AddrKey(c.in).String(); got != c.want {
			t.Errorf("AddrKey(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := NewCache(time.Minute, 2)
	k1, k2, k3 := Key("a", "b"), Key("ab", ""), Key("x")
	if k1 == k2 {
		t.Fatal("keys of different parts collide")
	}
	c.Add(k1, "h1", now)
	if fresh, known := c.Lookup(k1, "h1", now); !fresh || !known {
		t.Fatal("just added")
	}
	if _, known := c.Lookup(k1, "h2", now); known {
		t.Fatal("matched another hash")
	}
	if fresh, known := c.Lookup(k1, "h1", now.Add(time.Minute)); fresh || !known {
		t.Fatal("stale entry should be known, not fresh")
	}
	c.Add(k2, "h", now.Add(time.Second))
	c.Add(k3, "h", now.Add(2*time.Second))
	if c.Len() != 2 {
		t.Fatalf("len %d", c.Len())
	}
	if _, known := c.Lookup(k1, "h1", now); known {
		t.Error("the oldest entry was not the one evicted")
	}
}

func TestSampler(t *testing.T) {
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	s := NewSampler(2, time.Minute, clk.Now)
	n := 0
	for range 100 {
		if ok, _ := s.Allow("busy"); ok {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d of 100 let through, want 2", n)
	}
	if ok, _ := s.Allow("other"); !ok {
		t.Fatal("reasons share a budget")
	}
	clk.Add(time.Minute)
	if ok, suppressed := s.Allow("busy"); !ok || suppressed != 98 {
		t.Fatalf("next interval: %v, suppressed %d", ok, suppressed)
	}
}

// TestRefuseAnswersWhole: the refusal carries Retry-After and a Content-Length, so the
// client has all of it before the pause; a client that went away ends the pause.
func TestRefuseAnswersWhole(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		Refuse(w, r, http.StatusTooManyRequests, "slow down", &Refusal{Reason: "rate", Wait: time.Hour})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the pause did not end when the client went away")
	}
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "3600" ||
		w.Header().Get("Content-Length") != "10" || w.Body.String() != "slow down\n" || !w.Flushed {
		t.Fatalf("refusal: %d %v %q", w.Code, w.Header(), w.Body)
	}
}
