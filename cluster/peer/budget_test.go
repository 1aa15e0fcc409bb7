package peer

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maintproxy/internal/mux"
	"maintproxy/internal/testkit"
)

// TestLinkBudget: many tunnels over one link whose windows have grown (a long round trip,
// fast readers) and whose readers then stop leave no more unread — written by one broker,
// not yet read on the other — than the link's budget plus each stream's initial window,
// in both directions (a slow technician behind the forwarding broker, a slow agent link
// behind the holder); reading again, every stream completes.
func TestLinkBudget(t *testing.T) {
	for _, dir := range []string{"down", "up"} {
		t.Run(dir, func(t *testing.T) { testLinkBudget(t, dir == "up") })
	}
}

func testLinkBudget(t *testing.T, up bool) {
	const (
		streams = 8
		size    = 8 << 20 // per stream
		budget  = 2 << 20
		chunk   = 32 << 10
		grown   = 3 * mux.InitialWindow // 8 such windows are well past the budget
	)
	tuning := Tuning{Budget: budget}
	b := newBook()
	holders := make(chan *Stream, streams)
	done := make(chan struct{})
	startServerTuned(t, b, "b1", identity(t, "b1"), tuning, func(ctx context.Context, req Request, s *Stream) {
		if s.Reply(Reply{Code: CodeOK}) != nil {
			return
		}
		holders <- s
		select {
		case <-done:
		case <-ctx.Done():
		}
	})
	d := newDialer(t, b, "b2")
	d.Tuning = tuning
	defer close(done)

	// Each pair: the side that writes and the side that reads.
	var writers, readers []*Stream
	for range streams {
		conn, rep, err := d.Open(testkit.Context(t, 10*time.Second), "b1", Request{Port: 22})
		if err != nil || rep.Code != CodeOK {
			t.Fatalf("open: %v %+v", err, rep)
		}
		defer conn.Close()
		h := <-holders
		if up {
			writers, readers = append(writers, conn.(*Stream)), append(readers, h)
		} else {
			writers, readers = append(writers, h), append(readers, conn.(*Stream))
		}
	}
	cr := readers[0].sess
	// The windows as autotuning grows them for fast readers on a long path (its growth is
	// tested in internal/mux); here only the budget is at stake.
	cr.GrowWindows(grown)

	var written, read atomic.Int64
	writing := each(writers, func(_ int, w *Stream) {
		buf := make([]byte, chunk)
		for sent := 0; sent < size; sent += chunk {
			w.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := w.Write(buf); err != nil {
				t.Errorf("write: %v", err)
				return
			}
			written.Add(chunk)
		}
		w.CloseWrite()
	})
	defer writing()

	// The readers take 1 MiB each, which passes credit up to the grown windows on as far
	// as the budget lets it; then they stop.
	got := make([]int64, streams)
	each(readers, func(i int, r *Stream) {
		buf := make([]byte, chunk)
		for got[i] < 1<<20 {
			r.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := r.Read(buf)
			got[i] += int64(n)
			read.Add(int64(n))
			if err != nil {
				t.Errorf("stream %d: %v", i, err)
				return
			}
		}
	})()
	if t.Failed() {
		return
	}
	if w := cr.LargestWindow(); w < grown {
		t.Fatalf("windows did not grow (largest %d)", w)
	}
	// The readers stay stopped; wait until the writers have used all the window they got.
	var unread int64
	for deadline, stable := time.Now().Add(10*time.Second), 0; stable < 20 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		now := written.Load() - read.Load()
		if now == unread {
			stable++
		} else {
			stable, unread = 0, now
		}
	}
	limit := int64(budget + streams*mux.InitialWindow)
	if unread > limit || cr.Unread() > limit {
		t.Fatalf("written and not read: %d bytes (granted and unread: %d), want at most %d", unread, cr.Unread(), limit)
	}
	t.Logf("largest window %d KiB; unread %d KiB of at most %d KiB", cr.LargestWindow()>>10, unread>>10, limit>>10)

	// Reading again, every stream completes.
	each(readers, func(i int, r *Stream) {
		r.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := io.Copy(io.Discard, r)
		if err != nil || got[i]+n != size {
			t.Errorf("stream %d: read %d of %d bytes: %v", i, got[i]+n, size, err)
		}
	})()
}

// each runs f for every stream in a goroutine of its own and returns the wait for them all.
func each(ss []*Stream, f func(i int, s *Stream)) (wait func()) {
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i, s)
		}()
	}
	return wg.Wait
}
