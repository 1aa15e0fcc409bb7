package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"maintproxy/config"
	"maintproxy/internal/linkbatch"
	"maintproxy/internal/mux"
	"maintproxy/internal/testenv"
	"maintproxy/internal/testkit"
)

// clientFrame is a masked frame as a client sends it.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	f := appendFrame(nil, op, payload, true)
	if !fin {
		f[0] &^= 0x80
	}
	return f
}

// TestWSReadFraming feeds a server-side wsConn with what RFC 6455 allows a client to send
// — a message in three fragments with a ping between them, an empty frame — and checks the
// bytes come out whole and the ping is answered; then each violation in turn must fail.
func TestWSReadFraming(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10000)
	var in bytes.Buffer
	in.Write(clientFrame(false, opBinary, data[:70000]))
	in.Write(clientFrame(true, opPing, []byte("are you there")))
	in.Write(clientFrame(false, opContinuation, data[70000:70001]))
	in.Write(clientFrame(true, opContinuation, data[70001:]))
	in.Write(clientFrame(true, opBinary, nil))
	in.Write(clientFrame(true, opClose, []byte{0x03, 0xe8}))
	out := &testkit.Buffer{}
	c := newWSConn(nopCloser{out}, &in, nil, nil, false)
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d of %d bytes, err %v", len(got), len(data), err)
	}
	c.w.WaitFlushed(5 * time.Second)
	want := append(appendFrame(nil, opPong, []byte("are you there"), false), appendFrame(nil, opClose, []byte{0x03, 0xe8}, false)...)
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("answered % x, want pong and close % x", out.Bytes(), want)
	}

	for name, frames := range map[string][]byte{
		"unmasked":           appendFrame(nil, opBinary, []byte("x"), false),
		"text":               clientFrame(true, opText, []byte("x")),
		"reserved bit":       func() []byte { f := clientFrame(true, opBinary, []byte("x")); f[0] |= 0x40; return f }(),
		"stray continuation": clientFrame(true, opContinuation, []byte("x")),
		"unfinished message": append(clientFrame(false, opBinary, []byte("x")), clientFrame(true, opBinary, []byte("y"))...),
		"fragmented ping":    clientFrame(false, opPing, nil),
		"oversized ping":     clientFrame(true, opPing, make([]byte, 126)),
	} {
		c := newWSConn(nopCloser{&testkit.Buffer{}}, bytes.NewReader(frames), nil, nil, false)
		if _, err := io.ReadAll(c); !errors.Is(err, errProtocol) {
			t.Errorf("%s: err %v, want a protocol error", name, err)
		}
	}
}

