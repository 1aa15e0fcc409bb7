package tunnel

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"maintproxy/config"
	"maintproxy/internal/guard"
)

// FuzzReadHeader: any bytes either fail to parse or give a header that marshals back to
// the same 24 bytes (the reserved flags byte aside), with a port.
func FuzzReadHeader(f *testing.F) {
	f.Add(Header{Port: 22}.marshal())
	f.Add([]byte{1, 0, 0, 0, 10, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add(Header{Port: 22, User: "resa", Client: "192.0.2.7:40000", System: "se2"}.marshalVersion(HeaderV2))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := readHeader(bytes.NewReader(data))
		if err != nil {
			return
		}
		if h.Port == 0 {
			t.Fatal("a header with port 0 was accepted")
		}
		if data[0] == HeaderV1 {
			want := bytes.Clone(data[:headerLen])
			want[1] = 0
			if got := h.marshal(); !bytes.Equal(got, want) {
				t.Fatalf("header %+v marshals to %x, read from %x", h, got, data[:headerLen])
			}
		}
		again, err := readHeader(bytes.NewReader(h.marshalVersion(int(data[0]))))
		if err != nil || again != h {
			t.Fatalf("header %+v does not survive a round trip: %+v, %v", h, again, err)
		}
	})
}

// FuzzReadReply: any bytes give ok, a refusal with a bounded message, or an error.
func FuzzReadReply(f *testing.F) {
	var b bytes.Buffer
	writeReply(&b, CodeRefused, "10.0.0.9:22: the target refused the connection")
	f.Add(b.Bytes())
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := readReply(bytes.NewReader(data))
		var re *RefusedError
		if errors.As(err, &re) && len(re.Msg) > maxReplyMsg {
			t.Fatalf("reply message of %d bytes accepted", len(re.Msg))
		}
	})
}

// FuzzDecodeHello: the agent's hello either fails or gives a policy of this protocol
// version that survives a JSON round trip.
func FuzzDecodeHello(f *testing.F) {
	good, _ := json.Marshal(PolicyFromConfig(&config.Agent{RemoteAccess: config.RemoteAccess{Enabled: true,
		Services: map[string]string{"22": "127.0.0.1:22"}}}, "1.0"))
	f.Add(good)
	f.Add([]byte(`{"version":1,"tunnels":[{"ip":"10.0.0.9","port":3389}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodeHello(bytes.NewReader(data))
		if err != nil {
			return
		}
		if p.Version != Version {
			t.Fatalf("hello of version %d accepted", p.Version)
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := decodeHello(bytes.NewReader(again))
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("policy %+v does not survive a round trip: %+v, %v", p, q, err)
		}
	})
}

// FuzzAgentLogin: whatever the Authorization header, a login succeeds only with the
// system's own name and secret.
func FuzzAgentLogin(f *testing.F) {
	secret, hash, err := config.NewAgentSecret()
	if err != nil {
		f.Fatal(err)
	}
	srv := NewServer(NewRegistry(), func(id Identity) (string, bool) {
		if id == (Identity{"12345", "se1"}) {
			return hash, true
		}
		return "", false
	}, slog.New(slog.DiscardHandler), WithAdmission(guard.New(func() guard.Settings {
		return guard.Settings{Rate: 1e9, Burst: 1 << 30}
	}, nil)))
	req := loginRequest("192.0.2.1:1234", "12345/SE1", secret)
	f.Add(req.Header.Get("Authorization"))
	f.Add("Basic MTIzNDUvc2UxOnNlY3JldA==")
	f.Add("Basic Og==")
	f.Add("basic " + strings.Repeat("A", 100))
	f.Fuzz(func(t *testing.T, authorization string) {
		r := httptest.NewRequest("GET", AgentPath, nil)
		r.RemoteAddr = "192.0.2.1:1234"
		r.Header.Set("Authorization", authorization)
		id, err := srv.authenticate(r)
		if err != nil {
			return
		}
		user, pass, ok := r.BasicAuth()
		if !ok || pass != secret || !strings.EqualFold(user, "12345/se1") || id != (Identity{"12345", "se1"}) {
			t.Fatalf("login %q accepted as %v", authorization, id)
		}
	})
}
