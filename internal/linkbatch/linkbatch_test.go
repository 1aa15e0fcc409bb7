package linkbatch

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func frameHeader(typ byte, length uint32) []byte {
	h := make([]byte, FrameHeaderLen)
	h[1] = typ
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

// TestJoiner: a data frame's header waits for its body and leaves with it; other frames,
// and a data frame without a body, pass at once.
func TestJoiner(t *testing.T) {
	var j Joiner
	data := frameHeader(TypeData, 5)
	if _, _, ok := j.Add(data); ok || !j.Waiting() {
		t.Fatal("a data frame's header must wait for its body")
	}
	head, body, ok := j.Add([]byte("hello"))
	if !ok || j.Waiting() || !bytes.Equal(head, data) || string(body) != "hello" {
		t.Fatalf("header and body: %x %q %v", head, body, ok)
	}
	for _, h := range [][]byte{frameHeader(TypeWindowUpdate, 1<<20), frameHeader(TypeData, 0)} {
		head, body, ok := j.Add(h)
		if !ok || body != nil || !bytes.Equal(head, h) || j.Waiting() {
			t.Fatalf("frame without a body %x: %x %q %v", h, head, body, ok)
		}
	}
}
