package relay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// bursts is a source whose data arrives in bursts: a blocking Read waits for the next burst
// (taking at most record bytes of it), ReadMore takes what is left of the current one. It
// records the size of the buffer of every blocking Read. more false hides ReadMore.
type bursts struct {
	queue  [][]byte
	ready  []byte
	record int
	waits  []int // len(p) of each Read
}

func (b *bursts) Read(p []byte) (int, error) {
	b.waits = append(b.waits, len(p))
	if len(b.ready) == 0 {
		if len(b.queue) == 0 {
			return 0, io.EOF
		}
		b.ready, b.queue = b.queue[0], b.queue[1:]
	}
	n := copy(p[:min(len(p), b.record)], b.ready)
	b.ready = b.ready[n:]
	return n, nil
}

type moreBursts struct{ *bursts }

func (b moreBursts) ReadMore(p []byte) (int, error) {
	n := copy(p, b.ready)
	b.ready = b.ready[n:]
	return n, nil
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestCopyWaitsInSmallBuffer: a relay waits for data in its small buffer only; a burst that
// fills it moves on in 64 KiB writes, and a small message goes out as it came.
func TestCopyWaitsInSmallBuffer(t *testing.T) {
	bulk, key := randomBytes(t, 200_000), []byte("k")
	src := &bursts{queue: [][]byte{key, bulk, key}, record: 16 << 10}
	dst := &sizes{}
	n, err := copyBuffer(dst, moreBursts{src}, make([]byte, 32))
	if err != nil || n != int64(len(bulk)+2) || !bytes.Equal(dst.Bytes(), slices.Concat(key, bulk, key)) {
		t.Fatalf("copied %d, %v", n, err)
	}
	for i, w := range src.waits {
		if w != 32 {
			t.Fatalf("read %d waited with a %d-byte buffer, want the 32-byte one (all: %v)", i, w, src.waits)
		}
	}
	if want := []int{1, bufSize, bufSize, bufSize, len(bulk) - 3*bufSize, 1}; !slices.Equal(dst.writes, want) {
		t.Fatalf("writes %v, want %v", dst.writes, want)
	}
}

// TestCopyBlockingSource: a source that cannot be read without waiting is read in 64 KiB
// chunks while its reads fill more than the small buffer, and in the small one again once
// a read brings little.
func TestCopyBlockingSource(t *testing.T) {
	bulk, key := randomBytes(t, 100_000), []byte("key")
	src := &bursts{queue: [][]byte{key, bulk, key, key}, record: bufSize}
	dst := &sizes{}
	if _, err := copyBuffer(dst, src, make([]byte, 32)); err != nil || !bytes.Equal(dst.Bytes(), slices.Concat(key, bulk, key, key)) {
		t.Fatalf("copy: %v", err)
	}
	// key; the bulk's first 32 bytes fill the small buffer; then 64 KiB reads until one
	// brings no more than 32 bytes (the second key); the last key and EOF wait small.
	if want := []int{32, 32, bufSize, bufSize, bufSize, 32, 32}; !slices.Equal(src.waits, want) {
		t.Fatalf("read buffers %v, want %v", src.waits, want)
	}
	if want := []int{3, 32, bufSize, len(bulk) - 32 - bufSize, 3, 3}; !slices.Equal(dst.writes, want) {
		t.Fatalf("writes %v, want %v", dst.writes, want)
	}
}

// TestSocketReader: a TCP connection is read without waiting: nothing ready is (0, nil),
// what arrived is taken, and the peer's half-close is EOF.
func TestSocketReader(t *testing.T) {
	c, s := tcpPair(t)
	m := moreReader(c)
	if m == nil {
		if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
			t.Skip("no reads without waiting here")
		}
		t.Fatal("a TCP connection is no MoreReader")
	}
	buf := make([]byte, 16)
	if n, err := m.ReadMore(buf); n != 0 || err != nil {
		t.Fatalf("nothing sent: %d, %v", n, err)
	}
	s.Write([]byte("abc"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.ReadFull(c, buf[:1]); n != 1 || err != nil { // the segment is here
		t.Fatalf("read: %d, %v", n, err)
	}
	if n, err := m.ReadMore(buf); n != 2 || err != nil || string(buf[:2]) != "bc" {
		t.Fatalf("ReadMore: %q, %v", buf[:n], err)
	}
	s.CloseWrite()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := m.ReadMore(buf)
		if err == io.EOF && n == 0 {
			break
		}
		if err != nil || n != 0 || time.Now().After(deadline) {
			t.Fatalf("after the half-close: %d, %v", n, err)
		}
		runtime.Gosched()
	}
}

// TestCopyBulkTCP: a megabyte crosses a relay between TCP connections intact.
func TestCopyBulkTCP(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	go Copy(a, b)
	data := randomBytes(t, 1<<20)
	go func() { client.Write(data); client.CloseWrite() }()
	server.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(server)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("received %d bytes, %v; equal %v", len(got), err, bytes.Equal(got, data))
	}
}