// TestWSWriteBatches checks what a client-side wsConn puts on the wire: each flush one
// masked binary frame that unmasks to the frames in order.
func TestWSWriteBatches(t *testing.T) {
	out := &testkit.Buffer{}
	c := newWSConn(nopCloser{out}, bytes.NewReader(nil), nil, nil, true)
	var want []byte
	for i := range 50 {
		body := bytes.Repeat([]byte{byte(i)}, 1000*i+1)
		hdr := []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
		hdr[8], hdr[9], hdr[10], hdr[11] = byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
		if err := c.w.Frame(hdr, body, &linkbatch.Wait{}); err != nil {
			t.Fatal(err)
		}
		want = append(append(want, hdr...), body...)
	}
	c.w.WaitFlushed(5 * time.Second)
	// Read the frames back as the broker would.
	r := newWSConn(nopCloser{&testkit.Buffer{}}, bytes.NewReader(out.Bytes()), nil, nil, false)
	got, err := io.ReadAll(r)
	if !errors.Is(err, io.ErrUnexpectedEOF) && err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, want %d", len(got), len(want))
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// TestSessionBudget: streams whose windows have grown (a long round trip, fast readers)
// and whose readers then stop may hold no more than the session's budget plus each
// stream's initial window; reading again lets them all move on.
func TestSessionBudget(t *testing.T) {
	source := testenv.StartSource(t, "127.0.0.1:0")
	l := startLink(t, &config.Agent{RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"9": source}}}, Tuning{}, nil)
	sess := l.waitSession(t, nil)
	const budget = 4 << 20
	cr := sess.link.mux
	cr.SetBudget(budget)
	cr.PinRTT(50 * time.Millisecond) // no remeasuring

	const streams = 3
	var conns []net.Conn
	for range streams {
		st, err := sess.Open(context.Background(), Header{Port: 9})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		conns = append(conns, st)
	}
	readSome := func(n int64) {
		t.Helper()
		for i, st := range conns {
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.CopyN(io.Discard, st, n); err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
		}
	}
	readSome(32 << 20) // fast readers: the windows grow up to the budget
	if maxTarget := cr.LargestWindow(); maxTarget <= mux.InitialWindow {
		t.Fatalf("windows did not grow (largest target %d)", maxTarget)
	}
	// The readers stop; wait until the peers have used all the credit they got.
	var total int64
	for deadline, stable := time.Now().Add(10*time.Second), 0; stable < 20; time.Sleep(10 * time.Millisecond) {
		now := cr.Unread()
		if now == total {
			stable++
		} else {
			stable, total = 0, now
		}
		if time.Now().After(deadline) {
			break
		}
	}
	if limit := int64(budget + streams*mux.InitialWindow); total > limit || total < mux.InitialWindow {
		t.Fatalf("granted and unread: %d bytes, want at most %d", total, limit)
	}
	readSome(8 << 20) // and every stream moves on
}

// TestWSTextMessages: where the broker takes text messages (policy updates), whole ones
// between binary messages reach onText in order, the binary stream around them intact; a
// text frame inside a fragmented binary message, a fragmented or oversized one is refused.
func TestWSTextMessages(t *testing.T) {
	var in bytes.Buffer
	in.Write(clientFrame(true, opBinary, []byte("abc")))
	in.Write(clientFrame(true, opText, []byte(`{"version":1}`)))
	in.Write(clientFrame(true, opBinary, []byte("def")))
	in.Write(clientFrame(true, opText, []byte(`{"version":1,"remote_access":true}`)))
	c := newWSConn(nopCloser{&testkit.Buffer{}}, &in, nil, nil, false)
	var got []string
	c.onText = func(msg []byte) { got = append(got, string(msg)) }
	data, err := io.ReadAll(c)
	if string(data) != "abcdef" || err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("binary stream %q, %v", data, err)
	}
	if len(got) != 2 || got[1] != `{"version":1,"remote_access":true}` {
		t.Fatalf("text messages %q", got)
	}
	for name, frames := range map[string][]byte{
		"inside a binary message": append(clientFrame(false, opBinary, []byte("x")), clientFrame(true, opText, []byte("y"))...),
		"fragmented":              clientFrame(false, opText, []byte("x")),
		"oversized":               clientFrame(true, opText, make([]byte, maxTextMessage+1)),
	} {
		c := newWSConn(nopCloser{&testkit.Buffer{}}, bytes.NewReader(frames), nil, nil, false)
		c.onText = func([]byte) { t.Errorf("%s: delivered", name) }
		if _, err := io.ReadAll(c); !errors.Is(err, errProtocol) {
			t.Errorf("%s: err %v, want a protocol error", name, err)
		}
	}
	// What the agent's sendText puts on the wire is one masked, final text frame.
	out := &testkit.Buffer{}
	client := newWSConn(nopCloser{out}, bytes.NewReader(nil), nil, nil, true)
	if err := client.sendText([]byte("policy")); err != nil {
		t.Fatal(err)
	}
	client.w.WaitFlushed(5 * time.Second)
	frame := out.Bytes()
	r := newWSConn(nopCloser{&testkit.Buffer{}}, bytes.NewReader(frame), nil, nil, false)
	var seen string
	r.onText = func(msg []byte) { seen = string(msg) }
	io.ReadAll(r)
	if seen != "policy" {
		t.Fatalf("sendText frame % x read back as %q", frame, seen)
	}
}
