package mux

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"maintproxy/internal/linkbatch"
)

// run feeds in to a server session as its link's bytes and returns why the session ended.
func run(t testing.TB, in []byte) error {
	t.Helper()
	w := linkbatch.NewWriter(nil, 0, func(_, _ []byte) error { return nil })
	s := Server(bytes.NewReader(in), w, func() error { return nil }, Config{AcceptBacklog: 4})
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end with its input")
	}
	return s.Err()
}

func frames(hs ...header) []byte {
	var b []byte
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

// TestBadFrames: each protocol violation ends the session with ErrProtocol — never a panic,
// and never by reading on: a data frame beyond the window is refused before its body.
func TestBadFrames(t *testing.T) {
	syn := makeHeader(typeWindow, flagSYN, 1, 0)
	for name, in := range map[string][]byte{
		"bad version":       {1, typePing, 0, flagSYN, 0, 0, 0, 0, 0, 0, 0, 1},
		"unknown type":      frames(makeHeader(4, 0, 0, 0)),
		"ping on a stream":  frames(makeHeader(typePing, flagSYN, 1, 7)),
		"stream 0":          frames(makeHeader(typeData, 0, 0, 0)),
		"our parity":        frames(makeHeader(typeWindow, flagSYN, 2, 0)),
		"opened twice":      frames(syn, syn),
		"window overflow":   frames(syn, makeHeader(typeWindow, 0, 1, 1<<31), makeHeader(typeWindow, 0, 1, 1<<31)),
		"beyond the window": append(frames(syn, makeHeader(typeData, 0, 1, InitialWindow+1)), make([]byte, InitialWindow+1)...),
		"4 GiB of data":     frames(syn, makeHeader(typeData, 0, 1, 1<<32-1)),
		"beyond in pieces":  append(frames(syn, makeHeader(typeData, 0, 1, InitialWindow), makeHeader(typeData, 0, 1, 1)), make([]byte, InitialWindow+1)...),
	} {
		if name == "beyond in pieces" {
			// The body of the first frame sits between the two headers.
			first := frames(syn, makeHeader(typeData, 0, 1, InitialWindow))
			in = append(append(append(first, make([]byte, InitialWindow)...), frames(makeHeader(typeData, 0, 1, 1))...), 0)
		}
		if err := run(t, in); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: session ended with %v, want a protocol error", name, err)
		}
	}
	// Within the rules, the session ends only with its link.
	ok := append(frames(syn, makeHeader(typeData, flagFIN, 1, 3)), "abc"...)
	ok = append(ok, frames(makeHeader(typePing, flagSYN, 0, 9), makeHeader(typeWindow, flagRST, 5, 0), makeHeader(typeGoAway, 0, 0, 0))...)
	if err := run(t, ok); err != ErrSessionShutdown {
		t.Errorf("good frames: session ended with %v", err)
	}
}

// FuzzFrames: whatever arrives, the session ends when its input does (or earlier with a
// protocol error), without panicking.
func FuzzFrames(f *testing.F) {
	syn := makeHeader(typeWindow, flagSYN, 1, 0)
	f.Add(frames(syn, makeHeader(typeData, 0, 1, 2)))
	f.Add(append(frames(syn, makeHeader(typeData, flagFIN, 1, 4)), "data"...))
	f.Add(frames(makeHeader(typePing, flagSYN, 0, 1), makeHeader(typeGoAway, 0, 0, 1)))
	f.Add(frames(syn, makeHeader(typeWindow, flagRST|flagFIN, 1, 1<<20)))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 1<<20 {
			return
		}
		err := run(t, in)
		if err != ErrSessionShutdown && !errors.Is(err, ErrProtocol) {
			t.Fatalf("session ended with %v", err)
		}
	})
}
