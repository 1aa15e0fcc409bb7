package mux

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"maintproxy/internal/linkbatch"
)

// BenchmarkStream moves data one way through one stream over loopback TCP, with the
// links' batching writer, for this package and for hashicorp/yamux as the links used it
// before (its send loop's header and body joined into one frame of the batch), and reports
// the CPU time of both ends per MiB (cpu-ms/MiB): what the multiplexer itself costs,
// without TLS.
func BenchmarkStream(b *testing.B) {
	b.Run("mux", func(b *testing.B) {
		x, y := dialPair(b)
		c := Client(x, writerFor(x), x.Close, Config{MaxWindow: 32 << 20})
		s := Server(y, writerFor(y), y.Close, Config{MaxWindow: 32 << 20})
		defer c.Close()
		defer s.Close()
		w, err := c.Open(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		w.Write([]byte{1})
		r, err := s.Accept(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		io.ReadFull(r, make([]byte, 1))
		pump(b, w, w.CloseWrite, r)
	})
	b.Run("yamux", func(b *testing.B) {
		x, y := dialPair(b)
		cfg := yamux.DefaultConfig()
		cfg.MaxStreamWindowSize = 32 << 20
		cfg.LogOutput = io.Discard
		cfg.EnableKeepAlive = false
		c, _ := yamux.Client(&joinedLink{Conn: x, w: writerFor(x)}, cfg)
		s, _ := yamux.Server(&joinedLink{Conn: y, w: writerFor(y)}, cfg)
		defer c.Close()
		defer s.Close()
		w, err := c.OpenStream()
		if err != nil {
			b.Fatal(err)
		}
		w.Write([]byte{1})
		r, err := s.AcceptStream()
		if err != nil {
			b.Fatal(err)
		}
		io.ReadFull(r, make([]byte, 1))
		pump(b, w, w.Close, r)
	})
}

// pump writes b.N × 1 MiB to w in 64 KiB writes, reads it from r as a relay does (filling
// its 64 KiB buffer from a MoreReader), and reports throughput and CPU per MiB.
func pump(b *testing.B, w io.Writer, closeWrite func() error, r io.Reader) {
	const chunk = 64 << 10
	b.SetBytes(1 << 20)
	before := cpu()
	b.ResetTimer()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, chunk)
		for range b.N * (1 << 20) / chunk {
			if _, err := w.Write(buf); err != nil {
				done <- err
				return
			}
		}
		done <- closeWrite()
	}()
	more, _ := r.(interface{ ReadMore([]byte) (int, error) })
	buf := make([]byte, chunk)
	var total int64
	for {
		n, err := r.Read(buf)
		for more != nil && err == nil && n < len(buf) {
			m, merr := more.ReadMore(buf[n:])
			n, err = n+m, merr
			if m == 0 {
				break
			}
		}
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if total != int64(b.N)<<20 {
		b.Fatalf("read %d bytes of %d", total, int64(b.N)<<20)
	}
	b.ReportMetric(float64(cpu()-before)/float64(time.Millisecond)/float64(b.N), "cpu-ms/MiB")
}

// cpu returns the process's user and system time so far.
func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// joinedLink is how the links fed hashicorp/yamux's send loop into their batch: a data
// frame's header waits for its body, and the frame is queued whole.
type joinedLink struct {
	net.Conn
	w       *linkbatch.Writer
	head    [headerLen]byte
	waiting bool
}

func (l *joinedLink) Write(p []byte) (int, error) {
	var err error
	switch {
	case l.waiting:
		l.waiting = false
		err = l.w.Frame(l.head[:], p, &linkbatch.Wait{})
	case len(p) == headerLen && p[1] == typeData && binary.BigEndian.Uint32(p[8:12]) > 0:
		copy(l.head[:], p)
		l.waiting = true
	default:
		err = l.w.Frame(p, nil, &linkbatch.Wait{})
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}
