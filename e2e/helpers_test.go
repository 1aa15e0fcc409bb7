package e2e

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
)

// sendRandom writes size pseudo-random bytes (seeded, so both ends could regenerate them)
// and returns their SHA-256.
func sendRandom(w io.Writer, size int64, seed uint64) [32]byte {
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		rng.Read(buf[:n])
		h.Write(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			break
		}
		left -= n
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// fullBacklogListener listens on loopback with the smallest accept queue and never
// accepts; fill keeps a connection that occupies the queue until the test ends.
func fullBacklogListener(t *testing.T) (string, func(net.Conn)) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	return addr, func(c net.Conn) { t.Cleanup(func() { c.Close() }) }
}
