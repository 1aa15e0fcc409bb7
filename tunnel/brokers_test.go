package tunnel

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
	"maintproxy/internal/testkit"
)

// TestBrokerPickerOrder: addresses another connection holds are left out, and those that
// failed go last, the most recent last of all.
func TestBrokerPickerOrder(t *testing.T) {
	p := newBrokerPicker([]string{"a:1", "b:1", "c:1"}, "example.com", "443")
	ctx := context.Background()
	for range 20 {
		got, err := p.candidates(ctx, 0)
		if err != nil || len(got) != 3 {
			t.Fatalf("candidates: %v %v", got, err)
		}
	}
	p.release("b:1", 0, true)
	p.release("a:1", 0, true)
	p.failed["b:1"] = p.failed["a:1"].Add(-time.Second) // b failed first
	for range 20 {
		if got, _ := p.candidates(ctx, 0); !slices.Equal(got, []string{"c:1", "b:1", "a:1"}) {
			t.Fatalf("after a and b failed (a last): %v", got)
		}
	}
	if !p.claim("c:1", 0) || p.claim("c:1", 1) {
		t.Fatal("an address held by connection 0 was given to connection 1")
	}
	if got, _ := p.candidates(ctx, 1); slices.Contains(got, "c:1") {
		t.Errorf("connection 1 offered c:1, which connection 0 holds: %v", got)
	}
	if got, _ := p.candidates(ctx, 0); !slices.Contains(got, "c:1") {
		t.Errorf("connection 0 not offered its own address: %v", got)
	}
	p.claim("a:1", 0)
	p.claim("b:1", 2)
	if _, err := p.candidates(ctx, 1); err == nil {
		t.Error("connection 1 got an address although the others hold all of them")
	}
	q := newBrokerPicker(nil, "localhost", "8443")
	got, err := q.candidates(ctx, 0)
	if err != nil || len(got) == 0 || !slices.Contains(got, "127.0.0.1:8443") {
		t.Errorf("a resolved name: %v %v", got, err)
	}
}

// TestAgentConnectionsToDifferentBrokers: an agent with connections: 2 and three brokers
// holds one session at each of two of them; when one session ends, that connection goes
// to the third broker (the one it lost is tried last; the other is held).
func TestAgentConnectionsToDifferentBrokers(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	secretHash := func(id Identity) (string, bool) { return string(hash), id == Identity{"12345", "se1"} }
	var regs []*Registry
	var addrs []string
	var caFile string
	for range 3 {
		reg := NewRegistry()
		srv := httptest.NewTLSServer(NewServer(reg, secretHash, slog.New(slog.DiscardHandler)))
		t.Cleanup(func() { reg.CloseAll(); srv.Close() })
		regs, addrs = append(regs, reg), append(addrs, srv.Listener.Addr().String())
		caFile = filepath.Join(t.TempDir(), "ca.pem")
		os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	}
	cfg, err := config.NewAgent(config.Agent{Broker: "https://example.com", BrokerAddrs: addrs, Connections: 2,
		CAFile: caFile, Customer: "12345", System: "se1", Secret: "s3cret", MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, cfg, nil)
	held := func() []int {
		var out []int
		for i, r := range regs {
			if r.Len() == 1 {
				out = append(out, i)
			}
		}
		return out
	}
	testkit.WaitFor(t, 10*time.Second, "sessions at two brokers", func() bool { return len(held()) == 2 })
	before := held()
	free := 3 - before[0] - before[1]
	regs[before[0]].CloseAll()
	testkit.WaitFor(t, 10*time.Second, "the lost connection at the third broker", func() bool {
		h := held()
		return len(h) == 2 && slices.Contains(h, free) && slices.Contains(h, before[1])
	})
}

// TestRegistryOnChange: the hook sees every session come and go, a replaced one going
// before its replacement is announced.
func TestRegistryOnChange(t *testing.T) {
	var mu sync.Mutex
	var events []string
	reg := NewRegistry()
	names := map[*Session]string{}
	reg.OnChange(func(s *Session, up bool) {
		mu.Lock()
		defer mu.Unlock()
		if names[s] == "" {
			names[s] = string(rune('A' + len(names)))
		}
		ev := "-" + names[s]
		if up {
			ev = "+" + names[s]
		}
		events = append(events, ev)
	})
	id := Identity{"12345", "se1"}
	s1, s2 := &Session{id: id, since: time.Now()}, &Session{id: id, since: time.Now().Add(time.Nanosecond)}
	reg.register(s1)
	reg.register(s2)               // replaces s1
	reg.unregister(s1, time.Now()) // no longer live: no event
	reg.unregister(s2, time.Now())
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"+A", "-A", "+B", "-B"}; !slices.Equal(events, want) {
		t.Errorf("events %v, want %v", events, want)
	}
	if s1.ID() == s2.ID() {
		t.Error("two sessions of one system share an ID")
	}
}
