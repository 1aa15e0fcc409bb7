package e2e

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"maintproxy/internal/testenv"
)

// TestFrozenAgent: an agent frozen mid-download (SIGSTOP: its kernel still acknowledges,
// so TCP alone never notices) is marked offline and its technician's tunnel ended within
// 20 s, by the broker's keepalive; thawed, the agent notices its dead session and comes
// back.
func TestFrozenAgent(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	source := testenv.StartSource(t, "127.0.0.1:0")
	agent := env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{9: source}})
	t.Cleanup(func() { agent.Signal(syscall.SIGCONT) })
	r := env.Connect(t, "resa", "pass-a", env.Host("12345")+":9")
	if r.Status != 200 {
		t.Fatalf("CONNECT: %d %s", r.Status, r.Body)
	}
	if _, err := io.ReadFull(r.Conn, make([]byte, 4<<20)); err != nil {
		t.Fatal(err)
	}
	mark := env.Proc().Mark()
	if err := agent.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	released := make(chan time.Duration, 1)
	go func() {
		r.Conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, err := io.Copy(io.Discard, r.Conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			released <- -1
			return
		}
		t.Logf("technician read %d more bytes before the tunnel ended (%v)", n, err)
		released <- time.Since(frozen)
	}()
	_, ok := env.Proc().FindAfter(mark, 30*time.Second, func(rec testenv.Record) bool {
		return rec.Msg() == "agent disconnected" && rec.Str("identity") == "12345/se1"
	})
	offline := time.Since(frozen)
	if !ok {
		t.Fatal("the frozen agent was not marked offline within 30 s")
	}
	tech := <-released
	t.Logf("frozen agent: offline after %v, technician released after %v", offline.Round(time.Millisecond), tech.Round(time.Millisecond))
	if offline > 20*time.Second {
		t.Errorf("frozen agent marked offline after %v, want within 20 s", offline)
	}
	if tech < 0 || tech > 20*time.Second {
		t.Errorf("technician released after %v, want within 20 s", tech)
	}
	// Thawed, the agent finds its session gone and logs in again.
	mark = env.Proc().Mark()
	agent.Signal(syscall.SIGCONT)
	env.WaitAgent(t, "12345", "SE1", mark)
}

