package relay

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// chunky returns at most record bytes per Read; ReadMore takes up to ready more bytes
// without waiting, then reports nothing ready until the next Read.
type chunky struct {
	data          []byte
	record, ready int
	avail         int // bytes ReadMore may still return
	err           error
}

func (c *chunky) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.record)], c.data)
	c.data = c.data[n:]
	c.avail = c.ready
	return n, nil
}

func (c *chunky) ReadMore(p []byte) (int, error) {
	if len(c.data) == 0 && c.err != nil {
		return 0, c.err
	}
	n := copy(p[:min(len(p), c.record, c.avail)], c.data)
	c.data, c.avail = c.data[n:], c.avail-n
	return n, nil
}

type sizes struct {
	bytes.Buffer
	writes []int
}

func (s *sizes) Write(p []byte) (int, error) {
	s.writes = append(s.writes, len(p))
	return s.Buffer.Write(p)
}

// TestCopyFillsFromMoreReader: a write carries what the source had ready, up to the
// buffer; what was not ready is not waited for; an error after data comes after the data.
func TestCopyFillsFromMoreReader(t *testing.T) {
	data := make([]byte, 200)
	for i := range data {
		data[i] = byte(i)
	}
	src := &chunky{data: data, record: 16, ready: 40}
	dst := &sizes{}
	n, err := copyBuffer(dst, src, make([]byte, 64))
	if err != nil || n != 200 || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copied %d, %v; equal %v", n, err, bytes.Equal(dst.Bytes(), data))
	}
	// 16 read + 40 ready = 56 per write: filled past one record, never waiting for more.
	if want := []int{56, 56, 56, 32}; !slices.Equal(dst.writes, want) {
		t.Fatalf("writes %v, want %v", dst.writes, want)
	}

	boom := errors.New("reset")
	src = &chunky{data: data[:20], record: 16, ready: 40, err: boom}
	dst = &sizes{}
	n, err = copyBuffer(dst, src, make([]byte, 64))
	if !errors.Is(err, boom) || n != 20 || !bytes.Equal(dst.Bytes(), data[:20]) {
		t.Fatalf("with an error after data: copied %d, %v", n, err)
	}
}
