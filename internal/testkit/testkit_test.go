package testkit

import (
	"sync"
	"testing"
	"time"
)

// TestBuffer: writes from several goroutines all arrive; ContainsSince sees only what came
// after its mark.
func TestBuffer(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { b.Write([]byte("ab")) })
	}
	wg.Wait()
	if b.Len() != 16 || b.String() != "abababababababab" {
		t.Fatalf("buffer holds %q", b.String())
	}
	mark := b.Len()
	b.Write([]byte("cd"))
	if !b.Contains("ab") || b.ContainsSince(mark, "ab") || !b.ContainsSince(mark, "cd") {
		t.Fatal("ContainsSince does not honour its mark")
	}
	got := b.Bytes()
	got[0] = 'x'
	if b.String()[0] != 'a' {
		t.Fatal("Bytes is not a copy")
	}
}

// TestWaitFor returns once the condition holds, and reports how long that took.
func TestWaitFor(t *testing.T) {
	start := time.Now()
	d := WaitFor(t, 10*time.Second, "30ms passed", func() bool { return time.Since(start) > 30*time.Millisecond })
	if d < 30*time.Millisecond || d > 5*time.Second {
		t.Fatalf("WaitFor returned after %v", d)
	}
}

// TestRecv returns the value a goroutine sends.
func TestRecv(t *testing.T) {
	ch := make(chan int, 1)
	go func() { ch <- 7 }()
	if got := Recv(t, ch, 10*time.Second, "the value"); got != 7 {
		t.Fatalf("Recv = %d, want 7", got)
	}
}