// TestSigtermDrains: on SIGTERM the broker stops accepting at once; a tunnel that ends
// within shutdown_timeout ends as usual, one that does not is cut at the timeout with
// end: shutdown; the agent's session is closed only then (so it does not reconnect in a
// loop meanwhile), and the broker exits cleanly.
func TestSigtermDrains(t *testing.T) {
	const drain = 4 * time.Second
	env := testenv.Start(t, testenv.Options{Extra: map[string]any{"shutdown_timeout": drain.String()}})
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	agent := env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{7: echo}})
	target := env.Host("12345") + ":7"
	short, long := env.Connect(t, "resa", "pass-a", target), env.Connect(t, "resa", "pass-a", target)
	if short.Status != 200 || long.Status != 200 {
		t.Fatalf("CONNECTs: %d, %d", short.Status, long.Status)
	}
	assertEcho(t, short.Conn, []byte("before"))
	assertEcho(t, long.Conn, []byte("before"))
	mark, agentMark := env.Proc().Mark(), agent.Mark()

	if err := env.Proc().Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sigterm := time.Now()
	env.Proc().WaitLogAfter(t, mark, 5*time.Second, func(r testenv.Record) bool { return strings.HasPrefix(r.Msg(), "shutting down") })
	// The listeners close right after that record: new connections are refused.
	for _, addr := range []string{env.ProxyAddr, env.WebAddr} {
		deadline := time.Now().Add(2 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Errorf("%s still accepts connections 2 s into the drain", addr)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Both tunnels still carry data; the short one then ends on its own.
	assertEcho(t, short.Conn, []byte("during the drain"))
	assertEcho(t, long.Conn, []byte("during the drain"))
	short.Conn.Close()
	time.Sleep(time.Until(sigterm.Add(drain * 3 / 4))) // the test's pacing: well inside the drain
	assertEcho(t, long.Conn, []byte("late in the drain"))

	long.Conn.SetReadDeadline(time.Now().Add(drain + 10*time.Second))
	_, err := io.Copy(io.Discard, long.Conn)
	cut := time.Since(sigterm)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the long tunnel was never cut")
	}
	if cut < drain-200*time.Millisecond || cut > drain+testenv.Scale(3*time.Second) {
		t.Errorf("long tunnel cut %v after SIGTERM, shutdown_timeout %v", cut.Round(time.Millisecond), drain)
	}
	select {
	case <-env.Proc().Done():
	case <-time.After(testenv.Scale(10 * time.Second)):
		t.Fatal("broker did not exit after the drain")
	}
	if err := env.Proc().Err(); err != nil {
		t.Errorf("broker exit: %v", err)
	}
	ends := map[string]int{}
	var disconnectedAt, cutAt time.Time
	for _, r := range env.Proc().Records()[mark:] {
		if r.Str("log") == "audit" && r.Str("result") == "ok" {
			ends[r.Str("end")]++
			if r.Str("end") == "shutdown" {
				cutAt = recordTime(r)
			}
		}
		if r.Msg() == "agent disconnected" {
			disconnectedAt = recordTime(r)
		}
	}
	t.Logf("SIGTERM with two tunnels: audit ends %v; long tunnel cut after %v", ends, cut.Round(time.Millisecond))
	if ends["shutdown"] != 1 || ends["closed"] != 1 {
		t.Errorf("audit ends %v, want one closed (the short tunnel) and one shutdown (the long one)", ends)
	}
	if disconnectedAt.IsZero() || disconnectedAt.Before(cutAt) {
		t.Errorf("agent session closed at %v, the last tunnel cut at %v: agents must go last", disconnectedAt, cutAt)
	}
	for _, r := range agent.Records()[agentMark:] {
		if r.Msg() == "connected to broker" {
			t.Errorf("the agent reconnected during the shutdown: %v", r)
		}
	}
}

func recordTime(r testenv.Record) time.Time {
	at, _ := time.Parse(time.RFC3339Nano, r.Str("time"))
	return at
}

// TestStalledDownloadEnded: a technician who stops reading a download while the target
// keeps sending has the tunnel ended once the broker's writes make no progress for
// timeouts.write_progress; the agent stays online and serves the next tunnel.
func TestStalledDownloadEnded(t *testing.T) {
	const progress = 2 * time.Second
	env := testenv.Start(t, testenv.Options{Extra: map[string]any{"timeouts": map[string]any{"write_progress": progress.String()}}})
	source := testenv.StartSource(t, "127.0.0.1:0")
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	env.StartAgent(t, testenv.Agent{Customer: "12345", System: "SE1", RemoteAccess: true, Services: map[int]string{9: source, 7: echo}})
	r := env.Connect(t, "resa", "pass-a", env.Host("12345")+":9")
	if r.Status != 200 {
		t.Fatalf("CONNECT: %d %s", r.Status, r.Body)
	}
	if _, err := io.ReadFull(r.Conn, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now() // the technician reads no more, and keeps the connection open
	rec := env.Proc().WaitLog(t, progress+30*time.Second, func(rec testenv.Record) bool {
		return rec.Str("log") == "audit" && rec.Str("target") == "12345:9"
	})
	took := time.Since(stopped)
	t.Logf("stalled download ended %v after the technician stopped reading: end %q, %v bytes down", took.Round(time.Millisecond),
		rec.Str("end"), rec.Num("bytes_down"))
	if took < progress || !strings.Contains(rec.Str("end"), "timeout") {
		t.Errorf("stalled download: audit %v after %v, want it ended by the %v write progress deadline", rec, took, progress)
	}
	e := env.Connect(t, "resa", "pass-a", env.Host("12345")+":7")
	if e.Status != 200 {
		t.Fatalf("the next CONNECT: %d %s", e.Status, e.Body)
	}
	assertEcho(t, e.Conn, []byte("still here"))
}