// readyBursts is a ReadyReader over bursts: WaitReadable moves to the next burst, and a
// blocking Read is never expected.
type readyBursts struct {
	*bursts
	waitsReady int
}

func (b *readyBursts) WaitReadable() error {
	b.waitsReady++
	if len(b.ready) == 0 && len(b.queue) > 0 {
		b.ready, b.queue = b.queue[0], b.queue[1:]
	}
	return nil
}

func (b *readyBursts) ReadMore(p []byte) (int, error) {
	if len(b.ready) == 0 && len(b.queue) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.ready)
	b.ready = b.ready[n:]
	return n, nil
}

// TestCopyReadyWaitsWithoutBuffer: a source that can wait for data (a multiplexed stream)
// is never read the blocking way, so the relay holds no buffer while it waits; bursts go
// out in writes of up to 64 KiB.
func TestCopyReadyWaitsWithoutBuffer(t *testing.T) {
	bulk, key := randomBytes(t, 200_000), []byte("k")
	src := &readyBursts{bursts: &bursts{queue: [][]byte{key, bulk, key}}}
	dst := &sizes{}
	n, err := copyReady(dst, src)
	if err != nil || n != int64(len(bulk)+2) || !bytes.Equal(dst.Bytes(), slices.Concat(key, bulk, key)) {
		t.Fatalf("copied %d, %v", n, err)
	}
	if len(src.waits) != 0 {
		t.Errorf("blocking reads with buffers of %v, want none", src.waits)
	}
	if src.waitsReady != 4 {
		t.Errorf("%d waits, want one per burst and one for the end (4)", src.waitsReady)
	}
	if m := slices.Max(dst.writes); m != bufSize {
		t.Errorf("largest write %d, want %d", m, bufSize)
	}
}

// blocking reads until closed.
type blocking struct{ closed chan struct{} }

func (b *blocking) Read([]byte) (int, error)    { <-b.closed; return 0, io.EOF }
func (b *blocking) Write(p []byte) (int, error) { return len(p), nil }
func (b *blocking) Close() error {
	select {
	case <-b.closed:
	default:
		close(b.closed)
	}
	return nil
}

// panicky panics on Read.
type panicky struct{ blocking }

func (p *panicky) Read([]byte) (int, error) { panic("broken reader") }

// TestCopyPanicInOtherDirection: a panic in the direction Copy runs on its own goroutine
// ends the relay with an error and closes both ends, instead of the process.
func TestCopyPanicInOtherDirection(t *testing.T) {
	a, b := &panicky{blocking{closed: make(chan struct{})}}, &blocking{closed: make(chan struct{})}
	_, _, err := Copy(a, b)
	if err == nil || !strings.Contains(err.Error(), "broken reader") {
		t.Fatalf("Copy: %v, want the panic as an error", err)
	}
}

// failing reads fail with a non-EOF error.
type failing struct{ blocking }

func (f *failing) Read([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

// resettable is a stream that records whether it was reset or closed.
type resettable struct {
	blocking
	reset atomic.Bool
}

func (r *resettable) Reset() error { r.reset.Store(true); return r.blocking.Close() }

// TestCopyResetsStreamOnError: when one side fails, a stream on the other side is reset,
// not half-closed, so that its peer does not take the end for a clean one.
func TestCopyResetsStreamOnError(t *testing.T) {
	st := &resettable{blocking: blocking{closed: make(chan struct{})}}
	bad := &failing{blocking{closed: make(chan struct{})}}
	if _, _, err := Copy(st, bad); err == nil {
		t.Fatal("Copy: no error")
	}
	if !st.reset.Load() {
		t.Error("the stream was closed, not reset")
	}
}
