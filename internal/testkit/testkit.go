// Package testkit holds the small helpers that tests of many packages share: a buffer that
// goroutines write while the test reads it, polling for a condition with a deadline, and
// a goroutine-leak check.
//
// It imports only the standard library, so that any package's own tests can use it
// without an import cycle.
package testkit

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Buffer is a bytes.Buffer that goroutines (a logger, a process's output) may write while
// the test reads it. The zero value is ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Bytes is a copy of everything written so far.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// Len is how many bytes were written so far: a mark for ContainsSince.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// Contains reports whether s was written.
func (b *Buffer) Contains(s string) bool { return b.ContainsSince(0, s) }

// ContainsSince reports whether s was written after mark (an earlier Len).
func (b *Buffer) ContainsSince(mark int, s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf.Bytes()[mark:], []byte(s))
}

// pollEvery is how often WaitFor looks again: polling, not synchronisation.
const pollEvery = 5 * time.Millisecond

// WaitFor polls cond until it holds and returns how long that took; the test fails,
// naming what, when it still does not hold after within.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(pollEvery)
	}
	return time.Since(start)
}

// WaitGoroutines waits until no more than want goroutines are left; after 10 seconds it
// fails the test with a dump of them all.
func WaitGoroutines(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, want at most %d:\n%s", runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Context is a context that ends after d or when the test ends.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Recv waits up to within for a value from ch (a goroutine's result); the test fails,
// naming what, when none comes.
func Recv[T any](t testing.TB, ch <-chan T, within time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("%s: not within %v", what, within)
		panic("unreachable")
	}
}
