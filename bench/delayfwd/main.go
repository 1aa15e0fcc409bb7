// Command delayfwd joins two network interfaces like a wire with a delay: every Ethernet frame
// read on one is written to the other after -delay (each way, so the round trip is twice
// that), optionally at a limited rate behind a bounded queue. It stands in for netem on
// kernels without sch_netem; bench/wan.sh runs it in a network namespace between two veth
// pairs. Linux only; needs CAP_NET_RAW.
//
// Frames are read and written with a virtio-net header (PACKET_VNET_HDR), so that the
// kernel's segmentation offload and checksum state travel with them: a 64 KiB TCP segment
// crosses as one frame, as it would between two veth ends.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	ethPAll              = 0x0003
	solPacket            = 263
	packetVnetHdr        = 15
	packetIgnoreOutgoing = 23
	maxFrame             = 256 << 10
	sockBuf              = 64 << 20
)

func main() {
	a := flag.String("a", "", "first interface")
	b := flag.String("b", "", "second interface")
	delay := flag.Duration("delay", 50*time.Millisecond, "one-way delay (0-10s)")
	rate := flag.Float64("rate", 0, "link rate in MiB/s each way (0 = unlimited)")
	queue := flag.Int("queue", 64, "queue limit in MiB each way (frames beyond it are dropped)")
	flag.Parse()
	if *a == "" || *b == "" || *delay < 0 || *delay > 10*time.Second || *rate < 0 || *queue < 1 || *queue > 4096 {
		fmt.Fprintln(os.Stderr, "usage: delayfwd -a IF -b IF [-delay 50ms] [-rate MiB/s] [-queue MiB]")
		os.Exit(2)
	}
	fa, err := open(*a)
	if err != nil {
		die(err)
	}
	fb, err := open(*b)
	if err != nil {
		die(err)
	}
	l := link{delay: *delay, rate: *rate * (1 << 20), limit: int64(*queue) << 20}
	var stats [2]counters
	go l.run(fa, fb, &stats[0])
	go l.run(fb, fa, &stats[1])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	for i, name := range []string{*a + "->" + *b, *b + "->" + *a} {
		s := &stats[i]
		fmt.Fprintf(os.Stderr, "delayfwd %s: %d frames, %d MiB, %d dropped\n", name, s.frames.Load(), s.bytes.Load()>>20, s.dropped.Load())
	}
}

func die(err error) { fmt.Fprintln(os.Stderr, "delayfwd:", err); os.Exit(1) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// open returns a raw packet socket bound to the interface, carrying virtio-net headers and
// not seeing the frames it sends itself.
func open(name string) (int, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return -1, err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(ethPAll)))
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	for _, opt := range []int{packetVnetHdr, packetIgnoreOutgoing} {
		if err := syscall.SetsockoptInt(fd, solPacket, opt, 1); err != nil {
			return -1, fmt.Errorf("%s: setsockopt %d: %w", name, opt, err)
		}
	}
	// A burst must wait in the socket, not be dropped by it, while the reader is descheduled.
	for _, opt := range []int{syscall.SO_RCVBUFFORCE, syscall.SO_SNDBUFFORCE} {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, opt, sockBuf); err != nil {
			return -1, fmt.Errorf("%s: setsockopt %d: %w", name, opt, err)
		}
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(ethPAll), Ifindex: ifc.Index}); err != nil {
		return -1, fmt.Errorf("%s: bind: %w", name, err)
	}
	return fd, nil
}

type counters struct{ frames, bytes, dropped atomic.Int64 }

type link struct {
	delay time.Duration
	rate  float64 // bytes per second, 0 = unlimited
	limit int64   // bytes waiting for the link at most (with a rate), else bytes in flight
}

type frame struct {
	due time.Time
	buf []byte
}

var bufs = sync.Pool{New: func() any { b := make([]byte, maxFrame); return &b }}

// run forwards src to dst: a reader queues each frame with its due time, a writer sends it
// then. With a rate, frames leave no faster than the rate and the queue is tail-dropped.
func (l link) run(src, dst int, st *counters) {
	q := make(chan frame, 1<<16)
	var queued atomic.Int64
	go func() {
		for f := range q {
			if d := time.Until(f.due); d > 0 {
				time.Sleep(d)
			}
			syscall.Write(dst, f.buf)
			queued.Add(-int64(len(f.buf)))
			b := f.buf[:cap(f.buf)]
			bufs.Put(&b)
		}
	}()
	var last time.Time // when the previous frame finished leaving (with a rate)
	for {
		bp := bufs.Get().(*[]byte)
		n, _, err := syscall.Recvfrom(src, *bp, 0)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			die(err)
		}
		now := time.Now()
		leave := now
		if l.rate > 0 {
			// Behind the frames still waiting for the link; drop if that queue is full.
			if last.After(now) {
				if float64(last.Sub(now))/float64(time.Second)*l.rate > float64(l.limit) {
					st.dropped.Add(1)
					bufs.Put(bp)
					continue
				}
				leave = last
			}
			leave = leave.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
			last = leave
		} else if queued.Load()+int64(n) > l.limit {
			st.dropped.Add(1)
			bufs.Put(bp)
			continue
		}
		due := leave.Add(l.delay)
		queued.Add(int64(n))
		st.frames.Add(1)
		st.bytes.Add(int64(n))
		select {
		case q <- frame{due: due, buf: (*bp)[:n]}:
		default:
			queued.Add(-int64(n))
			st.dropped.Add(1)
			bufs.Put(bp)
		}
	}
}
