package tunnel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
	"maintproxy/internal/testenv"
)

// link is an in-process broker endpoint and agent talking over real TLS on loopback.
type link struct {
	reg    *Registry
	srv    *httptest.Server
	agent  *Agent
	cancel context.CancelFunc
	done   chan struct{}
	server *Server
}

func startLink(t *testing.T, cfg *config.Agent, tuning Tuning, front func(brokerAddr string) string) *link {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	l := &link{reg: NewRegistry(), done: make(chan struct{})}
	l.server = NewServer(l.reg, func(id Identity) (string, bool) {
		if id == (Identity{"12345", "se1"}) {
			return string(hash), true
		}
		return "", false
	}, slog.New(slog.DiscardHandler))
	l.server.Tuning = tuning
	l.srv = httptest.NewTLSServer(l.server)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.srv.Certificate().Raw}), 0o600)
	addr := l.srv.Listener.Addr().String()
	if front != nil {
		addr = front(addr)
	}
	cfg.Broker, cfg.CAFile, cfg.ServerName = "https://"+addr, caFile, "example.com"
	cfg.Customer, cfg.System, cfg.Secret = "12345", "se1", "s3cret"
	cfg, err := config.NewAgent(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.agent, err = NewAgent(cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	l.agent.Tuning = tuning
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() { defer close(l.done); l.agent.Run(ctx) }()
	t.Cleanup(l.stop)
	return l
}

// runAgent runs an agent for cfg (edit, when not nil, adjusts it first) until stop is
// called or the test ends; stop returns once Run has.
func runAgent(t *testing.T, cfg *config.Agent, edit func(*Agent)) (stop func()) {
	t.Helper()
	a, err := NewAgent(cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func (l *link) stop() {
	l.cancel()
	<-l.done
	l.reg.CloseAll()
	l.srv.Close()
}

// waitSession waits for the agent's session to be registered (and not be old).
func (l *link) waitSession(t *testing.T, old *Session) *Session {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s := l.reg.Get(Identity{"12345", "se1"}); s != nil && s != old {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("agent session not registered")
	return nil
}

// echoStreams opens streams tunnels to the echo target on port 7 at once, sends size
// bytes through each and checks that each comes back whole.
func echoStreams(t *testing.T, sess *Session, streams, size int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			st, err := sess.Open(context.Background(), Header{Port: 7})
			if err != nil {
				t.Errorf("stream %d: %v", i, err)
				return
			}
			defer st.Close()
			data := bytes.Repeat([]byte{byte(i)}, size)
			go func() { st.Write(data); st.(*countedStream).CloseWrite() }()
			h := sha256.New()
			n, err := io.Copy(h, st)
			if err != nil || n != int64(len(data)) || !bytes.Equal(h.Sum(nil), sha256Sum(data)) {
				t.Errorf("stream %d: echoed %d of %d bytes, err %v", i, n, len(data), err)
			}
		})
	}
	wg.Wait()
}

// TestLargeFramesAndNoLeaks moves 64 MiB through streams whose yamux frames are far larger
// than websocket's default 32 KiB message limit, then checks that every goroutine of the
// link, its tunnels and its copies has ended.
func TestLargeFramesAndNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	l := startLink(t, &config.Agent{RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"7": echo}}}, Tuning{}, nil)
	sess := l.waitSession(t, nil)
	echoStreams(t, sess, 4, 16<<20)
	if n := sess.Active(); n != 0 {
		t.Errorf("%d tunnels still counted after all closed", n)
	}
	l.stop()
	l.srv.CloseClientConnections()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// TestRefusalCodes: the agent answers each refusal with its own sentinel.
func TestRefusalCodes(t *testing.T) {
	closed := freeAddr(t)
	cfg := &config.Agent{
		RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"23": closed}},
		Colocated:    config.Colocated{Enabled: true, Tunnels: []config.Tunnel{{Application: "SSH", IP: "127.0.0.9", Port: 22}}},
	}
	l := startLink(t, cfg, Tuning{}, nil)
	sess := l.waitSession(t, nil)
	for _, c := range []struct {
		h    Header
		want error
	}{
		{Header{Port: 24}, ErrServiceNotOffered},
		{Header{Port: 23}, ErrRefused},
		{Header{Port: 23, IP: netip.MustParseAddr("127.0.0.9")}, ErrNoTunnelEntry},
	} {
		_, err := sess.Open(context.Background(), c.h)
		if !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c.h, err, c.want)
		}
	}
}

// TestKeepaliveDetectsDeadPeer freezes the link (no FIN, no RST: what a dropped NAT entry
// looks like): both ends must notice through keepalives alone, and the agent comes back.
func TestKeepaliveDetectsDeadPeer(t *testing.T) {
	fr := &freezer{}
	tuning := Tuning{KeepAliveInterval: 100 * time.Millisecond, KeepAliveTimeout: 300 * time.Millisecond}
	l := startLink(t, &config.Agent{RemoteAccess: config.RemoteAccess{Enabled: true}}, tuning, func(addr string) string {
		return fr.start(t, addr)
	})
	first := l.waitSession(t, nil)
	fr.freeze()
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("broker kept a dead agent session")
	}
	// The frozen connection never closes, so only the agent's own keepalive can make it
	// reconnect through a fresh one.
	l.waitSession(t, first)
}

// startRelay relays each connection on a new loopback port to target with both (one call
// per connection pair, returning when the pair is done) until the test ends.
func startRelay(t *testing.T, target string, both func(c, u net.Conn)) string {
	t.Helper()
	return testenv.StartRelay(t, func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", target)
	}, both)
}

// freezer is a TCP relay whose existing connections can be frozen: they swallow all
// traffic and never close, while new connections pass.
type freezer struct {
	mu     sync.Mutex
	frozen []*bool
}

func (f *freezer) start(t *testing.T, target string) string {
	return startRelay(t, target, func(c, u net.Conn) {
		frozen := new(bool)
		f.mu.Lock()
		f.frozen = append(f.frozen, frozen)
		f.mu.Unlock()
		var wg sync.WaitGroup
		wg.Go(func() { f.pipe(c, u, frozen) })
		wg.Go(func() { f.pipe(u, c, frozen) })
		wg.Wait()
	})
}

func (f *freezer) pipe(dst, src net.Conn, frozen *bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		f.mu.Lock()
		fz := *frozen
		f.mu.Unlock()
		if err != nil {
			if !fz {
				dst.Close()
			}
			return
		}
		if !fz {
			dst.Write(buf[:n])
		}
	}
}

// freeze freezes every connection open now.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fz := range f.frozen {
		*fz = true
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestDialCodes(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	for _, c := range []struct {
		err  error
		want Code
	}{
		{op(syscall.ECONNREFUSED), CodeRefused},
		{op(syscall.EHOSTUNREACH), CodeUnreachable},
		{op(syscall.ENETUNREACH), CodeUnreachable},
		{context.DeadlineExceeded, CodeTimeout},
		{&net.OpError{Op: "dial", Err: timeoutErr{}}, CodeTimeout},
	} {
		if got := dialCode(c.err); got != c.want {
			t.Errorf("dialCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestAgentRejectedOnWrongSecret: the broker answers 401 and the agent reports why.
func TestAgentRejectedOnWrongSecret(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	srv := httptest.NewTLSServer(NewServer(NewRegistry(), func(Identity) (string, bool) { return string(hash), true }, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+AgentPath, nil)
	req.SetBasicAuth("12345/se1", "wrong")
	req.Header.Set("Upgrade", "websocket")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", resp.StatusCode)
	}
}
