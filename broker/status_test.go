package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"maintproxy/tunnel"
)

// syncBuffer is a log sink safe for the store's writer goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testStore(t *testing.T, path string, known func(tunnel.Identity) bool) (*statusStore, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	return openStatusStore(path, slog.New(slog.NewJSONHandler(&logs, nil)), known), &logs
}

func knownOnly(ids ...tunnel.Identity) func(tunnel.Identity) bool {
	return func(id tunnel.Identity) bool {
		for _, k := range ids {
			if k == id {
				return true
			}
		}
		return false
	}
}

// TestStatusStoreSurvivesRestart: what a broker recorded (last seen, switches, a refused
// login) is what the next one reads; a good login clears the refusal.
func TestStatusStoreSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", StatusFile)
	se1, se2 := tunnel.NewIdentity("12345", "SE1"), tunnel.NewIdentity("12345", "SE2")
	known := knownOnly(se1, se2)
	s, _ := testStore(t, path, known)
	t0 := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	s.connected(se1, t0, tunnel.Policy{Version: 1, RemoteAccess: false, Services: []int{22}})
	s.disconnected(se1, t0.Add(time.Hour), tunnel.Policy{Version: 1, RemoteAccess: false, Services: []int{22}})
	s.refused(tunnel.LoginRefused{ID: se2, Known: true, Reason: tunnel.RefusedInvalid, Detail: "wrong secret", Remote: "127.0.0.1", At: t0})
	s.refused(tunnel.LoginRefused{ID: se2, Known: true, Reason: tunnel.RefusedInvalid, Detail: "wrong secret", Remote: "127.0.0.1", At: t0.Add(time.Minute)})
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}

	s2, logs := testStore(t, path, known)
	r, ok := s2.get(se1)
	if !ok || !r.lastSeen().Equal(t0.Add(time.Hour)) || r.Policy == nil || r.Policy.RemoteAccess || len(r.Policy.Services) != 1 {
		t.Fatalf("se1 after restart: %+v (found %v)", r, ok)
	}
	r, ok = s2.get(se2)
	if !ok || !r.LoginFailed.Equal(t0.Add(time.Minute)) || r.LoginFailure != tunnel.RefusedInvalid || r.LoginFailures != 2 {
		t.Fatalf("se2 after restart: %+v (found %v)", r, ok)
	}
	if logs.String() != "" {
		t.Errorf("a good file logged: %s", logs.String())
	}
	// The agent comes back with the right secret: the refusal is gone.
	s2.connected(se2, t0.Add(2*time.Minute), tunnel.Policy{Version: 1, RemoteAccess: true})
	if r, _ = s2.get(se2); !r.LoginFailed.IsZero() || r.LoginFailure != "" || r.LoginFailures != 0 {
		t.Errorf("a good login kept the refusal: %+v", r)
	}
}

// TestStatusStoreLastSeenWithoutShutdown: a broker killed while a system was connected
// saw it last at its last heartbeat.
func TestStatusStoreLastSeenWithoutShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), StatusFile)
	se1 := tunnel.NewIdentity("12345", "SE1")
	s, _ := testStore(t, path, nil)
	t0 := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	s.disconnected(se1, t0.Add(-time.Hour), tunnel.Policy{})
	s.connected(se1, t0, tunnel.Policy{Version: 1})
	s.touch([]liveSystem{{id: se1, policy: tunnel.Policy{Version: 1, RemoteAccess: true}}}, t0.Add(5*time.Minute))
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	s2, _ := testStore(t, path, nil)
	if r, _ := s2.get(se1); !r.lastSeen().Equal(t0.Add(5*time.Minute)) || r.Policy == nil || !r.Policy.RemoteAccess {
		t.Errorf("last seen %v, want the heartbeat %v; switches %+v, want the heartbeat's", r.lastSeen(), t0.Add(5*time.Minute), r.Policy)
	}
}

