package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/testenv"
	"maintproxy/internal/testkit"
)

// TestHeaderVersions: a v1 header is the 24 bytes an agent of an earlier release reads; a
// v2 header carries user, client and system after them, skipping fields it does not know;
// malformed fields are refused.
func TestHeaderVersions(t *testing.T) {
	h := Header{Port: 3389, IP: netip.MustParseAddr("192.168.1.20"), Session: [16]byte{1, 2, 3},
		User: "resa", Client: "203.0.113.7:51234", System: "se2"}
	v1 := h.marshalVersion(HeaderV1)
	if len(v1) != headerLen || v1[0] != 1 {
		t.Fatalf("v1 header %d bytes, version %d", len(v1), v1[0])
	}
	got, err := readHeader(bytes.NewReader(v1))
	if err != nil || got.User != "" || got.Port != 3389 || got.IP != h.IP || got.Session != h.Session {
		t.Fatalf("v1 read back %+v, %v", got, err)
	}
	v2 := h.marshalVersion(HeaderV2)
	if v2[0] != 2 {
		t.Fatalf("v2 header version %d", v2[0])
	}
	got, err = readHeader(bytes.NewReader(v2))
	if err != nil || got != h {
		t.Fatalf("v2 read back %+v, %v; want %+v", got, err, h)
	}
	// A field of a later version (tag 99) is skipped.
	later := append(append([]byte{}, v2...), 99, 3, 'x', 'y', 'z')
	later[headerLen+1] += 5
	if got, err = readHeader(bytes.NewReader(later)); err != nil || got != h {
		t.Fatalf("with an unknown field: %+v, %v", got, err)
	}
	// Long values are cut to 255 bytes, not refused.
	long := Header{Port: 22, User: strings.Repeat("u", 400)}
	if got, err = readHeader(bytes.NewReader(long.marshalVersion(HeaderV2))); err != nil || len(got.User) != maxFieldLen {
		t.Fatalf("long user: %d bytes, %v", len(got.User), err)
	}
	for name, b := range map[string][]byte{
		"version 3":      append([]byte{3}, v2[1:]...),
		"field cut":      append(append([]byte{}, v2[:headerLen]...), 0, 3, tagUser, 9, 'a'),
		"fields too big": append(append([]byte{}, v2[:headerLen]...), 0xff, 0xff),
	} {
		if _, err := readHeader(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSessionWritesTheAgentsHeaderVersion: an agent that reported no header version (an
// earlier release) gets exactly the 24-byte v1 header, and a network system is refused
// for it before anything is sent.
func TestSessionWritesTheAgentsHeaderVersion(t *testing.T) {
	for _, c := range []struct {
		reported, want int
	}{{0, HeaderV1}, {HeaderV2, HeaderV2}, {HeaderV2 + 5, HeaderV2}} {
		if got := (Policy{Header: c.reported}).headerVersion(); got != c.want {
			t.Errorf("agent reporting %d gets header v%d, want v%d", c.reported, got, c.want)
		}
	}
	s := &Session{}
	s.setPolicy(Policy{Version: Version})
	if _, err := s.Open(context.Background(), Header{Port: 22, System: "se2"}); !errors.Is(err, ErrNoSuchSystem) {
		t.Fatalf("network system through an old agent: %v", err)
	}
}

// policyLink starts a link whose agent reaches se2 at 127.0.0.1 and has the echo server
// as its service 7 and, for se2, as its port; it returns the link and the echo port.
func policyLink(t *testing.T) (*link, string) {
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(echo)
	cfg := &config.Agent{
		RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"7": echo, port: freeAddr(t)}},
		Network:      config.Network{Systems: map[string]string{"SE2": "127.0.0.1"}},
	}
	return startLink(t, cfg, Tuning{}, nil), port
}

// edit returns the agent's configuration changed by f, validated.
func edit(t *testing.T, l *link, f func(c *config.Agent)) *config.Agent {
	t.Helper()
	c := *l.agent.cfg
	c.RemoteAccess.Services = map[string]string{}
	for k, v := range l.agent.cfg.RemoteAccess.Services {
		c.RemoteAccess.Services[k] = v
	}
	f(&c)
	next, err := config.NewAgent(c)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// TestPolicyUpdateReachesBrokerAndEndsTunnels: switching remote access off on a running
// agent ends its open tunnel at once, refuses the next one, and the broker's session (and
// the registry's change hook) carry the new switches without a reconnect; switching it
// on again lets tunnels through on the same session.
func TestPolicyUpdateReachesBrokerAndEndsTunnels(t *testing.T) {
	l, _ := policyLink(t)
	var mu sync.Mutex
	var ups []bool
	l.reg.OnChange(func(s *Session, up bool) {
		if up {
			mu.Lock()
			ups = append(ups, s.Policy().RemoteAccess)
			mu.Unlock()
		}
	})
	sess := l.waitSession(t, nil)
	mu.Lock()
	before := len(ups)
	mu.Unlock()
	if p := sess.Policy(); !p.RemoteAccess || p.Header != HeaderV2 || !p.Reaches("SE2") {
		t.Fatalf("hello policy %+v", p)
	}
	open, err := sess.Open(context.Background(), Header{Port: 7, User: "resa", Client: "192.0.2.1:4000"})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := open.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(open, buf); err != nil {
		t.Fatal(err)
	}

	if restart := l.agent.SetConfig(edit(t, l, func(c *config.Agent) { c.RemoteAccess.Enabled = false })); len(restart) != 0 {
		t.Fatalf("switch flip needs a restart of %v", restart)
	}
	testkit.WaitFor(t, 10*time.Second, "the broker's session has remote access off", func() bool { return !sess.Policy().RemoteAccess })
	mu.Lock()
	if len(ups) != before+1 || ups[before] {
		t.Errorf("change hook saw %v after %d, want one update with remote access off", ups, before)
	}
	mu.Unlock()
	open.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.ReadFull(open, buf); err == nil || isTimeout(err) {
		t.Fatalf("open tunnel not ended after remote access went off (%d bytes, %v)", n, err)
	}
	if _, err := sess.Open(context.Background(), Header{Port: 7}); !errors.Is(err, ErrRemoteAccessOff) {
		t.Fatalf("new tunnel with remote access off: %v", err)
	}
	if _, err := sess.Open(context.Background(), Header{Port: 7, System: "se2"}); !errors.Is(err, ErrRemoteAccessOff) {
		t.Fatalf("network system with the primary's remote access off: %v", err)
	}

	l.agent.SetConfig(edit(t, l, func(c *config.Agent) { c.RemoteAccess.Enabled = true }))
	testkit.WaitFor(t, 10*time.Second, "remote access back on", func() bool { return sess.Policy().RemoteAccess })
	if l.reg.Get(Identity{"12345", "se1"}) != sess {
		t.Fatal("the policy update replaced the session")
	}
	st, err := sess.Open(context.Background(), Header{Port: 7})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestNetworkSystemThroughAgent: a header naming a network system is dialled on the
// system's address at the requested port (not at the primary's service address), and an
// unlisted system is refused; removing the service ends the open tunnel.
func TestNetworkSystemThroughAgent(t *testing.T) {
	l, port := policyLink(t)
	sess := l.waitSession(t, nil)
	p := uint16(0)
	for _, c := range port {
		p = p*10 + uint16(c-'0')
	}
	st, err := sess.Open(context.Background(), Header{Port: p, System: "SE2"})
	if err != nil {
		t.Fatalf("through the primary to se2: %v", err)
	}
	defer st.Close()
	if err := echoThrough(st, st.(*countedStream).CloseWrite, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Open(context.Background(), Header{Port: p, System: "se3"}); !errors.Is(err, ErrNoSuchSystem) {
		t.Fatalf("unlisted system: %v", err)
	}
	if _, err := sess.Open(context.Background(), Header{Port: 24, System: "se2"}); !errors.Is(err, ErrServiceNotOffered) {
		t.Fatalf("port not offered: %v", err)
	}
	held, err := sess.Open(context.Background(), Header{Port: p, System: "se2"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	l.agent.SetConfig(edit(t, l, func(c *config.Agent) { c.Network.Systems = nil }))
	testkit.WaitFor(t, 10*time.Second, "se2 gone from the broker's view", func() bool { return !sess.Policy().Reaches("se2") })
	held.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("tunnel to a removed network system not ended: %v", err)
	}
}

// TestPolicyInboxKeepsAnEarlyUpdate: an update that overtakes the hello waits for the
// session and then wins over the hello's policy; a malformed one changes nothing.
func TestPolicyInboxKeepsAnEarlyUpdate(t *testing.T) {
	reg := NewRegistry()
	srv := &Server{Registry: reg, Logger: slog.New(slog.DiscardHandler)}
	id := Identity{"12345", "se1"}
	in := &policyInbox{s: srv, id: id}
	in.receive([]byte(`{"version":1,"remote_access":false}`))
	in.receive([]byte(`not json`))
	sess := &Session{id: id, since: time.Now()}
	sess.setPolicy(Policy{Version: Version, RemoteAccess: true})
	reg.register(sess)
	in.attach(sess)
	if sess.Policy().RemoteAccess {
		t.Fatal("the early update was lost")
	}
	in.receive([]byte(`{"version":2,"remote_access":true}`))
	if sess.Policy().RemoteAccess {
		t.Fatal("an update of another protocol version was taken")
	}
	in.receive([]byte(`{"version":1,"remote_access":true}`))
	if !reg.Status(id).Policy.RemoteAccess {
		t.Fatal("the registry does not show the update")
	}
}

// TestColocatedChangesEndTunnels: switching co-located access off ends a tunnel to a
// co-located server; with it on again, removing that tunnel entry does too, while a tunnel
// to the server itself stays.
func TestColocatedChangesEndTunnels(t *testing.T) {
	echo := testenv.StartEcho(t, "127.0.0.1:0")
	host, port, _ := net.SplitHostPort(echo)
	var p uint16
	for _, c := range port {
		p = p*10 + uint16(c-'0')
	}
	cfg := &config.Agent{
		RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"7": echo}},
		Colocated:    config.Colocated{Enabled: true, Tunnels: []config.Tunnel{{Application: "TELNET", IP: host, Port: int(p)}}},
	}
	l := startLink(t, cfg, Tuning{}, nil)
	sess := l.waitSession(t, nil)
	ended := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !isTimeout(err)
	}
	colo := netip.MustParseAddr(host)
	for _, change := range []func(c *config.Agent){
		func(c *config.Agent) { c.Colocated.Enabled = false },
		func(c *config.Agent) { c.Colocated.Tunnels = nil },
	} {
		l.agent.SetConfig(edit(t, l, func(*config.Agent) {})) // back to the start
		testkit.WaitFor(t, 10*time.Second, "co-located on", func() bool { return sess.Policy().Colocated && len(sess.Policy().Tunnels) == 1 })
		own, err := sess.Open(context.Background(), Header{Port: 7})
		if err != nil {
			t.Fatal(err)
		}
		tun, err := sess.Open(context.Background(), Header{Port: p, IP: colo})
		if err != nil {
			t.Fatal(err)
		}
		l.agent.SetConfig(edit(t, l, change))
		if !ended(tun) {
			t.Fatal("co-located tunnel not ended by the change")
		}
		own.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := own.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("tunnel to the server itself ended too: %v", err)
		}
		own.Close()
	}
}

// TestRestartFields: the broker, identity, secret and TLS settings are named as needing a
// restart; the customer's switches are not.
func TestRestartFields(t *testing.T) {
	cur := &config.Agent{Broker: "https://a.example", Customer: "1", System: "s", Secret: "x",
		RemoteAccess: config.RemoteAccess{Enabled: true}}
	next := *cur
	next.RemoteAccess.Enabled = false
	next.DialTimeout = time.Second
	if got := RestartFields(cur, &next); len(got) != 0 {
		t.Fatalf("switch changes need a restart of %v", got)
	}
	next.Broker, next.Secret, next.BrokerAddrs = "https://b.example", "y", []string{"h:1"}
	if got := strings.Join(RestartFields(cur, &next), ","); got != "broker,broker_addrs,secret" {
		t.Fatalf("restart fields %q", got)
	}
}
