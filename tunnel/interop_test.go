package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"
	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
	"maintproxy/internal/testenv"
	"maintproxy/internal/testkit"
)

// Agents and brokers released before this link layer speak websocket through
// github.com/coder/websocket; these tests pair each new end with such an old one.

// oldMuxConfig is the yamux configuration earlier releases used on both ends.
func oldMuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.MaxStreamWindowSize = 4 << 20
	c.StreamOpenTimeout = 0
	c.LogOutput = io.Discard
	return c
}

// echoThrough sends size random bytes through st, half-closes, and checks that exactly
// they come back.
func echoThrough(st io.ReadWriteCloser, closeWrite func() error, size int) error {
	data := make([]byte, size)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := st.Write(data)
		if err == nil {
			err = closeWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(st)
	if err != nil || !bytes.Equal(got, data) {
		return fmt.Errorf("echoed %d of %d bytes, intact %v, err %v", len(got), size, bytes.Equal(got, data), err)
	}
	return <-errc
}

// TestOldAgentNewBroker: an agent of an earlier release logs in, says hello, and carries a
// tunnel of 8 MiB (websocket messages far above its library's 32 KiB default) both ways.
func TestOldAgentNewBroker(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	reg := NewRegistry()
	srv := httptest.NewTLSServer(NewServer(reg, func(Identity) (string, bool) { return string(hash), true }, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cred := base64.StdEncoding.EncodeToString([]byte("12345/se1:s3cret"))
	ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(srv.URL, "https")+AgentPath, &websocket.DialOptions{
		HTTPClient: srv.Client(), HTTPHeader: http.Header{"Authorization": {"Basic " + cred}},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	mux, err := yamux.Server(websocket.NetConn(ctx, ws, websocket.MessageBinary), oldMuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	hello, err := mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(hello).Encode(Policy{Version: Version, RemoteAccess: true, AgentVersion: "old"})
	hello.Close()
	go func() { // the old agent: every tunnel echoes
		for {
			st, err := mux.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				if _, err := readHeader(st); err != nil {
					return
				}
				writeReply(st, CodeOK, "")
				io.Copy(st, st)
			}()
		}
	}()

	var sess *Session
	for deadline := time.Now().Add(10 * time.Second); sess == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("old agent not registered")
		}
		sess = reg.Get(Identity{"12345", "se1"})
	}
	if sess.Policy().AgentVersion != "old" {
		t.Fatalf("policy %+v", sess.Policy())
	}
	st, err := sess.Open(ctx, Header{Port: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := echoThrough(st, st.(*countedStream).CloseWrite, 8<<20); err != nil {
		t.Fatal(err)
	}
}

// oldBroker is a broker of an earlier release (coder/websocket and stock yamux) at the
// agent endpoint: it takes the agent's hello, then runs serve on the link; serve's result
// (nil: all went as it should) is the test's result. It returns the server and a ca_file
// for it.
func oldBroker(t *testing.T, serve func(ctx context.Context, ws *websocket.Conn, mux *yamux.Session) error) (*httptest.Server, string, <-chan error) {
	t.Helper()
	result := make(chan error, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != AgentPath { // e.g. the agent fetching the published roots
			http.NotFound(w, r)
			return
		}
		ctx := r.Context()
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			result <- err
			return
		}
		defer ws.CloseNow()
		mux, err := yamux.Client(websocket.NetConn(ctx, ws, websocket.MessageBinary), oldMuxConfig())
		if err != nil {
			result <- err
			return
		}
		defer mux.Close()
		hello, err := mux.AcceptStream()
		if err != nil {
			result <- err
			return
		}
		hello.SetReadDeadline(time.Now().Add(helloTimeout))
		_, err = decodeHello(hello)
		hello.Close()
		if err != nil {
			result <- err
			return
		}
		result <- serve(ctx, ws, mux)
	}))
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	return srv, caFile, result
}

// oldBrokerTunnel opens a tunnel to port 7 through the agent and returns the stream after
// the agent's answer.
func oldBrokerTunnel(mux *yamux.Session) (*yamux.Stream, error) {
	st, err := mux.OpenStream()
	if err != nil {
		return nil, err
	}
	st.Write(Header{Port: 7}.marshal())
	if err := readReply(st); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// TestNewAgentOldBroker: the agent logs in to a broker of an earlier release, which opens
// a tunnel through it, pings it, and closes the websocket with the close handshake.
func TestNewAgentOldBroker(t *testing.T) {
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	srv, caFile, result := oldBroker(t, func(ctx context.Context, ws *websocket.Conn, mux *yamux.Session) error {
		st, err := oldBrokerTunnel(mux)
		if err != nil {
			return err
		}
		if err := echoThrough(st, st.Close, 8<<20); err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := ws.Ping(pctx); err != nil {
			return err
		}
		start := time.Now()
		err = ws.Close(websocket.StatusNormalClosure, "")
		if err == nil && time.Since(start) > 2*time.Second {
			err = io.ErrNoProgress
		}
		return err
	})
	cfg, err := config.NewAgent(config.Agent{
		Broker: srv.URL, CAFile: caFile, ServerName: "example.com", Customer: "12345", System: "se1", Secret: "s3cret",
		RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"7": echo}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer runAgent(t, cfg, nil)()
	if err := testkit.Recv(t, result, 30*time.Second, "the old broker's test"); err != nil {
		t.Fatal(err)
	}
}

// TestNewAgentOldBrokerPolicyChange: a broker of an earlier release offers no policy
// updates, so the agent sends none (its websocket library would fail the link on a text
// message): the agent enforces a switch flipped off by itself, on the same link, and a
// tunnel request afterwards gets the remote-access-off answer.
func TestNewAgentOldBrokerPolicyChange(t *testing.T) {
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	var agent *Agent
	var next *config.Agent
	srv, caFile, result := oldBroker(t, func(ctx context.Context, ws *websocket.Conn, mux *yamux.Session) error {
		st, err := oldBrokerTunnel(mux)
		if err != nil {
			return fmt.Errorf("before the change: %w", err)
		}
		st.Close()
		agent.SetConfig(next)
		if _, err = oldBrokerTunnel(mux); !errors.Is(err, ErrRemoteAccessOff) {
			return fmt.Errorf("after the change: %v, want remote access off", err)
		}
		// The link is still good: a ping goes through, with no text message in the way.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return ws.Ping(pctx)
	})
	base := config.Agent{
		Broker: srv.URL, CAFile: caFile, ServerName: "example.com", Customer: "12345", System: "se1", Secret: "s3cret",
		RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"7": echo}},
	}
	cfg, err := config.NewAgent(base)
	if err != nil {
		t.Fatal(err)
	}
	base.RemoteAccess.Enabled = false
	if next, err = config.NewAgent(base); err != nil {
		t.Fatal(err)
	}
	if agent, err = NewAgent(cfg, slog.New(slog.DiscardHandler), "test"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); agent.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := testkit.Recv(t, result, 30*time.Second, "the old broker's test"); err != nil {
		t.Fatal(err)
	}
}
