package relay

import (
	"bufio"
	"io"
	"testing"
	"time"
)

// TestBufferedConn: bytes a reader took off the connection early are read first, the rest
// follows from the connection, and CloseWrite reaches the peer as a half-close.
func TestBufferedConn(t *testing.T) {
	c, s := tcpPair(t)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	s.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Write([]byte("answer\nearly")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if _, err := br.Peek(len("answer\nearly")); err != nil {
		t.Fatal(err)
	}
	if line, _ := br.ReadString('\n'); line != "answer\n" {
		t.Fatalf("answer %q", line)
	}
	conn := WithBuffered(c, br)
	if _, ok := conn.(*BufferedConn); !ok {
		t.Fatalf("WithBuffered dropped %d buffered bytes", br.Buffered())
	}
	s.Write([]byte(" late"))
	s.CloseWrite()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "early late" {
		t.Fatalf("read %q, %v", got, err)
	}
	if conn.(*BufferedConn).r != nil {
		t.Error("the drained reader is still held")
	}
	if err := conn.(closeWriter).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(s); err != nil || len(rest) != 0 {
		t.Fatalf("peer after CloseWrite: %q, %v", rest, err)
	}
	if WithBuffered(c, bufio.NewReader(c)) != c {
		t.Error("an empty reader was kept")
	}
}
