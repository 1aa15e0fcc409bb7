package people

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/cluster"
	"maintproxy/cluster/etcdtest"
	"maintproxy/config"
	"maintproxy/internal/testclock"
	"maintproxy/internal/testkit"
)

// testConfig has a distributor (dist1) with a reseller (res1), another distributor
// (dist2), and a customer each.
func testConfig(t *testing.T) *config.Broker {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("account-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hash := string(h)
	sys := func() []config.System {
		return []config.System{{Name: "se1", Primary: true, AgentSecretHash: hash}, {Name: "se2", AgentSecretHash: hash}}
	}
	cfg, err := config.NewBroker(config.Broker{
		Domain: "example.test",
		Accounts: []config.Account{
			{Username: "dist1", PasswordHash: hash, Customers: []string{"100"}},
			{Username: "res1", PasswordHash: hash, Customers: []string{"200"}, Parent: "dist1"},
			{Username: "dist2", PasswordHash: hash, Customers: []string{"300"}},
		},
		Customers: []config.Customer{{ID: "100", Systems: sys()}, {ID: "200", Systems: sys()}, {ID: "300", Systems: sys()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

type rig struct {
	svc   *Service
	clock *testclock.Clock
	cfg   *config.Broker
}

// backends opens each kind of backend; reopen gives a second handle on the same data
// (for bbolt only after the first is closed).
type backendKind struct {
	name string
	open func(t *testing.T) func() Backend
}

func kinds() []backendKind {
	return []backendKind{
		{"bbolt", func(t *testing.T) func() Backend {
			dir := t.TempDir()
			return func() Backend {
				b, err := NewBolt(dir)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}},
		{"etcd", func(t *testing.T) func() Backend {
			m := etcdtest.Start(t)
			c, err := cluster.Dial(cluster.Options{Endpoints: []string{m.ClientURL}, Prefix: "/test/"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return func() Backend { return NewEtcd(c.Etcd(), c.Prefix()) }
		}},
	}
}

func newRig(t *testing.T, b Backend, clock *testclock.Clock) *rig {
	t.Helper()
	cfg := testConfig(t)
	svc, err := Open(context.Background(), Options{Backend: b, Config: func() *config.Broker { return cfg }, Now: clock.Now, HashCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{svc: svc, clock: clock, cfg: cfg}
}

var t0 = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

func TestService(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			open := k.open(t)
			r := newRig(t, open(), testclock.New(t0))
			ctx := context.Background()
			s := r.svc

			t.Run("add", func(t *testing.T) {
				for _, c := range []struct {
					n    NewPerson
					want string
				}{
					{NewPerson{Username: "res1", Org: "res1", Role: RoleOperator, Password: "Abcdefgh1"}, "taken"},
					{NewPerson{Username: "a+b", Org: "res1", Role: RoleOperator, Password: "Abcdefgh1"}, "username"},
					{NewPerson{Username: "bob", Org: "nosuch", Role: RoleOperator, Password: "Abcdefgh1"}, "org:"},
					{NewPerson{Username: "bob", Org: "res1", Role: "boss", Password: "Abcdefgh1"}, "role"},
					{NewPerson{Username: "bob", Org: "res1", Role: RoleOperator, Password: "short1A"}, "9 to 31"},
					{NewPerson{Username: "bob", Org: "res1", Role: RoleOperator, Password: "alllowercase"}, "at least 2"},
					{NewPerson{Username: "bob", Org: "res1", Role: RoleOperator, Password: strings.Repeat("a1", 16)}, "9 to 31"},
				} {
					if _, err := s.AddPerson(ctx, c.n); err == nil || !strings.Contains(err.Error(), c.want) {
						t.Errorf("AddPerson(%+v) = %v, want an error with %q", c.n, err, c.want)
					}
				}
				if _, err := s.AddPerson(ctx, NewPerson{Username: "alice", Name: "Alice A", Org: "res1", Role: RoleOperator, Password: "Abcdefgh1"}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.AddPerson(ctx, NewPerson{Username: "alice", Org: "dist1", Role: RoleOperator, Password: "Abcdefgh1"}); !errors.Is(err, ErrExists) {
					t.Errorf("second alice: %v, want ErrExists", err)
				}
				if _, err := s.AddPerson(ctx, NewPerson{Username: "ro", Org: "res1", Role: RoleReadonly, Password: "Abcdefgh1"}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.AddPerson(ctx, NewPerson{Username: "cadmin", Customer: "200", Password: "Abcdefgh1"}); err != nil {
					t.Fatal(err)
				}
				p, ok := s.Person("cadmin")
				if !ok || p.Role != RoleCustomerAdmin || p.Customer != "200" {
					t.Errorf("cadmin = %+v", p)
				}
			})

			t.Run("roles", func(t *testing.T) {
				alice, _ := s.Principal("alice")
				if err := s.Authorize(ctx, alice, "200", "se1", ""); err != nil {
					t.Errorf("operator: %v", err)
				}
				ro, _ := s.Principal("ro")
				if err := s.Authorize(ctx, ro, "200", "se1", ""); !errors.Is(err, ErrReadonly) {
					t.Errorf("readonly: %v", err)
				}
				ca, _ := s.Principal("cadmin")
				if err := s.Authorize(ctx, ca, "200", "se1", ""); !errors.Is(err, ErrNotTechnician) {
					t.Errorf("customer admin: %v", err)
				}
			})

			t.Run("password", func(t *testing.T) {
				if err := s.SetPassword(ctx, "alice", "Abcdefgh1"); err == nil || !strings.Contains(err.Error(), "used recently") {
					t.Errorf("same password again: %v", err)
				}
				for _, pw := range []string{"Second-pw1", "Third-pw1", "Fourth-pw1"} {
					if err := s.SetPassword(ctx, "alice", pw); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.SetPassword(ctx, "alice", "Second-pw1"); err == nil {
					t.Error("a password among the last 5 was accepted again")
				}
				if err := s.ChangeOwnPassword(ctx, "alice", "wrong", "Fifth-pw99"); !errors.Is(err, ErrWrongPassword) {
					t.Errorf("wrong current password: %v", err)
				}
				if err := s.ChangeOwnPassword(ctx, "alice", "Fourth-pw1", "Fifth-pw99"); err != nil {
					t.Fatal(err)
				}
				p, _ := s.Person("alice")
				if bcrypt.CompareHashAndPassword([]byte(p.PasswordHash), []byte("Fifth-pw99")) != nil || len(p.History) != 4 {
					t.Errorf("after change: history %d", len(p.History))
				}
			})

			t.Run("lock", func(t *testing.T) {
				for i := 0; i < config.DefaultPersonFailures; i++ {
					if err := s.Failed(ctx, "ro"); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := s.Principal("ro"); !errors.Is(err, ErrLocked) {
					t.Errorf("after %d failures: %v, want ErrLocked", config.DefaultPersonFailures, err)
				}
				r.clock.Add(config.DefaultPersonLock)
				if _, err := s.Principal("ro"); err != nil {
					t.Errorf("after the lock's duration: %v", err)
				}
			})

			t.Run("tokens", func(t *testing.T) {
				tok, exp, err := s.IssueToken(ctx, "alice")
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(tok, TokenPrefix) || !exp.Equal(r.clock.Now().Add(config.DefaultTokenTTL)) {
					t.Errorf("token %q expires %v", tok[:4], exp)
				}
				p, err := s.VerifyToken("alice", tok)
				if err != nil || p.Username != "alice" || p.Org != "res1" || p.TokenID == "" {
					t.Fatalf("VerifyToken: %+v %v", p, err)
				}
				if _, err := s.VerifyToken("ro", tok); !errors.Is(err, ErrBadToken) {
					t.Errorf("someone else's token: %v", err)
				}
				if err := s.Valid(p, "200", "se1"); err != nil {
					t.Errorf("valid token: %v", err)
				}
				r.clock.Add(config.DefaultTokenTTL)
				if _, err := s.VerifyToken("alice", tok); !errors.Is(err, ErrBadToken) {
					t.Errorf("expired token: %v", err)
				}
				tok2, _, _ := s.IssueToken(ctx, "alice")
				p2, _ := s.VerifyToken("alice", tok2)
				if err := s.SetDisabled(ctx, "alice", true); err != nil {
					t.Fatal(err)
				}
				if _, err := s.VerifyToken("alice", tok2); !errors.Is(err, ErrBadToken) {
					t.Errorf("token of a disabled person: %v", err)
				}
				if err := s.Valid(p2, "200", "se1"); err == nil {
					t.Error("an open tunnel of a disabled person stays valid")
				}
				if err := s.SetDisabled(ctx, "alice", false); err != nil {
					t.Fatal(err)
				}
				if _, err := s.VerifyToken("alice", tok2); !errors.Is(err, ErrBadToken) {
					t.Errorf("enabling brought a revoked token back: %v", err)
				}
			})

			t.Run("sessions", func(t *testing.T) {
				cookie, se, err := s.StartSession(ctx, "alice")
				if err != nil {
					t.Fatal(err)
				}
				got, p, err := s.Session(ctx, cookie)
				if err != nil || p.Username != "alice" || !got.CheckCSRF(se.CSRF) || got.CheckCSRF("") || got.CheckCSRF(se.CSRF+"x") {
					t.Fatalf("Session: %+v %+v %v", got, p, err)
				}
				if _, _, err := s.Session(ctx, cookie+"x"); !errors.Is(err, ErrNoSession) {
					t.Errorf("a wrong cookie: %v", err)
				}
				r.clock.Add(config.DefaultSessionIdle - time.Second)
				if _, _, err := s.Session(ctx, cookie); err != nil {
					t.Errorf("used within the idle timeout: %v", err)
				}
				r.clock.Add(config.DefaultSessionIdle - time.Second)
				if _, _, err := s.Session(ctx, cookie); err != nil {
					t.Errorf("the last use restarted the idle timeout: %v", err)
				}
				r.clock.Add(config.DefaultSessionIdle)
				if _, _, err := s.Session(ctx, cookie); !errors.Is(err, ErrNoSession) {
					t.Errorf("idle for the timeout: %v", err)
				}
				cookie, _, _ = s.StartSession(ctx, "alice")
				if err := s.EndSession(ctx, cookie); err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.Session(ctx, cookie); !errors.Is(err, ErrNoSession) {
					t.Errorf("after sign-out: %v", err)
				}
				cookie, _, _ = s.StartSession(ctx, "alice")
				s.SetDisabled(ctx, "alice", true)
				s.SetDisabled(ctx, "alice", false)
				if _, _, err := s.Session(ctx, cookie); !errors.Is(err, ErrNoSession) {
					t.Errorf("a session outlived its person's disabling: %v", err)
				}
			})

			t.Run("approval", func(t *testing.T) {
				alice, _ := s.Principal("alice")
				if err := s.SetMode(ctx, "200", "SE1", ModeApproval, "cadmin"); err != nil {
					t.Fatal(err)
				}
				if err := s.SetMode(ctx, "200", "nosuch", ModeApproval, "cadmin"); err == nil {
					t.Error("mode of an unknown system accepted")
				}
				for i := 0; i < 2; i++ {
					if err := s.Authorize(ctx, alice, "200", "se1", "200-se1.maint.example.test:22"); !errors.Is(err, ErrApproval) {
						t.Fatalf("approval mode, no grant: %v", err)
					}
				}
				reqs := s.Requests("200")
				if len(reqs) != 1 || reqs[0].Username != "alice" || reqs[0].State != StatePending {
					t.Fatalf("requests: %+v (want one pending, asked twice)", reqs)
				}
				if err := s.Authorize(ctx, alice, "200", "se2", ""); err != nil {
					t.Errorf("the other system is in always mode: %v", err)
				}
				if _, err := s.Grant(ctx, reqs[0].ID, 30*24*time.Hour, "cadmin"); err == nil {
					t.Error("a grant beyond people.max_grant was accepted")
				}
				g, err := s.Grant(ctx, reqs[0].ID, 4*time.Hour, "cadmin")
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Authorize(ctx, alice, "200", "se1", ""); err != nil {
					t.Errorf("granted: %v", err)
				}
				if err := s.Valid(alice, "200", "se1"); err != nil {
					t.Errorf("granted, open tunnel: %v", err)
				}
				r.clock.Set(g.Until)
				if err := s.Valid(alice, "200", "se1"); !errors.Is(err, ErrGrantEnded) {
					t.Errorf("window closed: %v", err)
				}
				if err := s.Authorize(ctx, alice, "200", "se1", ""); !errors.Is(err, ErrApproval) {
					t.Errorf("window closed, new CONNECT: %v", err)
				}
				if err := s.Deny(ctx, s.Requests("200")[0].ID, "cadmin"); err != nil {
					t.Fatal(err)
				}
			})

			t.Run("history", func(t *testing.T) {
				base := r.clock.Now()
				s.Record(Record{Time: base.Add(-100 * 24 * time.Hour), Kind: "tunnel", Person: "old"})
				s.Record(Record{Time: base.Add(-time.Hour), Kind: "tunnel", Person: "alice", Customer: "200"})
				s.Record(Record{Time: base, Kind: "tunnel", Person: "bob", Customer: "300"})
				testkit.WaitFor(t, 10*time.Second, "three history records", func() bool {
					recs, _ := s.History(ctx, Query{})
					return len(recs) == 3
				})
				recs, err := s.History(ctx, Query{Keep: func(r *Record) bool { return r.Customer == "200" }})
				if err != nil || len(recs) != 1 || recs[0].Person != "alice" {
					t.Errorf("customer 200's history: %+v %v", recs, err)
				}
				if err := s.Prune(ctx); err != nil {
					t.Fatal(err)
				}
				recs, _ = s.History(ctx, Query{})
				if len(recs) != 2 || recs[0].Person != "alice" {
					t.Errorf("after pruning: %+v", recs)
				}
			})

			t.Run("account password", func(t *testing.T) {
				res1 := r.cfg.Account("res1")
				if s.AccountHash(res1) != res1.PasswordHash {
					t.Fatal("an account without a stored password is not checked against the file's")
				}
				if err := s.SetAccountPassword(ctx, "nosuch", "Abcdefgh1", "op"); !errors.Is(err, ErrNotFound) {
					t.Errorf("unknown account: %v", err)
				}
				if err := s.SetAccountPassword(ctx, "res1", "short", "op"); !errors.Is(err, ErrBadPassword) {
					t.Errorf("a short password: %v", err)
				}
				if err := s.SetAccountPassword(ctx, "res1", "account-pass", "op"); !errors.Is(err, ErrBadPassword) {
					t.Errorf("the file's password again (it counts as the newest of the history): %v", err)
				}
				for _, pw := range []string{"Account-pw-1", "Account-pw-2"} {
					if err := s.SetAccountPassword(ctx, "res1", pw, "sue"); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.SetAccountPassword(ctx, "res1", "Account-pw-1", "sue"); !errors.Is(err, ErrBadPassword) {
					t.Errorf("a password of the history: %v", err)
				}
				h := s.AccountHash(res1)
				if h == res1.PasswordHash || bcrypt.CompareHashAndPassword([]byte(h), []byte("Account-pw-2")) != nil {
					t.Fatal("the stored password is not the one in force")
				}
				if st := s.AccountPasswords(); len(st) != 3 || st[2].Account != "res1" || st[2].Source != SourceStore || st[2].By != "sue" {
					t.Errorf("account password states %+v", st)
				}
				// The file's hash changed since: the file wins.
				edited := *res1
				edited.PasswordHash = strings.Replace(res1.PasswordHash, "$04$", "$05$", 1)
				if s.AccountHash(&edited) != edited.PasswordHash {
					t.Error("the stored password won over a changed file")
				}
			})

			t.Run("backup", func(t *testing.T) {
				data, err := s.Backup(ctx)
				if err != nil {
					t.Fatal(err)
				}
				stored := s.AccountHash(r.cfg.Account("res1"))
				if ok, err := s.ClearAccountPassword(ctx, "res1"); !ok || err != nil {
					t.Fatalf("clear: %v %v", ok, err)
				}
				if s.AccountHash(r.cfg.Account("res1")) != r.cfg.Account("res1").PasswordHash {
					t.Error("a cleared account is not back to the file's password")
				}
				if _, err := s.AddPerson(ctx, NewPerson{Username: "later", Org: "dist2", Role: RoleOperator, Password: "Abcdefgh1"}); err != nil {
					t.Fatal(err)
				}
				bad := strings.Replace(string(data), `"role": "operator"`, `"role": "god"`, 1)
				for _, b := range []string{"", "{}", `{"format":"maintproxy-people-backup","version":9}`, bad} {
					if err := s.Restore(ctx, []byte(b)); !errors.Is(err, ErrBadBackup) {
						t.Errorf("Restore(bad) = %v, want ErrBadBackup", err)
					}
				}
				if _, ok := s.Person("later"); !ok {
					t.Fatal("a refused restore changed the store")
				}
				if err := s.Restore(ctx, data); err != nil {
					t.Fatal(err)
				}
				if _, ok := s.Person("later"); ok {
					t.Error("restore kept a person the backup does not have")
				}
				if _, ok := s.Person("alice"); !ok {
					t.Error("restore lost alice")
				}
				if s.AccountHash(r.cfg.Account("res1")) != stored {
					t.Error("restore lost the proxy account password")
				}
				again, _ := s.Backup(ctx)
				if strip(again) != strip(data) {
					t.Error("backup after restore differs from the backup restored")
				}
			})

			t.Run("reopen", func(t *testing.T) {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				r2 := newRig(t, open(), r.clock)
				defer r2.svc.Close()
				p, ok := r2.svc.Person("alice")
				if !ok || p.Org != "res1" || r2.svc.Mode("200", "se1") != ModeApproval {
					t.Errorf("after reopening: %+v, mode %s", p, r2.svc.Mode("200", "se1"))
				}
			})
		})
	}
}

// strip drops a backup's creation time.
func strip(b []byte) string {
	s := string(b)
	i := strings.Index(s, `"created"`)
	j := strings.Index(s, `"buckets"`)
	return s[:i] + s[j:]
}

func TestEtcdWatch(t *testing.T) {
	open := kinds()[1].open(t)
	clock := testclock.New(t0)
	a := newRig(t, open(), clock)
	b := newRig(t, open(), clock)
	defer a.svc.Close()
	defer b.svc.Close()
	changed := make(chan struct{}, 100)
	b.svc.Subscribe(func() { changed <- struct{}{} })
	if _, err := a.svc.AddPerson(context.Background(), NewPerson{Username: "alice", Org: "res1", Role: RoleOperator, Password: "Abcdefgh1"}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "alice at the second service", func() bool { _, ok := b.svc.Person("alice"); return ok })
	if err := a.svc.SetDisabled(context.Background(), "alice", true); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "alice disabled at the second service", func() bool { _, err := b.svc.Principal("alice"); return errors.Is(err, ErrDisabled) })
	if len(changed) == 0 {
		t.Error("no change was reported to the subscriber")
	}
}

// TestStartUnloaded: with etcd away at start the Service opens empty (no personal login
// works) and loads the records once etcd answers.
func TestStartUnloaded(t *testing.T) {
	m := etcdtest.Start(t)
	c, err := cluster.Dial(cluster.Options{Endpoints: []string{m.ClientURL}, Prefix: "/test/", RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := testConfig(t)
	opts := Options{Backend: NewEtcd(c.Etcd(), c.Prefix()), Config: func() *config.Broker { return cfg }, HashCost: bcrypt.MinCost}
	first, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.AddPerson(context.Background(), NewPerson{Username: "alice", Org: "res1", Role: RoleOperator, Password: "Abcdefgh1"}); err != nil {
		t.Fatal(err)
	}
	first.Close()
	m.Partition()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := Open(ctx, opts); err == nil {
		t.Fatal("Open without StartUnloaded succeeded while etcd was away")
	}
	opts.StartUnloaded = true
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	s, err := Open(ctx2, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Principal("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unloaded: %v", err)
	}
	m.Heal()
	testkit.WaitFor(t, 45*time.Second, "alice loaded once etcd answers", func() bool { _, err := s.Principal("alice"); return err == nil })
}

func TestBoltBusy(t *testing.T) {
	dir := t.TempDir()
	b, err := NewBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := NewBolt(dir); !errors.Is(err, ErrStoreBusy) {
		t.Errorf("second open: %v, want ErrStoreBusy", err)
	}
}

func TestOrganisationTree(t *testing.T) {
	cfg := testConfig(t)
	for _, c := range []struct {
		acct, customer string
		want           bool
	}{
		{"dist1", "100", true}, {"dist1", "200", true}, {"dist1", "300", false},
		{"res1", "200", true}, {"res1", "100", false}, {"dist2", "200", false}, {"dist2", "300", true},
	} {
		if got := cfg.Account(c.acct).Manages(c.customer); got != c.want {
			t.Errorf("%s manages %s = %v, want %v", c.acct, c.customer, got, c.want)
		}
	}
	if !cfg.Under("res1", "dist1") || cfg.Under("res1", "dist2") || cfg.Under("dist1", "res1") {
		t.Error("Under is wrong")
	}
	for _, c := range []struct {
		parents [2]string
		want    string
	}{
		{[2]string{"nosuch", ""}, `accounts[0].parent: "nosuch" is not the username`},
		{[2]string{"a", ""}, "accounts[0].parent: account \"a\" cannot be its own parent"},
		{[2]string{"b", "a"}, "accounts[0].parent: the parents of \"a\" form a cycle"},
	} {
		base := *testConfig(t)
		base.Accounts = []config.Account{
			{Username: "a", PasswordHash: base.Accounts[0].PasswordHash, Parent: c.parents[0]},
			{Username: "b", PasswordHash: base.Accounts[0].PasswordHash, Parent: c.parents[1]},
		}
		if _, err := config.NewBroker(base); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parents %v: %v, want %q", c.parents, err, c.want)
		}
	}
}

// gatedPuts counts Put calls and holds the first until released.
type gatedPuts struct {
	Backend
	release chan struct{}
	puts    atomic.Int32
}

func (g *gatedPuts) Put(ctx context.Context, bucket string, kvs map[string][]byte) error {
	if g.puts.Add(1) == 1 {
		<-g.release
	}
	return g.Backend.Put(ctx, bucket, kvs)
}

// TestHistoryGroupsWrites: records that queue while a write runs are stored together, so a
// burst of tunnels costs a few transactions (and syncs), not one each; none is lost.
func TestHistoryGroupsWrites(t *testing.T) {
	b, err := NewBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedPuts{Backend: b, release: make(chan struct{})}
	r := newRig(t, g, testclock.New(t0))
	defer r.svc.Close()
	const n = 1 + 2*historyBatch + 10
	for i := range n {
		r.svc.Record(Record{Kind: "tunnel", Person: fmt.Sprint("p", i)})
	}
	close(g.release)
	ctx := context.Background()
	testkit.WaitFor(t, 10*time.Second, "every record stored", func() bool {
		recs, _ := r.svc.History(ctx, Query{Limit: 2 * n})
		return len(recs) == n
	})
	// The first write took one record; the rest queued behind it, historyBatch a write.
	if got, want := g.puts.Load(), int32(1+3); got > want {
		t.Errorf("%d records took %d writes, want at most %d", n, got, want)
	}
	if d := r.svc.Dropped(); d != 0 {
		t.Errorf("%d records dropped", d)
	}
}
