package tunnel

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
	"maintproxy/internal/testenv"
)

// throttle is a TCP relay that carries each direction at rate bytes per second: a slow
// customer link in miniature.
type throttle struct {
	rate int
}

func (th *throttle) start(t *testing.T, target string) string {
	return startRelay(t, target, func(c, u net.Conn) {
		var wg sync.WaitGroup
		wg.Go(func() { th.pipe(c, u) })
		wg.Go(func() { th.pipe(u, c) })
		wg.Wait()
	})
}

// pipe copies src to dst in 1 KiB steps, each after its share of time.
func (th *throttle) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 1024)
	next := time.Now()
	for {
		n, err := src.Read(buf)
		if n > 0 {
			next = next.Add(time.Duration(n) * time.Second / time.Duration(th.rate))
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			} else {
				next = time.Now()
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestSlowLinkFullOfDataStaysUp: on a link so slow that a ping's answer, queued behind
// four busy streams each way (and what the kernel buffers of them: seconds at this rate),
// comes several times KeepAliveTimeout late, the session lives on: data keeps arriving.
// yamux's own keepalive, which waits for the answer, would have ended it. (A frozen link
// is noticed: TestKeepaliveDetectsDeadPeer.)
func TestSlowLinkFullOfDataStaysUp(t *testing.T) {
	const rate = 256 << 10 // a 64 KiB frame takes 250 ms
	tuning := Tuning{KeepAliveInterval: 250 * time.Millisecond, KeepAliveTimeout: 1500 * time.Millisecond}
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	th := &throttle{rate: rate}
	l := startLink(t, &config.Agent{RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"7": echo}}}, tuning,
		func(addr string) string { return th.start(t, addr) })
	sess := l.waitSession(t, nil)
	echoStreams(t, sess, 4, 384<<10)
	select {
	case <-sess.Done():
		t.Fatal("a healthy session on a slow, busy link was declared dead")
	default:
	}
}

// TestOpenAbandonedAtOnce: cancelling the context of an Open whose agent is still dialling
// returns at once with context.Canceled, not after the agent's answer.
func TestOpenAbandonedAtOnce(t *testing.T) {
	hanging := testenv.UnansweredAddr(t)
	cfg := &config.Agent{RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"7": hanging}}, DialTimeout: 5 * time.Second}
	l := startLink(t, cfg, Tuning{}, nil)
	sess := l.waitSession(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := sess.Open(ctx, Header{Port: 7})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open after cancel: %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Open returned %v after its start, cancelled after 100ms", took)
	}
}

// TestLoginDeadline: an agent that upgrades and never sends its hello is cut at the login
// deadline, not later.
func TestLoginDeadline(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	const limit = 400 * time.Millisecond
	var accepted time.Time
	srv := httptest.NewTLSServer(NewServer(NewRegistry(), func(Identity) (string, bool) { return string(hash), true },
		slog.New(slog.DiscardHandler), WithLoginDeadline(func(*http.Request) time.Time { return accepted.Add(limit) })))
	defer srv.Close()
	accepted = time.Now()
	ws, _, err := websocket.Dial(context.Background(), "wss"+srv.URL[len("https"):]+AgentPath, &websocket.DialOptions{
		HTTPClient: srv.Client(),
		HTTPHeader: http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("12345/se1:s3cret"))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for err == nil { // no hello sent (the broker's pings are read and ignored): it must end the connection
		_, _, err = ws.Read(ctx)
	}
	took := time.Since(accepted)
	if err == nil || ctx.Err() != nil || took < limit-50*time.Millisecond || took > limit+3*time.Second {
		t.Errorf("silent agent: %v after %v, want the connection ended at about %v", err, took, limit)
	}
}