// TestStatusStoreCorruptFile: a damaged file is set aside with an error naming it, and
// the store starts empty and writes a good file again.
func TestStatusStoreCorruptFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StatusFile)
	for name, content := range map[string]string{
		"truncated":  `{"format":1,"systems":{"12345/se1":{"connected":"2026-`,
		"garbage":    "\x00\x01not json",
		"format":     `{"format":99,"systems":{}}`,
		"bad key":    `{"format":1,"systems":{"no-slash":{}}}`,
		"wrong type": `{"format":1,"systems":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, logs := testStore(t, path, nil)
			if !strings.Contains(logs.String(), "status file unreadable") || !strings.Contains(logs.String(), path) {
				t.Errorf("no clear error naming the file: %s", logs.String())
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) == 0 {
				t.Fatalf("the damaged file was not kept aside")
			}
			kept, _ := os.ReadFile(aside[0])
			if string(kept) != content {
				t.Errorf("set aside %q, want the damaged content", kept)
			}
			for _, a := range aside {
				os.Remove(a)
			}
			se1 := tunnel.NewIdentity("12345", "SE1")
			if _, ok := s.get(se1); ok {
				t.Errorf("a record survived a damaged file")
			}
			s.connected(se1, time.Now(), tunnel.Policy{Version: 1})
			if err := s.flush(); err != nil {
				t.Fatal(err)
			}
			s2, logs2 := testStore(t, path, nil)
			if _, ok := s2.get(se1); !ok || logs2.String() != "" {
				t.Errorf("the fresh file did not load: %s", logs2.String())
			}
		})
	}
}

// TestStatusStoreBounded: a flood of refused logins with made-up names grows the file by
// nothing but a count; records of systems no longer configured are dropped; recording
// never waits for the disk.
func TestStatusStoreBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), StatusFile)
	se1, gone := tunnel.NewIdentity("12345", "SE1"), tunnel.NewIdentity("12345", "OLD")
	s, _ := testStore(t, path, knownOnly(se1))
	s.connected(gone, time.Now(), tunnel.Policy{Version: 1})
	s.connected(se1, time.Now(), tunnel.Policy{Version: 1})
	const flood = 100_000
	long := strings.Repeat("x", 4000)
	start := time.Now()
	for i := range flood {
		s.refused(tunnel.LoginRefused{ID: tunnel.NewIdentity(fmt.Sprint("c", i), long), Reason: tunnel.RefusedAuth,
			Detail: "unknown customer/system", Remote: "192.0.2.1", At: time.Now()})
	}
	per := time.Since(start) / flood
	t.Logf("recording a refused login: %v each (%d of them)", per, flood)
	if per > 50*time.Microsecond {
		t.Errorf("recording a refusal took %v: too slow for the login path", per)
	}
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status file after the flood: %d bytes", fi.Size())
	if fi.Size() > 16<<10 {
		t.Errorf("status file is %d bytes after a flood of unknown names", fi.Size())
	}
	var f statusFileData
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if f.Unknown.Count != flood || len(f.Unknown.Recent) != unknownKept || !strings.HasPrefix(f.Unknown.Recent[0].Identity, fmt.Sprint("c", flood-1, "/")) {
		t.Errorf("unknown logins: count %d, %d recent, first %q", f.Unknown.Count, len(f.Unknown.Recent), f.Unknown.Recent[0].Identity)
	}
	if _, ok := f.Systems[gone.String()]; ok || f.Systems[se1.String()] == nil {
		t.Errorf("systems kept: %v", f.Systems)
	}
}

// TestStatusStoreWriterDebounces: the writer writes soon after a change, and a burst of
// changes costs a write or two, not one each.
func TestStatusStoreWriterDebounces(t *testing.T) {
	path := filepath.Join(t.TempDir(), StatusFile)
	s, _ := testStore(t, path, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.run(ctx, func() []liveSystem { return nil }); close(done) }()
	defer func() { cancel(); <-done }()
	se1 := tunnel.NewIdentity("12345", "SE1")
	deadline := time.Now().Add(5 * time.Second)
	writes := 0
	var last time.Time
	for i := 0; time.Now().Before(deadline); i++ {
		at := time.Unix(int64(1_800_000_000+i), 0)
		s.connected(se1, at, tunnel.Policy{Version: 1})
		if fi, err := os.Stat(path); err == nil && !fi.ModTime().Equal(last) {
			last = fi.ModTime()
			writes++
		}
		if i >= 2000 && writes > 0 {
			break
		}
		time.Sleep(time.Millisecond) // pacing the burst, not synchronising
	}
	if writes == 0 {
		t.Fatal("the writer wrote nothing within 5 s of a change")
	}
	if writes > 5 {
		t.Errorf("%d writes for a burst of changes: not debounced", writes)
	}
}

// TestStatusStoreHeartbeat: while agents are connected, the writer records their last-seen
// time and current switches on its own, for a broker that is killed rather than stopped.
func TestStatusStoreHeartbeat(t *testing.T) {
	path := filepath.Join(t.TempDir(), StatusFile)
	s, _ := testStore(t, path, nil)
	s.flushEvery, s.heartbeat = 10*time.Millisecond, 50*time.Millisecond
	se1 := tunnel.NewIdentity("12345", "SE1")
	t0 := time.Now().Add(-time.Hour)
	s.connected(se1, t0, tunnel.Policy{Version: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.run(ctx, func() []liveSystem {
			return []liveSystem{{id: se1, policy: tunnel.Policy{Version: 1, RemoteAccess: true}}}
		})
		close(done)
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s2, _ := testStore(t, path, nil)
		if r, ok := s2.get(se1); ok && r.lastSeen().After(t0.Add(30*time.Minute)) && r.Policy != nil && r.Policy.RemoteAccess {
			break
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(path)
			t.Fatalf("no heartbeat written within 5 s: %s", data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkStatusStoreLargeFleet: with 10,000 systems, how long a write of the status file
// takes and how long an event (a refused login) that arrives meanwhile waits for the store.
// Reported, not asserted: timings belong to benchmarks on this shared machine.
func BenchmarkStatusStoreLargeFleet(b *testing.B) {
	path := filepath.Join(b.TempDir(), StatusFile)
	s := openStatusStore(path, slog.New(slog.DiscardHandler), nil)
	const systems = 10_000
	p := tunnel.Policy{Version: 1, RemoteAccess: true, Services: []int{22, 3389, 7071, 9443, 52233},
		Tunnels: []tunnel.TunnelEntry{{Application: "RDP", IP: "192.168.1.20", Port: 3389}}}
	for i := range systems {
		s.connected(tunnel.NewIdentity(fmt.Sprint(100000+i), "SE1"), time.Now(), p)
	}
	stop := make(chan struct{})
	waited := make(chan time.Duration, 1)
	go func() {
		var slowest time.Duration
		defer func() { waited <- slowest }()
		for i := 0; i < 10_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			s.refused(tunnel.LoginRefused{ID: tunnel.NewIdentity("100001", "SE1"), Known: true, Reason: tunnel.RefusedInvalid, At: start})
			slowest = max(slowest, time.Since(start))
			if i%100 == 0 {
				time.Sleep(time.Millisecond) // an event stream, not a busy loop
			}
		}
	}()
	var worst time.Duration
	for b.Loop() {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		start := time.Now()
		if err := s.flush(); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(start))
	}
	close(stop)
	fi, _ := os.Stat(path)
	b.ReportMetric(float64(worst.Microseconds())/1000, "slowest-write-ms")
	b.ReportMetric(float64((<-waited).Microseconds())/1000, "slowest-event-ms")
	b.ReportMetric(float64(fi.Size()), "file-bytes")
}
