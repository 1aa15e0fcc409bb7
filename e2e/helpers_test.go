package e2e

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
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
